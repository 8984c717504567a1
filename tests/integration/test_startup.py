"""`hyos-supervisor run` failing at startup against the real engine: one line naming what
failed, what Docker said and the likely fix, and exit 1 (README's exit codes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _need(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"prerequisite missing in CI: {why}")
    pytest.skip(why)


def test_a_guard_directory_the_engine_cannot_see_is_one_line_and_exit_1(stack: Stack) -> None:
    """The engine resolves bind sources on its own host. A supervisor whose guard
    directory the engine cannot see (here: a tmpfs in the supervisor's own mount
    namespace, as in a container without the bind mount) fails its first reconcile."""
    _need(os.geteuid() == 0 and shutil.which("unshare") is not None, "needs root and unshare")
    # Beside the stack's short state dir: the guard's socket path must fit a Unix socket's.
    hidden = Path(stack.env["HYOS_STATE_DIR"]).parent / "hidden"
    hidden.mkdir()
    guard = hidden / "guard"
    command = [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", 'mount -t tmpfs tmpfs "$0" && shift && exec "$@"', str(hidden), "--",
        sys.executable, "-m", "supervisor", "run", "--log-level", "WARNING",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env={**stack.env, "HYOS_GUARD_DIR": str(guard)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == 1, result.stderr
    assert lines[0] == (
        f"hyos-supervisor: could not create container {stack.name}-manager: "
        'invalid mount config for type "bind": bind source path does not exist: '
        f"{guard}/{stack.name}/docker.sock; the guard directory {guard} must exist on the host where the "
        f"Docker engine runs, at the same path (a supervisor in a container needs -v {guard}:{guard})"
    )
