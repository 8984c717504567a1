"""The notification outbox: one file per alert in `<state dir>/<stack>.outbox/`, written
(atomically, 0600, in a 0700 directory) before anything is sent, so an alert decided is
an alert delivered at least once, whatever kills the daemon in between.

A file is named after its alert's idempotency key (hashed), so adding the same happening
twice keeps one. Once every target has taken it the file stays as a tombstone
(`delivered_at`) for KEEP_DELIVERED_S, so the same key emitted again (a daemon restarted
mid-drain, a login code read twice) is not sent twice either. Any supervisor process may
add (the `backup` and `restore` verbs run in the CLI); the daemon's sender
(supervisor/alertsender.py) alone sends and acknowledges.

The retry schedule and the backlog view are pure functions at the bottom.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from supervisor.alerts import Alert
from supervisor.statefile import ensure_dir, read_json, write_json_atomic

__all__ = [
    "MAX_AGE_S",
    "Entry",
    "Outbox",
    "backlog",
    "retry_delay",
    "target_id",
]

log = logging.getLogger(__name__)

MAX_AGE_S = 24 * 3600.0  # retried this long, then dropped with a log line
KEEP_DELIVERED_S = 48 * 3600.0  # tombstones outlive the longest retry
RETRY_BASE_S = 2.0
RETRY_CAP_S = 300.0
_SUFFIX = ".json"


def target_id(url: str) -> str:
    """Names a target in the outbox without writing its URL (a secret) there."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def _file_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32] + _SUFFIX


@dataclass(frozen=True, slots=True)
class Entry:
    alert: Alert
    created_at: float  # when it was added (the 24 h count from here)
    owed: tuple[str, ...]  # target ids that have not taken it yet
    attempts: int = 0
    next_at: float = 0.0
    last_error: str | None = None
    delivered_at: float | None = None

    @property
    def key(self) -> str:
        return self.alert.key

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.alert.to_json(),
            "created_at": self.created_at,
            "owed": list(self.owed),
            "attempts": self.attempts,
            "next_at": self.next_at,
            "last_error": self.last_error,
            "delivered_at": self.delivered_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> Entry | None:
        if not isinstance(data, dict):
            return None
        alert = Alert.from_json(data.get("alert"))
        owed = data.get("owed")
        if alert is None or not isinstance(owed, list):
            return None
        try:
            error = data.get("last_error")
            delivered = data.get("delivered_at")
            return cls(
                alert,
                float(data["created_at"]),
                tuple(str(o) for o in owed),
                int(data.get("attempts", 0)),
                float(data.get("next_at", 0.0)),
                None if error is None else str(error),
                None if delivered is None else float(delivered),
            )
        except (KeyError, TypeError, ValueError):
            return None


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _file(self, key: str) -> Path:
        return self.path / _file_name(key)

    def add(self, alert: Alert, owed: tuple[str, ...], now: float) -> bool:
        """Durably add `alert` for the targets `owed`; False when its key is already
        here (pending or delivered). Raises OSError (a full disk): the caller logs it."""
        ensure_dir(self.path)
        file = self._file(alert.key)
        if file.exists():
            return False
        write_json_atomic(file, Entry(alert, now, owed, next_at=now).to_json())
        return True

    def save(self, entry: Entry) -> None:
        write_json_atomic(self._file(entry.key), entry.to_json())

    def remove(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)

    def names(self) -> set[str]:
        try:
            return {p.name for p in self.path.iterdir() if p.name.endswith(_SUFFIX)}
        except OSError:  # missing, or not readable: nothing to send from it
            return set()

    def read(self, name: str) -> Entry | None:
        entry = Entry.from_json(read_json(self.path / name))
        if entry is not None and _file_name(entry.key) != name:
            return None  # not written by an outbox
        return entry

    def entries(self) -> list[Entry]:
        """All entries, oldest first; unreadable files are left alone and skipped."""
        found = [e for e in (self.read(n) for n in sorted(self.names())) if e is not None]
        return sorted(found, key=lambda e: (e.created_at, e.key))

    def prune(self, now: float) -> int:
        """Remove tombstones past KEEP_DELIVERED_S; returns how many."""
        removed = 0
        for entry in self.entries():
            if entry.delivered_at is not None and now - entry.delivered_at > KEEP_DELIVERED_S:
                self.remove(entry.key)
                removed += 1
        return removed

    def remove_stale_temp_files(self) -> None:
        """Temp files a kill -9 left mid-write (statefile's writer names them .NAME.*.tmp)."""
        for tmp in self.path.glob(".*.tmp"):
            with suppress(FileNotFoundError):
                tmp.unlink()


# --- pure: when to try again, what `status` shows ----------------------------------------


def retry_delay(attempts: int, base: float = RETRY_BASE_S, cap: float = RETRY_CAP_S) -> float:
    """2 s, 4 s, 8 s, ... up to `cap`, after `attempts` failed tries (>= 1)."""
    exponent = max(0, attempts - 1)
    return cap if exponent > 60 else min(cap, base * 2.0**exponent)


def failed(entry: Entry, now: float, error: str) -> Entry:
    attempts = entry.attempts + 1
    return replace(entry, attempts=attempts, next_at=now + retry_delay(attempts), last_error=error)


def taken(entry: Entry, target: str, now: float) -> Entry:
    owed = tuple(t for t in entry.owed if t != target)
    return replace(entry, owed=owed, delivered_at=None if owed else now)


def expired(entry: Entry, now: float, max_age_s: float = MAX_AGE_S) -> bool:
    return entry.delivered_at is None and now - entry.created_at > max_age_s


def backlog(entries: list[Entry], now: float) -> dict[str, Any]:
    """What `status` shows of the outbox: how many wait, the oldest's age, the last
    error (already redacted by the sender)."""
    waiting = [e for e in entries if e.delivered_at is None]
    oldest = min((e.created_at for e in waiting), default=None)
    errored = [e for e in waiting if e.last_error]
    last = max(errored, key=lambda e: e.next_at, default=None)
    return {
        "pending": len(waiting),
        "oldest_age_s": None if oldest is None else round(max(0.0, now - oldest), 3),
        "last_error": None if last is None else last.last_error,
        "delivered_kept": len(entries) - len(waiting),
    }


def outbox_path(state_dir: Path, stack: str) -> Path:
    return state_dir / f"{stack}.outbox"


def private(path: Path) -> None:
    """The outbox directory is 0700 whatever the umask made it (alerts carry login codes)."""
    ensure_dir(path)
    path.chmod(0o700)
