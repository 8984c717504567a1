"""The stand-in stack shared by integration tests and benchmarks: images, settings, cleanup.

Not a test module: plain helpers with no pytest dependency, so `bench/` can import them.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness import REPO, docker_out

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
    return docker_out(*args, check=False).split()


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
