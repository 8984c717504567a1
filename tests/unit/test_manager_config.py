"""The prepare step's clean-up of HyOS's manager-config.json (entrypoint.managerconfig)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from entrypoint.cli import main
from entrypoint.managerconfig import WIRED_KEYS, clean_manager_config

# What HyOS's manager writes after a first-run setup with the telemetry opt-out: its
# defaults over the supervisor's wiring, and the API secret from the environment.
SAVED = {
    "serverHost": "hyos-server",
    "serverPort": 30381,
    "containerName": "hyos-server",
    "apiClientId": "hyos-manager",
    "apiClientSecret": "the-old-secret-value",
    "stateDir": "/data/.state",
    "gamePort": 30380,
    "telemetryEnabled": False,
    "setupComplete": False,
    "createdAt": "2026-01-01T00:00:00.000Z",
    "updatedAt": "2026-01-01T00:00:00.000Z",
}


def write(path: Path, content: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)


def test_wired_keys_and_the_secret_are_dropped_the_operators_choices_kept(tmp_path: Path) -> None:
    config = tmp_path / ".state/manager-config.json"
    write(config, json.dumps(SAVED))
    result = clean_manager_config(str(config), None)
    assert result == {"present": True, "dropped": list(WIRED_KEYS), "mode_fixed": False}
    assert json.loads(config.read_text()) == {
        "telemetryEnabled": False,
        "setupComplete": False,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
    }
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "the-old-secret-value" not in "".join(p.read_text() for p in config.parent.iterdir())
    # A second run changes nothing.
    assert clean_manager_config(str(config), None) == {
        "present": True, "dropped": [], "mode_fixed": False
    }  # fmt: skip


def test_a_clean_file_only_gets_its_mode_fixed(tmp_path: Path) -> None:
    config = tmp_path / "manager-config.json"
    write(config, json.dumps({"telemetryEnabled": True}), 0o644)
    before = config.stat().st_ino
    assert clean_manager_config(str(config), None)["mode_fixed"] is True
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert config.stat().st_ino == before


def test_missing_foreign_and_linked_files_are_left_alone(tmp_path: Path) -> None:
    assert clean_manager_config(str(tmp_path / "no/such/manager-config.json"), None) == {
        "present": False, "dropped": [], "mode_fixed": False
    }  # fmt: skip
    outside = tmp_path / "outside.json"
    write(outside, json.dumps(SAVED))
    # A symlinked file and a symlinked directory are never followed.
    link = tmp_path / "a/manager-config.json"
    link.parent.mkdir()
    link.symlink_to(outside)
    assert clean_manager_config(str(link), None)["present"] is False
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert clean_manager_config(str(tmp_path / "b/manager-config.json"), None)["present"] is False
    # A hard link's mode is not changed (its other name may be a host file).
    hard = tmp_path / "c/manager-config.json"
    hard.parent.mkdir()
    plain = tmp_path / "plain.json"
    write(plain, "{}", 0o644)
    os.link(plain, hard)
    assert clean_manager_config(str(hard), None)["mode_fixed"] is False
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    # Not a JSON object: left as it is (the manager ignores it too).
    junk = tmp_path / "d/manager-config.json"
    write(junk, "[1, 2]")
    assert clean_manager_config(str(junk), None)["unreadable"] is True
    assert junk.read_text() == "[1, 2]"
    assert json.loads(outside.read_text()) == SAVED


def test_the_cli_reports_key_names_never_values(tmp_path: Path, capsys: object) -> None:
    config = tmp_path / "manager-config.json"
    write(config, json.dumps(SAVED))
    assert main(["--manager-config", str(config)]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    event = json.loads(out.splitlines()[0])
    assert event["event"] == "manager_config" and "apiClientSecret" in event["dropped"]
    assert "the-old-secret-value" not in out
