"""`[crashes]` and `[logs]`: defaults as the issue asks (20 reports or 500 MB; logs gzipped
after a day, removed after 7 days or past 200 MB), the forms people type, and every bad
value one line naming the setting and its variable, exit 78."""

from __future__ import annotations

import pytest

from supervisor import cli
from supervisor.settings import EX_CONFIG, load_settings


def test_the_defaults() -> None:
    settings = load_settings()
    assert (settings.crashes.keep, int(settings.crashes.max_bytes)) == (20, 500 * 1000**2)
    assert settings.crashes.lines == 500 and settings.crashes.gather_s < 3
    policy = settings.logs.policy()
    assert (policy.compress_after_s, policy.remove_after_s) == (86400, 7 * 86400)
    assert policy.max_bytes == 200 * 1000**2 and float(settings.logs.every) == 86400


def test_the_environment_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_LOGS__COMPRESS_AFTER", "12h")
    monkeypatch.setenv("HYOS_LOGS__REMOVE_AFTER", "1d12h")
    monkeypatch.setenv("HYOS_LOGS__MAX_BYTES", "64MiB")
    monkeypatch.setenv("HYOS_CRASHES__MAX_BYTES", "1g")
    monkeypatch.setenv("HYOS_CRASHES__KEEP", "5")
    settings = load_settings()
    policy = settings.logs.policy()
    assert (policy.compress_after_s, policy.remove_after_s) == (43200, 129600)
    assert policy.max_bytes == 64 * 1024**2
    assert (settings.crashes.keep, int(settings.crashes.max_bytes)) == (5, 1000**3)
    shown = settings.masked()
    assert shown["logs"]["remove_after"] == "1d12h" and shown["crashes"]["max_bytes"] == "1g"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("HYOS_CRASHES__KEEP", "0", "crashes.keep"),
        ("HYOS_CRASHES__MAX_BYTES", "lots", "crashes.max_bytes: 'lots' is not a size"),
        ("HYOS_CRASHES__GATHER_S", "0", "crashes.gather_s"),
        ("HYOS_CRASHES__ENABLED", "perhaps", "crashes.enabled"),
        ("HYOS_LOGS__EVERY", "soon", "logs.every: 'soon' is not a duration"),
        ("HYOS_LOGS__MAX_BYTES", "-5", "logs.max_bytes"),
        ("HYOS_LOGS__COMPRESS_AFTER", "9d", "compress_after (9d) must be shorter than"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_78(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    words: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert cli.main(["config", "--check"]) == EX_CONFIG
    lines = [line for line in capsys.readouterr().err.splitlines() if "config error" in line]
    assert len(lines) == 1, lines
    assert words in lines[0] and "HYOS_" in lines[0], lines[0]
