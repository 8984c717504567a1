"""`Engine.run_once` on the real engine when its container is removed behind its back
(a stack pass, an operator's `docker rm -f`): one EngineError and nothing left behind.
(CI once: a pass removed a game-log helper between its exit and the read of its log,
and aiodocker's own 404 from that read escaped the prune and ended the daemon; that read
now answers an EngineError too, which the prune logs and a crash report names as a
missing part. Removed while it runs, as here, the wait itself answers 404.)"""

from __future__ import annotations

import secrets
import subprocess
import time

import anyio
import pytest

from supervisor.dockertypes import EngineError, NotFound
from supervisor.engine import Engine

pytestmark = pytest.mark.integration

IMAGE = "hyos-test/server:1"  # busybox-static: a shell to sleep in


def _remove_once_running(name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if state.stdout.strip() == "true":
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=True)
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never ran")


def test_a_one_shot_container_removed_while_it_runs_is_an_engine_error() -> None:
    name = f"hyos-run-once-{secrets.token_hex(4)}"
    body = {
        "Image": IMAGE,
        "Entrypoint": ["/bin/sh", "-c", "echo started; sleep 30"],
        "Labels": {"io.hyos.test": "run-once"},
        "HostConfig": {"NetworkMode": "none"},
    }

    async def main() -> BaseException | None:
        async with (
            Engine.connect("unix:///var/run/docker.sock") as engine,
            anyio.create_task_group() as group,
        ):
            group.start_soon(anyio.to_thread.run_sync, _remove_once_running, name)
            try:
                await engine.run_once(name, body, None, 60)
            except Exception as err:
                return err
        return None

    raised = anyio.run(main)
    assert isinstance(raised, EngineError), repr(raised)
    if isinstance(raised, NotFound):
        assert "removed before its output was read" in str(raised)
    gone = subprocess.run(["docker", "inspect", name], capture_output=True, check=False)
    assert gone.returncode != 0  # nothing left behind
