"""The stand-in stack shared by integration tests and benchmarks: images, settings, cleanup.

Not a test module: plain helpers with no pytest dependency, so `bench/` can import them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SERVER_IMAGE = "hyos-test/server:1"
MANAGER_IMAGE = "hyos-test/manager:1"


def standin_env(stack: str, state_dir: Path | None = None, **overrides: str) -> dict[str, str]:
    """The process environment for a supervisor of a small stand-in stack; without a
    state dir the supervisor's own defaults apply (as inside its container)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYOS_")}
    env.update(
        dict(
            HYOS_STACK=stack,
            HYOS_SERVER__IMAGE=SERVER_IMAGE,
            HYOS_MANAGER__IMAGE=MANAGER_IMAGE,
            HYOS_SERVER__MEMORY="128m",
            HYOS_MANAGER__MEMORY="64m",
            HYOS_SERVER__CPUS="0.5",
            HYOS_MANAGER__CPUS="0.5",
            HYOS_SERVER__STOP_TIMEOUT="10",
            # No fixed host ports: stacks run beside each other on one engine.
            HYOS_SERVER__PORTS='["127.0.0.1:0:5520/udp"]',
            HYOS_MANAGER__PORTS='["127.0.0.1:0:3000"]',
            HYOS_PULL="never",
            HYOS_DOCKER_RETRIES="2",
        )
    )
    env.update(overrides)
    if state_dir is not None:
        env.setdefault("HYOS_STATE_DIR", str(state_dir))
        env.setdefault("HYOS_GUARD_DIR", str(state_dir / "guard"))
    env.setdefault("PYTHONPATH", str(REPO))
    return env


def _docker_out(*args: str) -> list[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    return done.stdout.split()


def remove_stack_objects(name: str) -> None:
    """Everything that carries the stack's label or name: containers, network, volumes."""
    ids = _docker_out("ps", "-aq", "--filter", f"label=io.hyos.stack={name}")
    ids += _docker_out("ps", "-aq", "--filter", f"name=^{name}-")
    if ids:
        _docker_out("rm", "-f", *set(ids))
    _docker_out("network", "rm", f"{name}-net")
    volumes = [v for v in _docker_out("volume", "ls", "-q") if v.startswith(f"{name}-")]
    if volumes:
        _docker_out("volume", "rm", "-f", *volumes)


def poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects among a log file's lines."""
    found = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            found.append(line)
    return found
