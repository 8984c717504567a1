"""HyOS's own server scripts (the replica image, tests/upstream/build-server.sh) under the
supervisor: full hardening, the native library the JVM maps from /tmp, and a stop that
lets Java finish its world save although HyOS's entrypoint exits at the first SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Stack, docker, inspect, proc_status, wait_for
from tests.standin import SERVER_IMAGE
from tests.upstream.replica import REPLICA_IMAGE, injected_tokens, replica_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def replica_image() -> None:
    reason = None
    if shutil.which("docker") is None or docker("version", check=False).returncode != 0:
        reason = "no Docker engine answers"
    elif docker("image", "inspect", REPLICA_IMAGE, check=False).returncode != 0:
        reason = f"{REPLICA_IMAGE} is not built: bash tests/upstream/build-server.sh"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: these tests must run)")
        pytest.skip(reason)


@pytest.fixture
def hyos(stack: Stack) -> Iterator[Stack]:
    """The stand-in stack with HyOS's server scripts as its server."""
    stack.env.update(replica_env(injected_tokens()))
    yield stack


def volume_file(stack: Stack, path: str) -> str | None:
    """A file on the stack's data volume, read by a throwaway container (None if absent)."""
    done = docker(
        "run", "--rm", "--network", "none", "-v", f"{stack.name}-data:/data:ro",
        "--entrypoint", "/bin/cat", SERVER_IMAGE, f"/data/{path}", check=False,
    )  # fmt: skip
    return done.stdout if done.returncode == 0 else None


def server_logs(stack: Stack) -> str:
    done = docker("logs", stack.container("server"), check=False)
    return done.stdout + done.stderr


def wait_java(stack: Stack, timeout: float = 90) -> None:
    wait_for(lambda: "Hytale Server Booted!" in server_logs(stack), timeout, "Java to boot")


def test_hyos_server_runs_hardened_and_maps_its_native_library_from_tmp(hyos: Stack) -> None:
    hyos.up()
    wait_java(hyos)
    server = hyos.container("server")
    status = proc_status(server)
    assert status["Uid"].split()[0] == "568"
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"] == "1"
    host = inspect(server)["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert (",exec," in host["Tmpfs"]["/tmp"] and "noexec" in host["Tmpfs"]["/home/hytale"]) or (
        ",exec," in host["Tmpfs"]["/home/hytale"]
    )
    logs = server_logs(hyos)
    assert "UnsatisfiedLinkError" not in logs
    assert "Loaded native library" in logs or "quiche" in logs
    audit = hyos.run("audit", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    found = [
        f for f in json.loads(audit.stdout)
        if f["container"] == server and f["rule"] == "read-only-root"
    ]  # fmt: skip
    assert found and "/tmp (exec)" in found[0]["detail"], found


def _save_marker(stack: Stack) -> dict[str, Any] | None:
    text = volume_file(stack, "Server/universe/save-marker.json")
    return json.loads(text) if text else None


@pytest.mark.parametrize("how", ["docker stop", "hyos-supervisor down"])
def test_a_stop_lets_java_finish_the_world_save(hyos: Stack, how: str) -> None:
    """HyOS's entrypoint exits as soon as it forwards SIGTERM; the launcher keeps the
    container until Java has saved (the replica saves for 3 s)."""
    hyos.env["HYOS_SERVER__ENV"] = json.dumps(
        {**json.loads(hyos.env["HYOS_SERVER__ENV"]), "HYOS_FAKE_SAVE_SECONDS": "3"}
    )
    hyos.up()
    wait_java(hyos)
    assert _save_marker(hyos) is None
    started = time.monotonic()
    if how == "docker stop":
        # What the dashboard's Stop does through the guard, and what `docker stop` does.
        docker("stop", "-t", "30", hyos.container("server"))
        logs = server_logs(hyos)
        assert "Done Saving Chunks!" in logs, logs[-2000:]
        assert inspect(hyos.container("server"))["State"]["ExitCode"] == 143
    else:
        done = hyos.run("down")
        assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 3  # the save was waited for, not cut
    marker = _save_marker(hyos)
    assert marker is not None and marker["reason"] == "SIGTERM"


_ = Path
