"""The `[backup]` settings (issue 25): defaults, the forms people type, the password's
secrecy, and every bad input: one line naming the field and the fix, exit 78, no Docker
call."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor import cli
from supervisor.backupsettings import BackupEvery, Repository, describe_age, overdue
from supervisor.retention import KeepPolicy
from supervisor.settings import load_settings
from tests.unit.test_settings_forms import (
    CountingSocket,
    assert_refused_in_one_line,
    docker_socket,
)

__all__ = ["docker_socket"]

SECRET = "correct-horse-battery-staple-42"


def test_defaults() -> None:
    s = load_settings()
    assert s.backup.repository is None
    assert s.backup.repository_for("hyos") == Repository("volume", "hyos-backups", "hyos-backups")
    assert s.backup.supplied_password() is None
    assert s.backup.every is None and s.backup.mode == "save"
    assert s.backup.policy() == KeepPolicy(last=3, hourly=24, daily=7, weekly=4, monthly=12)


@pytest.mark.parametrize(
    ("text", "kind", "location", "network"),
    [
        ("/srv/hyos-backups/", "path", "/srv/hyos-backups", False),
        ("local:/srv/b", "path", "/srv/b", False),
        ("my-backups", "volume", "my-backups", False),
        ("s3:https://s3.example.com/bucket", "url", "s3:https://s3.example.com/bucket", True),
        ("sftp:user@host:/srv/restic", "url", "sftp:user@host:/srv/restic", True),
        ("rest:https://u:p@host:8000/", "url", "rest:https://u:p@host:8000/", True),
        ("rclone:remote:path", "url", "rclone:remote:path", True),
    ],
)
def test_repository_forms(text: str, kind: str, location: str, network: bool) -> None:
    repo = Repository.parse(text)
    assert (repo.kind, repo.location, repo.needs_network) == (kind, location, network)


def test_environment_and_toml_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_BACKUP__REPOSITORY", "rest:https://user:pw@backup.example:8000/hyos")
    monkeypatch.setenv("HYOS_BACKUP__EVERY", "6h")
    monkeypatch.setenv("HYOS_BACKUP__KEEP_DAILY", "14")
    s = load_settings()
    assert s.backup.every is not None and s.backup.every.seconds == 6 * 3600
    assert s.backup.policy().daily == 14
    config = tmp_path / "hyos.toml"
    config.write_text('[backup]\nevery = "daily 03:00"\nmode = "stop"\nkeep_monthly = 0\n')
    monkeypatch.delenv("HYOS_BACKUP__EVERY")
    s = load_settings(config)
    assert s.backup.every is not None and s.backup.every.cron is not None
    assert s.backup.every.cron.cron == "0 3 * * *"
    assert s.backup.mode == "stop" and s.backup.keep_monthly == 0
    shown = s.masked()["backup"]
    # A URL's credentials are masked; everything is shown as written.
    assert shown["repository"] == "rest:https://***@backup.example:8000/hyos"
    assert shown["every"] == "daily 03:00"


def test_the_password_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYOS_BACKUP__PASSWORD", SECRET)
    s = load_settings()
    assert s.backup.supplied_password() is not None
    assert SECRET not in json.dumps(s.masked()) and SECRET not in repr(s)
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "**********" in out
    # The file form wins, and shows its path, never its content.
    secret_file = tmp_path / "restic.key"
    secret_file.write_text(SECRET + "-from-a-file\n")
    monkeypatch.setenv("HYOS_BACKUP__PASSWORD_FILE", str(secret_file))
    s = load_settings()
    password = s.backup.supplied_password()
    assert password is not None and password.get_secret_value() == SECRET + "-from-a-file"
    assert s.masked()["backup"]["password_file"] == str(secret_file)
    assert cli.main(["config"]) == 0
    assert "from-a-file" not in capsys.readouterr().out


def test_backend_credentials_reach_restic_only_and_are_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYOS_BACKUP__REPOSITORY", "s3:https://s3.example/bucket")
    monkeypatch.setenv(
        "HYOS_BACKUP__CREDENTIALS",
        json.dumps({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET}),
    )
    s = load_settings()
    assert s.backup.backend_credentials() == {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    assert SECRET not in json.dumps(s.masked()) and SECRET not in repr(s)
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "AWS_SECRET_ACCESS_KEY" in out
    # The env file form (as restic's documentation writes it) wins over the table.
    env_file = tmp_path / "restic.env"
    env_file.write_text("# B2\nexport B2_ACCOUNT_ID=0012ab\nB2_ACCOUNT_KEY='" + SECRET + "-b2'\n\n")
    monkeypatch.setenv("HYOS_BACKUP__CREDENTIALS_FILE", str(env_file))
    s = load_settings()
    assert s.backup.backend_credentials() == {
        "B2_ACCOUNT_ID": "0012ab",
        "B2_ACCOUNT_KEY": SECRET + "-b2",
    }
    assert s.masked()["backup"]["credentials_file"] == str(env_file)
    assert cli.main(["config"]) == 0
    assert SECRET not in capsys.readouterr().out


def test_a_bad_credentials_file_names_its_line(
    tmp_path: Path,
    docker_socket: CountingSocket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env_file = tmp_path / "restic.env"
    env_file.write_text("AWS_ACCESS_KEY_ID=x\nRESTIC_PASSWORD=" + SECRET + "\n")
    monkeypatch.setenv("HYOS_BACKUP__CREDENTIALS_FILE", str(env_file))
    line = assert_refused_in_one_line(
        capsys, docker_socket, "backup.credentials_file", "line 2", "HYOS_BACKUP__CREDENTIALS_FILE"
    )
    assert SECRET not in line


def test_every_next_and_overdue() -> None:
    zone = UTC
    now = datetime(2026, 12, 7, 4, 0, tzinfo=UTC).timestamp()
    hourly = BackupEvery.parse("1h")
    assert hourly.next_after(None, now, zone) == now
    assert hourly.next_after(now - 600, now, zone) == now + 3000
    assert hourly.next_after(now - 7200, now, zone) == now  # late: at once
    nightly = BackupEvery.parse("0 3 * * *")
    assert nightly.next_after(None, now, zone) == datetime(2026, 12, 8, 3, tzinfo=UTC).timestamp()
    assert nightly.interval(zone, now) == 86400
    assert not overdue(None, nightly, now, zone)
    assert not overdue(now - 86400 * 1.5, nightly, now, zone)
    assert overdue(now - 86400 * 2.5, nightly, now, zone)
    assert [describe_age(s) for s in (5, 300, 3 * 3600 + 720, 2 * 86400 + 4 * 3600)] == [
        "5s",
        "5m",
        "3h 12m",
        "2d 4h",
    ]


BAD = [
    ("HYOS_BACKUP__REPOSITORY", "/etc/restic", "backup.repository", "sensitive host path"),
    ("HYOS_BACKUP__REPOSITORY", "ftp:host/x", "backup.repository", "not a restic location"),
    ("HYOS_BACKUP__REPOSITORY", "bad name!", "backup.repository", "valid volume name"),
    ("HYOS_BACKUP__PASSWORD", "changeme", "backup.password", "known default"),
    ("HYOS_BACKUP__PASSWORD", "short-one", "backup.password", "shorter than 16"),
    ("HYOS_BACKUP__PASSWORD_FILE", "/nonexistent/key", "backup.password_file", "cannot read"),
    ("HYOS_BACKUP__EVERY", "sometimes", "backup.every", "neither a duration"),
    ("HYOS_BACKUP__EVERY", "61 3 * * *", "backup.every", "nor a cron line"),
    ("HYOS_BACKUP__EVERY", "1m", "backup.every", "shorter than 5m"),
    ("HYOS_BACKUP__MODE", "snapshot", "backup.mode", "'save' or 'stop'"),
    ("HYOS_BACKUP__KEEP_DAILY", "-1", "backup.keep_daily", "greater than or equal to 0"),
    ("HYOS_BACKUP__KEEP_LAST", "many", "backup.keep_last", "valid integer"),
    ("HYOS_BACKUP__REPO", "/srv/b", "backup.repo", "unknown setting"),
    ("HYOS_BACKUP__CREDENTIALS", '{"PATH": "/tmp"}', "backup.credentials", "restic backend"),
    ("HYOS_BACKUP__CREDENTIALS", '{"AWS_KEY": ""}', "backup.credentials", "is empty"),
    ("HYOS_BACKUP__CREDENTIALS_FILE", "/nonexistent/env", "backup.credentials_file", "cannot read"),
]


@pytest.mark.parametrize(("variable", "value", "field", "words"), BAD)
def test_a_bad_backup_setting_is_one_line_exit_78_and_touches_nothing(
    variable: str,
    value: str,
    field: str,
    words: str,
    docker_socket: CountingSocket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    line = assert_refused_in_one_line(
        capsys, docker_socket, field, words, None if "unknown" in words else variable
    )
    if variable == "HYOS_BACKUP__PASSWORD":  # a refused password is not echoed
        assert value not in line


# --- the generated key ---------------------------------------------------------------


def test_the_key_is_generated_once_0600_in_the_state_dir_and_the_setting_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    from supervisor import backupkey

    state = tmp_path / "state"
    s = load_settings(state_dir=state, stack="kt")
    with pytest.raises(backupkey.BackupKeyError, match="no backup key"):
        backupkey.password(s, create=False)
    first, source = backupkey.password(s)
    path = state / "kt.backup-key"
    assert source == f"generated {path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert len(first.get_secret_value()) >= 32
    assert backupkey.password(s)[0] == first  # read back, never replaced
    assert [p.name for p in state.iterdir()] == ["kt.backup-key"]  # no temp file left
    monkeypatch.setenv("HYOS_BACKUP__PASSWORD", SECRET)
    supplied, source = backupkey.password(load_settings(state_dir=state, stack="kt"))
    assert supplied.get_secret_value() == SECRET and source == "setting"
    path.write_text("changeme\n")
    monkeypatch.delenv("HYOS_BACKUP__PASSWORD")
    with pytest.raises(backupkey.BackupKeyError, match="unusable"):
        backupkey.password(s)


def test_status_shows_the_last_backup_and_an_overdue_one() -> None:
    from supervisor.backupsettings import backup_status, status_line

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()
    assert backup_status(None, None, now, UTC) is None
    every = BackupEvery.parse("6h")
    none_yet = backup_status(None, every, now, UTC)
    assert none_yet is not None and not none_yet["overdue"]
    assert status_line(none_yet) == "backup: none yet; every 6h"
    ok = {"time": now - 3 * 3600, "ok": True, "files": 12, "bytes": 3400, "verified": True}
    fresh = backup_status({"last_ok": ok, "last": ok}, every, now, UTC)
    assert fresh is not None and fresh["age_s"] == 3 * 3600 and not fresh["overdue"]
    assert status_line(fresh) == (
        "backup: last ok 3h 0m ago (12 files, 3400 bytes, verified); every 6h"
    )
    old = {**ok, "time": now - 13 * 3600}
    failed = {"time": now - 60, "ok": False, "error": "init failed (exit 1): disk full"}
    stale = backup_status({"last_ok": old, "last": failed}, every, now, UTC)
    assert stale is not None and stale["overdue"] and stale["last_result"] == "failed"
    assert status_line(stale).endswith(
        "the last attempt failed: init failed (exit 1): disk full; every 6h; "
        "OVERDUE (older than twice its interval)"
    )
