"""The helper's restic process (entrypoint/resticjob.py), with real processes: a dead
helper's lock, with the real restic (Debian's) on a local repository (the helper removes a
lock only when every lock in the repository carries its own host name, then runs the
locked-out command once more), and the backend's credentials reaching restic's
environment."""

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


def _whole_lock(repo: str) -> bool:
    """A lock file restic has finished writing: its local backend makes a file read-only
    once written (one killed half-way is unreadable, and restic ignores it)."""
    files = list(Path(repo, "locks").iterdir())
    return any(f.stat().st_size > 0 and not f.stat().st_mode & 0o222 for f in files)


def _dead_backup(repo: str) -> None:
    """A `restic backup --stdin` killed with SIGKILL while it holds its lock."""
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD}
    proc = subprocess.Popen(
        ["restic", "--repo", repo, "--no-cache", "backup", "--stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _whole_lock(repo) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _whole_lock(repo), "restic never took its lock"
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


def test_backend_credentials_reach_restics_environment_and_nothing_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stand-in restic that writes down its environment: the request's `env` is there
    for every restic the job runs; the job's own output never holds the values."""
    seen = tmp_path / "env.json"
    fake = tmp_path / "restic"
    fake.write_text(
        "#!/usr/bin/env python3\nimport json, os\n"
        f"open({str(seen)!r}, 'a').write(json.dumps(dict(os.environ)) + '\\n')\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(resticjob, "RESTIC", str(fake))
    monkeypatch.setattr(resticjob, "KEY_FILE", str(tmp_path / "run.key"))
    monkeypatch.setattr(resticjob, "BACKEND_ENV", {})
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    code = resticjob.run(
        {
            "password": PASSWORD,
            "repository": "s3:https://s3.example/bucket",
            "env": {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": secret},
            "steps": [
                {"op": "restic", "args": ["snapshots"]},
                {"op": "restic", "args": ["check"]},
            ],
        }
    )
    assert code == 0
    envs = [json.loads(line) for line in seen.read_text().splitlines()]
    assert len(envs) == 2
    assert all(e["AWS_SECRET_ACCESS_KEY"] == secret for e in envs)
    assert all(e["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE" for e in envs)
    assert secret not in capsys.readouterr().out


def test_init_on_a_local_repository_that_exists_runs_no_restic(
    repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each restic process pays the key derivation: the probe of a local repository is a
    look at its config file. A directory without one is still probed (and initialised)."""
    calls = tmp_path / "calls"
    fake = tmp_path / "restic"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec restic "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setattr(resticjob, "RESTIC", str(fake))
    monkeypatch.setattr(resticjob, "KEY_FILE", str(tmp_path / "run.key"))
    assert resticjob.run({"password": PASSWORD, "repository": repo, "steps": [{"op": "init"}]}) == 0
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert event["code"] == 0 and event["created"] is False
    assert not calls.exists()
    fresh = str(tmp_path / "fresh")
    (tmp_path / "run.key").unlink()
    assert (
        resticjob.run({"password": PASSWORD, "repository": fresh, "steps": [{"op": "init"}]}) == 0
    )
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert event["created"] is True and Path(fresh, "config").is_file()
    assert [line.split()[-2:] for line in calls.read_text().splitlines()] == [
        ["cat", "config"],
        ["--no-cache", "init"],
    ]


def _backup_steps(data: Path) -> list[dict[str, object]]:
    """`backup create`'s steps (supervisor/backupjob.py) with this directory as the world."""
    from supervisor.backupjob import DATA, create_request

    text = json.dumps(create_request("s", ["mode:save"])).replace(DATA, str(data))
    steps: list[dict[str, object]] = json.loads(text)
    return steps


def test_the_check_runs_beside_the_comparison_and_both_answer(
    repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check holds restic's exclusive lock while the comparison lists the snapshot
    (`ls --no-lock`); every step answers, the check's line after the comparison's."""
    data = tmp_path / "world"
    (data / "universe").mkdir(parents=True)
    for index in range(20):
        (data / "universe" / f"r.{index}.bin").write_bytes(os.urandom(64 * 1024))
    monkeypatch.setattr(resticjob, "KEY_FILE", str(tmp_path / "run.key"))
    steps = _backup_steps(data)
    code = resticjob.run({"password": PASSWORD, "repository": repo, "steps": steps})
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0, events
    assert [(e["step"], e["op"], e["code"]) for e in events] == [
        (0, "init", 0), (1, "manifest", 0), (2, "restic", 0), (4, "compare", 0), (3, "restic", 0),
    ]  # fmt: skip
    assert events[3]["files"] == 20 and events[3]["ok"] is True


def test_a_failing_check_beside_the_comparison_fails_the_job(
    repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "world"
    data.mkdir()
    (data / "a.bin").write_bytes(b"x" * 1000)
    fake = tmp_path / "restic"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = check ] && { echo "Fatal: pack damaged" >&2; '
        'exit 1; }; done\nexec restic "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(resticjob, "RESTIC", str(fake))
    monkeypatch.setattr(resticjob, "KEY_FILE", str(tmp_path / "run.key"))
    code = resticjob.run({"password": PASSWORD, "repository": repo, "steps": _backup_steps(data)})
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert events[-1]["step"] == 3 and events[-1]["code"] == 1
    assert "pack damaged" in events[-1]["stderr"]
    assert next(e for e in events if e["op"] == "compare")["code"] == 0
