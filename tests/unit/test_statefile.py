"""Atomic state file writes and forgiving reads."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from supervisor.statefile import (
    DEFAULT_STATE_DIR,
    default_state_dir,
    ensure_dir,
    read_json,
    remove_stale_temp_files,
    write_json_atomic,
)

OLD = {"services": {"server": {"status": "running"}}}
NEW = {"services": {"server": {"status": "crash_loop"}}}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "state.json")


def test_round_trip_and_mode_0600_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    old_umask = os.umask(0)
    try:
        write_json_atomic(target, OLD)
    finally:
        os.umask(old_umask)
    assert mode(target) == 0o600
    assert read_json(target) == OLD
    write_json_atomic(str(target), NEW)  # replacing keeps 0600 too
    assert mode(target) == 0o600
    assert read_json(target) == NEW
    assert leftovers(tmp_path) == []


def test_failed_fsync_leaves_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(target, OLD)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_json_atomic(target, NEW)
    monkeypatch.undo()
    assert read_json(target) == OLD
    assert leftovers(tmp_path) == []


def test_failed_write_midway_leaves_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(target, OLD)
    real_write = os.write
    calls = []

    def short_then_fail(fd: int, data: memoryview) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[:5])  # a partial write first
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_fail)
    with pytest.raises(OSError, match="No space"):
        write_json_atomic(target, NEW)
    monkeypatch.undo()
    assert read_json(target) == OLD
    assert leftovers(tmp_path) == []


def test_unserialisable_data_leaves_old_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(target, OLD)
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert read_json(target) == OLD
    assert leftovers(tmp_path) == []


def test_partial_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def one_byte(fd: int, data: memoryview) -> int:
        return real_write(fd, data[:1])

    monkeypatch.setattr(os, "write", one_byte)
    target = tmp_path / "state.json"
    write_json_atomic(target, NEW)
    monkeypatch.undo()
    assert read_json(target) == NEW


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert read_json(tmp_path / "nope.json") is None


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"a": 1', b"", b"\xff\xfe\x00garbage", b"[1, 2]", b'"just a string"'],
)
def test_corrupt_file_is_none_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="supervisor.statefile"):
        assert read_json(target) is None
    assert any(str(target) in r.getMessage() for r in caplog.records)


def test_unreadable_path_is_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="supervisor.statefile"):
        assert read_json(tmp_path) is None  # a directory
    assert caplog.records


def test_write_into_missing_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_json_atomic(tmp_path / "missing" / "state.json", OLD)


def test_default_state_dir() -> None:
    assert default_state_dir({}) == DEFAULT_STATE_DIR
    assert default_state_dir({"STATE_DIRECTORY": ""}) == DEFAULT_STATE_DIR
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/a"}) == Path("/var/lib/a")
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}) == Path("/var/lib/a")


def test_default_state_dir_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/srv/state")
    assert default_state_dir() == Path("/srv/state")


def test_ensure_dir_private(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        created = ensure_dir(tmp_path / "a" / "state")
    finally:
        os.umask(old_umask)
    assert created.is_dir()
    assert mode(created) == 0o700
    assert ensure_dir(created) == created  # idempotent


def test_remove_stale_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(target, OLD)
    (tmp_path / ".state.json.abc123.tmp").write_text("{")
    (tmp_path / ".other.json.abc123.tmp").write_text("{")
    assert remove_stale_temp_files(target) == 1
    assert leftovers(tmp_path) == [".other.json.abc123.tmp"]
    assert json.loads(target.read_text()) == OLD
