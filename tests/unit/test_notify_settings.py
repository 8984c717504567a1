"""`[notify]`: Apprise URLs from the environment, TOML or a file; secrets that `config`
shows only by scheme; a bad URL is one line and exit 78, without the URL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor import alerts, outbox
from supervisor.alertsender import AlertSender, NoAlerts, alerts_for, outbox_view
from supervisor.cli import _outbox_line
from supervisor.notifysettings import redact
from supervisor.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]
DISCORD = "discord://123456789/s3cr3tWebhookToken"
HOOK = "json://hooks.example.net/s3cr3t-path"


def test_urls_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_NOTIFY__URLS", f"{DISCORD},{HOOK}")
    settings = load_settings()
    assert settings.notify.targets() == [DISCORD, HOOK]
    shown = json.dumps(settings.masked())
    assert "s3cr3t" not in shown
    assert settings.masked()["notify"]["urls"] == ["discord://***", "json://***"]


def test_the_file_wins_and_only_its_path_shows(tmp_path: Path) -> None:
    file = tmp_path / "urls"
    file.write_text(f"{HOOK}\n{DISCORD}\n")
    settings = load_settings(notify={"urls": ["ntfy://topic"], "urls_file": str(file)})
    assert settings.notify.targets() == [HOOK, DISCORD]
    assert settings.masked()["notify"]["urls_file"] == str(file)
    assert "s3cr3t" not in json.dumps(settings.masked())


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("hooks.example.net/s3cr3t", "URL #1 is not an Apprise URL (***)"),
        (f"{HOOK},nosuch://s3cr3t-x", "URL #2 (nosuch://***) is not a URL Apprise can send to"),
    ],
)
def test_a_bad_url_is_one_line_naming_it_by_position_never_by_value(
    value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYOS_NOTIFY__URLS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    (line,) = caught.value.problems
    assert line.startswith("notify.urls: ") and says in line and "(env HYOS_NOTIFY__URLS)" in line
    assert "s3cr3t" not in line


def test_a_json_value_for_a_secret_file_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pydantic-settings reads a complex field's environment value as JSON first: `{}`
    reached the file reader as a dict (Hypothesis found it: TypeError)."""
    for value in ("{}", "[1]", "7"):
        monkeypatch.setenv("HYOS_NOTIFY__URLS_FILE", value)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        line = str(caught.value)
        assert "notify.urls_file" in line and "HYOS_NOTIFY__URLS_FILE" in line, line
        assert "\n" not in line


def test_the_cli_exits_78_on_a_bad_url() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "config"],
        env={"HYOS_NOTIFY__URLS": "nosuch://s3cr3t-x", "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 78
    assert "notify.urls" in done.stderr and "s3cr3t" not in done.stderr


def test_no_urls_no_outbox(tmp_path: Path) -> None:
    settings = load_settings(state_dir=str(tmp_path))
    assert isinstance(alerts_for(settings), NoAlerts)
    assert outbox_view(settings, time.time()) is None


def test_status_shows_the_backlog_read_from_the_outbox_files(tmp_path: Path) -> None:
    settings = load_settings(state_dir=str(tmp_path), stack="s", notify={"urls": [HOOK]})
    sender = alerts_for(settings)
    assert isinstance(sender, AlertSender)
    now = time.time()
    sender.emit(alerts.backup_failed("s", now - 300, error="x", scheduled=True))
    (entry,) = sender.box.entries()
    sender.box.save(outbox.failed(entry, now, "A Connection error occurred sending to ***."))
    view = outbox_view(settings, now + 60)
    assert view is not None and view["pending"] == 1 and view["oldest_age_s"] >= 60
    line = _outbox_line(view)
    assert line.startswith("notifications: 1 waiting (oldest 1m)")
    assert "last error: A Connection error" in line
    assert _outbox_line({**view, "pending": 0}) == "notifications: all delivered"


def test_redaction_hides_every_part_of_a_url_that_could_be_a_token() -> None:
    text = "POST https://hooks.example.net/s3cr3t-path failed; user=alice pass=hunter22"
    hidden = redact(text, ["json://alice:hunter22@hooks.example.net/s3cr3t-path"])
    assert "s3cr3t" not in hidden and "hunter22" not in hidden and "hooks.example" not in hidden
