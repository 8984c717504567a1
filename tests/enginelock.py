"""Locks that let integration tests run in parallel (pytest-xdist workers, or two test runs
on one machine) on the machine's single Docker engine.

- The engine lock: every test session that uses the engine holds it shared; a test that
  restarts dockerd (which stops every container on it) holds it exclusively, so it runs
  only when no other session has containers on the engine, and no session starts while it
  runs.
- Build once: the session fixtures that build the test images run in every worker; the
  first builds and the others wait for it and reuse its result.

flock(2) locks on files under /tmp: released by the kernel when a process exits, however
it exits, so a killed run leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

LOCK_DIR = Path(tempfile.gettempdir())
ENGINE_LOCK = LOCK_DIR / "hyos-tests-engine.lock"


def run_id() -> str:
    """One id per test run: xdist gives its workers a shared one; a run without xdist is one
    process."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid-{os.getpid()}"


class EngineLock:
    """This process's hold on the engine: shared while it runs tests, exclusive for a test
    that restarts the engine."""

    def __init__(self, path: Path = ENGINE_LOCK) -> None:
        self._file: IO[str] = path.open("a")

    def share(self) -> None:
        fcntl.flock(self._file, fcntl.LOCK_SH)

    @contextmanager
    def alone(self) -> Iterator[None]:
        """Exclusive for the block: waits until every other session has ended (their tests
        done, their containers removed), then shared again."""
        print(
            "\n[engine lock] waiting for the other test sessions on this engine to end",
            file=sys.stderr,
        )
        fcntl.flock(self._file, fcntl.LOCK_EX)  # releases this process's shared hold first
        try:
            yield
        finally:
            fcntl.flock(self._file, fcntl.LOCK_SH)

    def close(self) -> None:
        self._file.close()  # releases the lock


def once_per_run(name: str, action: Callable[[], None]) -> None:
    """Run `action` once per test run however many workers ask; the others wait for it.
    One build at a time on the machine (they share the engine's builder and the CPUs). A
    failed action is not recorded: the next worker that asks tries again (and fails with
    its own error)."""
    stamp = LOCK_DIR / f"hyos-tests-{name}.done"
    with (LOCK_DIR / "hyos-tests-builds.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == run_id():
            return
        action()
        stamp.write_text(run_id())
