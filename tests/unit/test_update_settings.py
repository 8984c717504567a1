"""The `[update]` settings (issue 26): the defaults, the forms people type, and bad values:
one line naming the field and the fix, exit 78, no Docker call."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.schedule import RestartSchedule
from supervisor.settings import load_settings
from tests.unit.test_settings_forms import CountingSocket, assert_refused_in_one_line, docker_socket

__all__ = ["docker_socket"]


def test_defaults_are_the_issues() -> None:
    u = load_settings().update
    assert u.window is None and u.auto is False
    assert u.gate_s == 120 and u.keep_days == 7 and u.ready_s == 600
    assert load_settings().masked()["update"]["window"] is None


def test_environment_and_toml_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_UPDATE__WINDOW", "daily 05:15")
    monkeypatch.setenv("HYOS_UPDATE__AUTO", "true")
    monkeypatch.setenv("HYOS_UPDATE__GATE_S", "30")
    u = load_settings().update
    assert u.window == RestartSchedule("daily 05:15", "15 5 * * *")
    assert u.auto is True and u.gate_s == 30
    assert load_settings().masked()["update"]["window"] == "daily 05:15"
    config = tmp_path / "hyos.toml"
    config.write_text('[update]\nwindow = "0 4 * * 2"\nkeep_days = 14\n')
    u = load_settings(config).update
    assert u.keep_days == 14
    assert u.window is not None and u.window.cron == "15 5 * * *"  # the environment wins


@pytest.mark.parametrize(
    ("variable", "value", "field", "words"),
    [
        ("HYOS_UPDATE__WINDOW", "daily 25:00", "update.window", "daily HH:MM"),
        ("HYOS_UPDATE__WINDOW", "every night", "update.window", "cron line"),
        ("HYOS_UPDATE__GATE_S", "0", "update.gate_s", "greater than or equal to 1"),
        ("HYOS_UPDATE__KEEP_DAYS", "-1", "update.keep_days", "greater than or equal to 0"),
        ("HYOS_UPDATE__AUTO", "sometimes", "update.auto", "bool"),
        ("HYOS_UPDATE__WHEN", "now", "update.when", "unknown setting"),
    ],
)
def test_bad_values_are_one_line_and_exit_78(
    variable: str,
    value: str,
    field: str,
    words: str,
    docker_socket: CountingSocket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    assert_refused_in_one_line(capsys, docker_socket, field, words, None)
