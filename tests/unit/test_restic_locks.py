"""A dead helper's restic lock, with the real restic (Debian's) on a local repository:
the helper removes a lock only when every lock in the repository carries its own host
name, then runs the locked-out command once more (entrypoint/resticjob.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint import resticjob

PASSWORD = "lock-test-password-0123456789"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if shutil.which("restic") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("restic is not installed (CI=true: scripts/setup.sh installs it)")
        pytest.skip("restic is not installed")
    key = tmp_path / "key"
    key.write_text(PASSWORD + "\n")
    monkeypatch.setattr(resticjob, "KEY_FILE", str(key))
    path = str(tmp_path / "repo")
    init = resticjob._restic(path, ["init"])
    init.communicate()
    assert init.returncode == 0
    yield path


def _locks(repo: str) -> list[str]:
    return sorted(os.listdir(Path(repo, "locks")))


def _dead_backup(repo: str) -> None:
    """A `restic backup --stdin` killed with SIGKILL while it holds its lock."""
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD}
    proc = subprocess.Popen(
        ["restic", "--repo", repo, "--no-cache", "backup", "--stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _locks(repo) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _locks(repo), "restic never took its lock"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _check(repo: str) -> subprocess.CompletedProcess[bytes]:
    proc = resticjob._restic(repo, ["check"])
    out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_dead_helpers_lock_blocks_restic_and_is_removed_only_when_all_are_ours(
    repo: str,
) -> None:
    _dead_backup(repo)
    # What the operator met before: the next exclusive command is refused.
    assert resticjob.LOCKED in _check(repo).stderr
    # Another host's lock (another stack, another machine) is never ours to remove.
    assert resticjob.clear_own_locks(repo, "some-other-host") == 0
    assert len(_locks(repo)) == 1
    assert resticjob.clear_own_locks(repo, socket.gethostname()) == 1
    assert _locks(repo) == []
    assert _check(repo).returncode == 0


def test_a_locked_step_is_run_again_after_the_own_lock_is_removed(
    repo: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dead_backup(repo)
    # run() writes the key file itself (O_EXCL): give it a fresh path.
    monkeypatch.setattr(resticjob, "KEY_FILE", str(tmp_path / "run.key"))
    code = resticjob.run(
        {"password": PASSWORD, "repository": repo, "steps": [{"op": "restic", "args": ["check"]}]}
    )
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0, event
    assert event["stale_locks_removed"] == 1 and event["code"] == 0
