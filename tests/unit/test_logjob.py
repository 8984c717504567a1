"""The game-log helper's one job (entrypoint/logjob.py), run here on a temporary tree
standing in for the data volume: it lists, tails, reads, compresses (mtime kept, content
intact) and deletes only regular files directly inside its allowed directories, never
through a symlink; each step answers with one JSON line, and a failing step does not end
the job."""

from __future__ import annotations

import base64
import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

from entrypoint import logjob


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    for sub in ("Server/logs", "logs", ".state"):
        (root / sub).mkdir(parents=True)
    logs, hyos, server, state = (
        str(root / "Server/logs"),
        str(root / "logs"),
        str(root / "Server"),
        str(root / ".state"),
    )
    monkeypatch.setattr(logjob, "ALLOWED_DIRS", (logs, hyos, server, state))
    monkeypatch.setattr(logjob, "WRITABLE_DIRS", (logs, hyos))
    return root


def _run(
    capsys: pytest.CaptureFixture[str], *steps: dict[str, object]
) -> tuple[int, list[dict[str, object]]]:
    code = logjob.main(["logjob", json.dumps({"steps": list(steps)})])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, lines


def test_tails_give_the_newest_files_last_bytes(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = data / "Server/logs"
    for n, name in enumerate(("a_server.log", "b_server.log", "c_server.log")):
        (logs / name).write_text(f"{name} first\n" + "x" * 100 + f"\n{name} last\n")
        os.utime(logs / name, (1000 + n, 1000 + n))
    code, answers = _run(
        capsys, {"op": "tails", "dir": str(logs), "glob": "*_server.log", "newest": 2, "bytes": 20}
    )
    assert code == 0
    files = {Path(str(f["path"])).name: f for f in answers[0]["files"]}  # type: ignore[attr-defined]
    assert set(files) == {"a_server.log", "b_server.log", "c_server.log"}
    assert "tail" not in files["a_server.log"]  # only the newest two are tailed
    tail = base64.b64decode(files["c_server.log"]["tail"])
    assert tail.endswith(b"c_server.log last\n") and len(tail) == 20


def test_read_gives_named_state_files_and_skips_missing_ones(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (data / ".state/server.json").write_text('{"status": "crashed"}')
    code, answers = _run(
        capsys,
        {"op": "read", "dir": str(data / ".state"), "names": ["server.json", "health.json"]},
    )
    assert code == 0
    files: Any = answers[0]["files"]
    assert len(files) == 1
    assert base64.b64decode(files[0]["tail"]) == b'{"status": "crashed"}'


def test_gzip_keeps_the_content_and_the_mtime(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = data / "logs/old.log"
    log.write_bytes(b"hello\n" * 1000)
    os.utime(log, (12345, 12345))
    code, answers = _run(capsys, {"op": "gzip", "path": str(log)})
    assert code == 0 and answers[0]["code"] == 0
    assert not log.exists()
    packed = data / "logs/old.log.gz"
    assert gzip.decompress(packed.read_bytes()) == b"hello\n" * 1000
    assert packed.stat().st_mtime == 12345
    assert answers[0]["was"] == 6000 and answers[0]["size"] == packed.stat().st_size
    assert [p.name for p in (data / "logs").iterdir()] == ["old.log.gz"]  # no temp file left


def test_delete_removes_one_regular_file(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = data / "Server/logs/old_server.log.gz"
    log.write_bytes(b"12345")
    code, answers = _run(capsys, {"op": "delete", "path": str(log)})
    assert code == 0 and answers[0]["freed"] == 5 and not log.exists()


def test_no_symlink_is_followed_and_nothing_outside_is_touched(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (data / "logs/link.log").symlink_to(precious)
    (data / "Server/world.dat").write_text("the world")
    code, answers = _run(
        capsys,
        {"op": "delete", "path": str(data / "logs/link.log")},
        {"op": "gzip", "path": str(data / "logs/link.log")},
        {"op": "delete", "path": str(data / "Server/world.dat")},  # readable, never writable
        {"op": "delete", "path": str(precious)},
        {"op": "list", "dir": str(data / "logs")},
    )
    assert code == 1
    assert [a["code"] for a in answers] == [1, 1, 1, 1, 0]
    assert precious.read_text() == "keep me" and (data / "Server/world.dat").exists()
    assert answers[-1]["files"] == []  # the symlink is not a file it lists


def test_a_symlinked_directory_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.log").write_text("x")
    (data / "logs").rmdir()
    (data / "logs").symlink_to(elsewhere)
    code, answers = _run(capsys, {"op": "delete", "path": str(data / "logs/x.log")})
    assert code == 1 and answers[0]["code"] == 1  # ELOOP: O_NOFOLLOW on the directory
    assert (elsewhere / "x.log").exists()


def test_a_bad_request_is_one_answer_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, answers = _run_raw(capsys, "not json")
    assert code == 2 and answers[0]["step"] == -1


def _run_raw(capsys: pytest.CaptureFixture[str], raw: str) -> tuple[int, list[dict[str, object]]]:
    code = logjob.main(["logjob", raw])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_hidden_temp_file_is_never_listed(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data / "logs/.old.log.gz.tmp").write_bytes(b"half")
    (data / "logs/new.log").write_bytes(b"x")
    code, answers = _run(capsys, {"op": "list", "dir": str(data / "logs")})
    files: Any = answers[0]["files"]
    assert code == 0 and [Path(f["path"]).name for f in files] == ["new.log"]


def test_the_helper_and_the_planner_name_the_same_directories() -> None:
    from supervisor import logprune

    assert logjob.WRITABLE_DIRS == logprune.DIRS
    assert set(logprune.SERVER_DIRS) <= set(logjob.ALLOWED_DIRS)
    assert "/data/.state" in logjob.ALLOWED_DIRS and "/data" not in logjob.ALLOWED_DIRS
