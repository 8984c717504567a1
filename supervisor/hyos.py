"""Pure: what HyOS's server scripts tell the world through /data/.state (lib/state.sh),
read as values, and what a server exit means once they are taken into account.

- `auth.json` (lib/auth.sh): the Hytale login. `pending` carries the device-flow URL and
  code while the scripts poll; a login that ran out ends the container with exit 1 and
  `timeout` (or `failed`, when Hytale's server answered `expired_token` or refused).
- `update.json` (cmd/auto-update.sh): the dashboard's update button writes `downloading`
  and stops Java itself, so the container exits 143; the update is installed on the next
  start once `.update-on-restart` exists (what HyOS's schedule-update.sh writes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from entrypoint.contract import MANAGER_WIRED_KEYS

STATE_DIR = "/data/.state"
AUTH_FILE = f"{STATE_DIR}/auth.json"
UPDATE_FILE = f"{STATE_DIR}/update.json"
UPDATE_ON_RESTART_FILE = f"{STATE_DIR}/.update-on-restart"
# The installed game version, one line (lib/download.sh's VERSION_FILE).
GAME_VERSION_FILE = "/data/.version"
# HyOS's manager's settings; they outrank its environment (entrypoint.managerconfig).
MANAGER_CONFIG_FILE = f"{STATE_DIR}/manager-config.json"

# Log lines after which auth.json may have changed (lib/auth.sh prints the URL and code,
# then progress and the outcome): the daemon re-reads it only then.
LOGIN_LINE = re.compile(r"oauth|authori[sz]|authenticat|device|login|user_code", re.IGNORECASE)

# auth.json statuses that end the container with exit 1 and need a person.
_LOGIN_ENDED = frozenset({"timeout", "failed"})


@dataclass(frozen=True, slots=True)
class Login:
    """HyOS's auth.json: the login state of the server."""

    status: str  # unknown | pending | authenticated | timeout | failed
    url: str | None = None
    code: str | None = None

    @property
    def waiting(self) -> bool:
        return self.status == "pending" and bool(self.code)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "url": self.url, "code": self.code}


def game_version(raw: bytes | None) -> str | None:
    """The version in HyOS's `.version`, or None when absent or not one printable token
    (it ends up in a restic tag: no commas, no spaces)."""
    text = (raw or b"").decode("utf-8", errors="replace").strip()
    return text if re.fullmatch(r"[A-Za-z0-9._+-]{1,64}", text) else None


def _object(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value != "null" else None


def parse_login(raw: bytes | None) -> Login | None:
    """auth.json as HyOS writes it; None when absent or unreadable."""
    obj = _object(raw)
    status = _text(obj.get("status")) if obj else None
    if obj is None or status is None:
        return None
    if status != "pending":
        return Login(status)
    return Login(status, _text(obj.get("auth_url")), _text(obj.get("auth_code")))


def _timestamp(value: Any) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def update_started_since(raw: bytes | None, since: float) -> bool:
    """update.json says `downloading`, written after `since` (the container's start):
    the update button ran in this container. (HyOS's first download leaves a stale
    `downloading` behind, so the status alone proves nothing.)"""
    obj = _object(raw)
    if obj is None or obj.get("status") != "downloading":
        return False
    written = _timestamp(obj.get("updated_at"))
    return written is not None and written >= since


class ServerExit(StrEnum):
    """What HyOS's state files add to a server exit's code."""

    LOGIN_ENDED = "login_ended"  # exit 1 after the login timed out or was refused
    UPDATE = "update"  # exit 143 after the dashboard's update button


def explain_exit(exit_code: int, login: Login | None, update_started: bool) -> ServerExit | None:
    """None when HyOS's state adds nothing: the code alone decides."""
    if exit_code == 1 and login is not None and login.status in _LOGIN_ENDED:
        return ServerExit.LOGIN_ENDED
    if exit_code == 143 and update_started:
        return ServerExit.UPDATE
    return None


def update_on_restart(now: datetime) -> bytes:
    """What HyOS's schedule-update.sh writes to ask for the update at the next start."""
    body = {
        "scheduled_at": now.isoformat(timespec="seconds"),
        "target_version": None,
        "scheduled_by": "hyos-supervisor",
    }
    return (json.dumps(body) + "\n").encode()


def manager_config_overrides(raw: bytes | None) -> tuple[str, ...]:
    """The keys of HyOS's manager-config.json that override what the supervisor wires
    through the manager's environment (the manager saves them with every setting)."""
    config = _object(raw)
    return tuple(key for key in MANAGER_WIRED_KEYS if config is not None and key in config)
