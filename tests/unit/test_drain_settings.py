"""The `[drain]` and `[schedule]` settings: defaults, the forms people type, and every bad
input issue 24 lists: one line naming the field and the fix, exit 78, no Docker call."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor.drain import DrainPolicy
from supervisor.schedule import RestartSchedule, parse_timezone
from supervisor.settings import EX_CONFIG, load_settings
from tests.unit.test_settings_forms import (
    CountingSocket,
    _run_up,
    assert_refused_in_one_line,
    docker_socket,
)

__all__ = ["docker_socket"]  # the fixture, shared with test_settings_forms


def test_defaults_are_the_issues() -> None:
    s = load_settings()
    assert [float(o) for o in s.drain.warn_at] == [900, 300, 60, 30, 10]
    assert float(s.drain.max_wait) == 900
    assert s.drain.on_deadline == "act"
    assert s.drain.poll_s == 10
    assert "{action}" in s.drain.message and "{time_left}" in s.drain.message
    assert s.schedule.restart is None and s.schedule.timezone == "UTC"
    assert s.schedule.only_if_empty is False
    assert s.drain.policy() == DrainPolicy()
    # `config` shows them as written.
    assert s.masked()["drain"]["warn_at"] == ["15m", "5m", "1m", "30s", "10s"]
    assert s.masked()["drain"]["max_wait"] == "15m"


def test_environment_and_toml_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_DRAIN__WARN_AT", "10m, 1m30s ,5")
    monkeypatch.setenv("HYOS_DRAIN__ON_DEADLINE", "postpone")
    monkeypatch.setenv("HYOS_SCHEDULE__RESTART", "daily 04:30")
    s = load_settings()
    assert [float(o) for o in s.drain.warn_at] == [600, 90, 5]
    assert s.drain.policy().on_deadline == "postpone"
    assert s.drain.policy(only_if_empty=True).on_deadline == "skip"
    assert s.schedule.restart == RestartSchedule("daily 04:30", "30 4 * * *")
    monkeypatch.delenv("HYOS_DRAIN__WARN_AT")
    config = tmp_path / "hyos.toml"
    config.write_text(
        '[drain]\nwarn_at = ["2m", "30s"]\nmax_wait = "2m"\n'
        '[schedule]\nrestart = "0 5 * * 1"\ntimezone = "Europe/Berlin"\nonly_if_empty = true\n'
    )
    s = load_settings(config)
    assert [float(o) for o in s.drain.warn_at] == [120, 30]
    assert s.schedule.restart is not None and s.schedule.restart.cron == "30 4 * * *"  # env wins
    assert s.schedule.zone == parse_timezone("Europe/Berlin")


def test_the_next_window_is_read_in_the_schedules_time_zone() -> None:
    daily = RestartSchedule.parse("daily 04:30")
    after = datetime(2026, 3, 28, 12, 0, tzinfo=UTC).timestamp()
    berlin = daily.next_window(after, parse_timezone("Europe/Berlin"))
    # 29 March 2026 is the switch to summer time in Berlin: 04:30 CEST is 02:30 UTC.
    assert datetime.fromtimestamp(berlin, UTC) == datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
    assert daily.next_window(after, UTC) == datetime(2026, 3, 29, 4, 30, tzinfo=UTC).timestamp()


# Every bad input the issue lists, and its neighbours: (variable, value, field, words).
BAD = [
    ("HYOS_DRAIN__WARN_AT", "15m,soon,10s", "drain.warn_at", "'soon' is not a duration"),
    ("HYOS_DRAIN__WARN_AT", "5 minutes", "drain.warn_at", "is not a duration"),
    ("HYOS_DRAIN__MAX_WAIT", "-5m", "drain.max_wait", "is negative"),
    ("HYOS_DRAIN__MAX_WAIT", "-300", "drain.max_wait", "is negative"),
    ("HYOS_DRAIN__MAX_WAIT", "forever", "drain.max_wait", "is not a duration"),
    ("HYOS_DRAIN__ON_DEADLINE", "wait", "drain.on_deadline", "'act' or 'postpone'"),
    ("HYOS_DRAIN__MESSAGE", "Restart at {when}", "drain.message", "unknown field {when}"),
    ("HYOS_DRAIN__MESSAGE", "Restart in {time_left", "drain.message", "not a valid template"),
    ("HYOS_DRAIN__POLL_S", "0", "drain.poll_s", "greater than or equal to 1"),
    ("HYOS_SCHEDULE__RESTART", "61 4 * * *", "schedule.restart", "is not a cron line"),
    ("HYOS_SCHEDULE__RESTART", "every night", "schedule.restart", "is not a cron line"),
    ("HYOS_SCHEDULE__RESTART", "0 4 * *", "schedule.restart", "is not a cron line"),
    ("HYOS_SCHEDULE__RESTART", "daily 25:00", "schedule.restart", "use daily HH:MM"),
    ("HYOS_SCHEDULE__TIMEZONE", "Mars/Olympus", "schedule.timezone", "IANA name"),
]


@pytest.mark.parametrize(("variable", "value", "field", "words"), BAD)
def test_a_bad_drain_or_schedule_setting_is_one_line_exit_78_and_touches_nothing(
    variable: str,
    value: str,
    field: str,
    words: str,
    docker_socket: CountingSocket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    assert_refused_in_one_line(capsys, docker_socket, field, words, variable)


def test_a_bad_value_in_the_toml_file_too(
    docker_socket: CountingSocket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hyos.toml"
    config.write_text('[schedule]\nrestart = "0 4 * * 8"\n[drain]\nmax_wait = -60\n')
    code, lines = _run_up(capsys, "--config", str(config))
    assert code == EX_CONFIG, lines
    # One line per problem, each naming its field.
    assert len(lines) == 2, lines
    assert "drain.max_wait: -60 is negative" in lines[0], lines
    assert "schedule.restart: '0 4 * * 8' is not a cron line" in lines[1], lines
    assert docker_socket.connections == 0
