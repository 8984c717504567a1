"""Log output: JSON lines with extras, readable text on a terminal."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from supervisor.logs import bind, error_line, is_journal, setup_logging, syslog_priority


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_standard_fields_and_extras() -> None:
    out = io.StringIO()
    setup_logging("json", "INFO", stream=out)
    log = bind(logging.getLogger("supervisor.daemon"), stack="hyos", service="server")
    log = bind(log, container_id="c0ffee")
    log.warning(
        "container exited",
        extra={
            "exit_code": 137,
            "oom_killed": True,
            "restart_count": 2,
            "backoff_s": 2.0,
            "reason": "oom",
        },
    )
    (record,) = lines(out)
    assert record["message"] == "container exited"
    assert record["level"] == "WARNING"
    assert record["logger"] == "supervisor.daemon"
    stamp = datetime.fromisoformat(str(record["timestamp"]))
    assert stamp.utcoffset() == timedelta(0)
    assert record["stack"] == "hyos"
    assert record["service"] == "server"
    assert record["container_id"] == "c0ffee"
    assert record["exit_code"] == 137
    assert record["oom_killed"] is True
    assert record["restart_count"] == 2
    assert record["backoff_s"] == 2.0
    assert record["reason"] == "oom"


def test_auto_is_json_off_a_tty_and_text_on_a_tty() -> None:
    out = io.StringIO()
    setup_logging("auto", stream=out)
    logging.getLogger("t").info("hello")
    assert lines(out)[0]["message"] == "hello"

    tty = FakeTty()
    setup_logging("auto", stream=tty)
    logging.getLogger("t").info("hello")
    assert "INFO t: hello" in tty.getvalue()


def test_forced_formats_override_tty() -> None:
    tty = FakeTty()
    setup_logging("json", stream=tty)
    logging.getLogger("t").info("hi")
    assert lines(tty)[0]["message"] == "hi"
    out = io.StringIO()
    setup_logging("text", stream=out)
    logging.getLogger("t").info("hi")
    assert out.getvalue().rstrip().endswith("INFO t: hi")


def test_text_shows_extras_as_key_value() -> None:
    out = io.StringIO()
    setup_logging("text", stream=out)
    log = bind(logging.getLogger("supervisor.daemon"), stack="hyos", service="server")
    log.error("container exited", extra={"exit_code": 1, "reason": "crash (exit 1)"})
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line
    assert "ERROR supervisor.daemon: container exited" in line
    assert "stack=hyos service=server exit_code=1 reason='crash (exit 1)'" in line


def test_text_exception_after_fields() -> None:
    out = io.StringIO()
    setup_logging("text", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        bind(logging.getLogger("t"), service="server").exception("failed")
    first, *rest = out.getvalue().splitlines()
    assert first.endswith("failed service=server")
    assert "RuntimeError: boom" in rest[-1]


def test_json_survives_odd_values() -> None:
    out = io.StringIO()
    setup_logging("json", stream=out)
    logging.getLogger("t").info("path", extra={"path": Path("/data"), "obj": object()})
    record = lines(out)[0]
    assert record["path"] == "/data"


def test_setup_is_idempotent_and_sets_level() -> None:
    out = io.StringIO()
    setup_logging("json", "WARNING", stream=out)
    setup_logging("json", "warning", stream=out)
    logging.getLogger("t").info("dropped")
    logging.getLogger("t").warning("kept")
    assert [r["message"] for r in lines(out)] == ["kept"]


def test_call_extra_overrides_bound_fields() -> None:
    out = io.StringIO()
    setup_logging("json", stream=out)
    log = bind(logging.getLogger("t"), service="server", container_id="old")
    log.info("x", extra={"container_id": "new"})
    log.info("y")
    first, second = lines(out)
    assert first["container_id"] == "new"
    assert second["container_id"] == "old"


def test_bind_rejects_record_attribute_names() -> None:
    with pytest.raises(ValueError, match="name"):
        bind(logging.getLogger("t"), name="server")


def test_unknown_format_rejected() -> None:
    with pytest.raises(ValueError):
        setup_logging("yaml", stream=io.StringIO())  # type: ignore[arg-type]


# --- journald -----------------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[io.TextIOWrapper]:
    """A real file standing in for the journal's stream: JOURNAL_STREAM names its
    device and inode, as systemd does for the socket it connects to stderr."""
    with (tmp_path / "journal").open("w+") as stream:
        stat = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
        yield stream


def written(stream: io.TextIOWrapper) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_auto_under_journald_writes_plain_lines_with_syslog_priorities(
    journal: io.TextIOWrapper,
) -> None:
    setup_logging("auto", "DEBUG", stream=journal)
    log = bind(logging.getLogger("supervisor.daemon"), stack="hyos", service="server")
    log.debug("d")
    log.info("supervising")
    log.warning("exited", extra={"exit_code": 1, "reason": "crash (exit 1)"})
    log.error("e")
    log.critical("c")
    assert written(journal) == [
        "<7>DEBUG supervisor.daemon: d stack=hyos service=server",
        "<6>INFO supervisor.daemon: supervising stack=hyos service=server",
        "<4>WARNING supervisor.daemon: exited stack=hyos service=server exit_code=1 "
        "reason='crash (exit 1)'",
        "<3>ERROR supervisor.daemon: e stack=hyos service=server",
        "<2>CRITICAL supervisor.daemon: c stack=hyos service=server",
    ]


def test_under_journald_every_line_of_a_traceback_keeps_the_priority(
    journal: io.TextIOWrapper,
) -> None:
    setup_logging("auto", stream=journal)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("t").exception("failed")
    found = written(journal)
    assert len(found) > 2
    assert all(line.startswith("<3>") for line in found), found
    assert found[-1] == "<3>RuntimeError: boom"


def test_json_is_still_forced_under_journald(journal: io.TextIOWrapper) -> None:
    setup_logging("json", stream=journal)
    logging.getLogger("t").warning("hi")
    (line,) = written(journal)
    assert json.loads(line)["message"] == "hi"


def test_journal_stream_of_another_file_means_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child whose stderr was redirected inherits JOURNAL_STREAM but not the stream."""
    other = tmp_path / "other"
    other.write_text("")
    stat = other.stat()
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    with (tmp_path / "log").open("w+") as stream:
        setup_logging("auto", stream=stream)
        logging.getLogger("t").info("hi")
        assert json.loads(written(stream)[0])["message"] == "hi"
    for junk in ("", "garbage", "1:", ":2", "a:b"):
        monkeypatch.setenv("JOURNAL_STREAM", junk)
        assert not is_journal(io.StringIO())


def test_error_line_carries_err_priority_only_in_the_journal(
    journal: io.TextIOWrapper,
) -> None:
    error_line("hyos-supervisor: it failed", stream=journal)
    assert written(journal) == ["<3>hyos-supervisor: it failed"]
    plain = io.StringIO()
    error_line("hyos-supervisor: it failed", stream=plain)
    assert plain.getvalue() == "hyos-supervisor: it failed\n"


def test_syslog_priorities() -> None:
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    assert [syslog_priority(level) for level in levels] == [7, 6, 4, 3, 2]
