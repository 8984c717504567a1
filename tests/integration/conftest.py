"""Integration fixtures: a real Docker engine, the stand-in images, unique stacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_IMAGE = "hyos-test/server:1"
MANAGER_IMAGE = "hyos-test/manager:1"


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def inspect(ref: str) -> dict[str, Any]:
    return json.loads(docker("inspect", ref).stdout)[0]


def proc_status(container: str) -> dict[str, str]:
    """/proc/1/status inside the container, as a dict."""
    text = docker("exec", container, "cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture(scope="session")
def test_images() -> None:
    if shutil.which("docker") is None or docker("version", check=False).returncode != 0:
        pytest.fail("integration tests need a running Docker engine (bash .ci/run starts one)")
    subprocess.run(["bash", str(REPO / "tests/images/build.sh")], check=True, timeout=300)


@dataclass
class Stack:
    """A uniquely named stack driven through the real CLI."""

    name: str
    env: dict[str, str]
    config: Path | None = None
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "supervisor", "--log-format", "json"]
        if self.config is not None:
            command += ["--config", str(self.config)]
        result = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=timeout,
            cwd=REPO,
        )
        self.runs.append(result)
        return result

    def up(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = self.run("up", "--wait", "--timeout", "60", *args, **env)
        assert result.returncode == 0, result.stderr
        return result

    def container(self, role: str) -> str:
        return f"{self.name}-{role}"

    def ids(self) -> dict[str, str]:
        """role -> id of every container carrying the stack's label."""
        out = docker(
            "ps", "-a", "--no-trunc", "--filter", f"label=io.hyos.stack={self.name}",
            "--format", '{{.ID}} {{.Label "io.hyos.role"}}',
        ).stdout  # fmt: skip
        found: dict[str, str] = {}
        for line in out.splitlines():
            container_id, role = line.split()
            assert role not in found, f"duplicate {role} containers"
            found[role] = container_id
        return found

    def leftovers(self) -> list[str]:
        """Every object that carries the stack's label or name."""
        label = f"label=io.hyos.stack={self.name}"
        found = docker("ps", "-aq", "--filter", label).stdout.split()
        found += docker("ps", "-aq", "--filter", f"name=^{self.name}-").stdout.split()
        found += docker("network", "ls", "-q", "--filter", f"name=^{self.name}-net$").stdout.split()
        found += [
            v for v in docker("volume", "ls", "-q").stdout.split() if v.startswith(f"{self.name}-")
        ]
        return found


def base_env(stack: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYOS_")}
    env.update(
        HYOS_STACK=stack,
        HYOS_SERVER__IMAGE=SERVER_IMAGE,
        HYOS_MANAGER__IMAGE=MANAGER_IMAGE,
        HYOS_SERVER__MEMORY="128m",
        HYOS_MANAGER__MEMORY="64m",
        HYOS_SERVER__CPUS="0.5",
        HYOS_MANAGER__CPUS="0.5",
        HYOS_SERVER__STOP_TIMEOUT="10",
        # No fixed host ports: tests run beside other stacks on one engine.
        HYOS_SERVER__PORTS='["127.0.0.1:0:5520/udp"]',
        HYOS_MANAGER__PORTS='["127.0.0.1:0:3000"]',
        HYOS_PULL="never",
        HYOS_DOCKER_RETRIES="2",
    )
    env.setdefault("PYTHONPATH", str(REPO))
    return env


def remove_stack_objects(name: str) -> None:
    label = f"label=io.hyos.stack={name}"
    ids = docker("ps", "-aq", "--filter", label).stdout.split()
    ids += docker("ps", "-aq", "--filter", f"name=^{name}-").stdout.split()
    if ids:
        docker("rm", "-f", *set(ids), check=False)
    docker("network", "rm", f"{name}-net", check=False)
    for volume in docker("volume", "ls", "-q").stdout.split():
        if volume.startswith(f"{name}-"):
            docker("volume", "rm", "-f", volume, check=False)


@pytest.fixture
def stack(test_images: None, tmp_path: Path) -> Iterator[Stack]:
    name = f"t{uuid.uuid4().hex[:10]}"
    state_dir = tmp_path / "state"
    env = base_env(name)
    env["HYOS_STATE_DIR"] = str(state_dir)
    yield Stack(name, env)
    remove_stack_objects(name)
