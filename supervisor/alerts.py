"""Pure: what the operator is notified of, in words, each with a stable idempotency key.

An `Alert` is a value: its kind, a key that names the happening (the same happening seen
twice, by a daemon restarted in between or by two processes, gets the same key, so the
outbox keeps one and a receiver can drop a duplicate), a title and body for people, and
the facts for machines. Nothing here sends, stores or reads a clock: the shell passes
`now` and keeps the per-service `Episode`.

Crash episodes: a service's failures are told once per episode, not once per crash. The
first failure opens an episode (`crash`); the ones after it only count, until the
service has been healthy for the restart policy's `reset_after_s` (the same span after
which the backoff starts over). Within an episode: `crash_loop_entered` when the state
machine stops restarting, `crash_loop_left` when something starts it again, and
`recovered` the first time it is healthy after its failures.

Update alerts (issue 26) are built here too (`update_available`, `update_applied`,
`update_rolled_back`); the update code emits them through the daemon's sender.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "Alert",
    "AlertKind",
    "Episode",
    "Severity",
    "backup_failed",
    "backup_stale",
    "drain_cancelled",
    "drain_started",
    "needs_auth",
    "on_failure",
    "on_healthy",
    "on_left_crash_loop",
    "restore_done",
    "update_applied",
    "update_available",
    "update_needs_attention",
    "update_rolled_back",
]


class AlertKind(StrEnum):
    CRASH = "crash"
    CRASH_LOOP_ENTERED = "crash_loop_entered"
    CRASH_LOOP_LEFT = "crash_loop_left"
    RECOVERED = "recovered"
    NEEDS_AUTH = "needs_auth"
    UPDATE_AVAILABLE = "update_available"
    UPDATE_APPLIED = "update_applied"
    UPDATE_ROLLED_BACK = "update_rolled_back"
    UPDATE_NEEDS_ATTENTION = "update_needs_attention"
    BACKUP_FAILED = "backup_failed"
    BACKUP_STALE = "backup_stale"
    RESTORE_DONE = "restore_done"
    DRAIN_STARTED = "drain_started"
    DRAIN_CANCELLED = "drain_cancelled"


class Severity(StrEnum):
    """Apprise's notification types, by the same words (its NotifyType values)."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    key: str  # stable: the same happening always gets the same key
    stack: str
    at: float  # when it happened (wall clock)
    title: str
    body: str
    severity: Severity = Severity.INFO
    role: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "key": self.key,
            "stack": self.stack,
            "at": self.at,
            "title": self.title,
            "body": self.body,
            "severity": self.severity.value,
            "role": self.role,
            "facts": self.facts,
        }

    @classmethod
    def from_json(cls, data: Any) -> Alert | None:
        """None for anything malformed (an outbox file from elsewhere, or torn by hand)."""
        if not isinstance(data, dict):
            return None
        try:
            role = data.get("role")
            facts = data.get("facts", {})
            if not isinstance(facts, dict) or not (role is None or isinstance(role, str)):
                return None
            fields = (data["key"], data["stack"], data["title"], data["body"])
            if not all(isinstance(f, str) for f in fields):
                return None
            return cls(
                AlertKind(data["kind"]),
                data["key"],
                data["stack"],
                float(data["at"]),
                data["title"],
                data["body"],
                Severity(data.get("severity", "info")),
                role,
                facts,
            )
        except (KeyError, TypeError, ValueError):
            return None


def _key(stack: str, kind: AlertKind, *parts: object) -> str:
    """`hyos/<stack>/<kind>/<parts...>`: readable in a receiver's log, stable across
    restarts (times are rounded to the millisecond, as the state file keeps them)."""
    shown = [f"{p:.3f}" if isinstance(p, float) else str(p) for p in parts]
    return "/".join(["hyos", stack, kind.value, *shown])


# --- crash episodes --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Episode:
    """One service's run of failures, as the notifications see it (kept by the shell)."""

    opened_at: float
    crashes: int = 1
    loops: int = 0  # crash loops entered in this episode
    in_loop: bool = False
    healthy_since: float | None = None
    recovered: bool = False  # `recovered` was told for this episode

    def to_json(self) -> dict[str, Any]:
        return {
            "opened_at": self.opened_at,
            "crashes": self.crashes,
            "loops": self.loops,
            "in_loop": self.in_loop,
            "healthy_since": self.healthy_since,
            "recovered": self.recovered,
        }

    @classmethod
    def from_json(cls, data: Any) -> Episode | None:
        if not isinstance(data, dict):
            return None
        try:
            since = data.get("healthy_since")
            return cls(
                float(data["opened_at"]),
                int(data.get("crashes", 1)),
                int(data.get("loops", 0)),
                bool(data.get("in_loop", False)),
                None if since is None else float(since),
                bool(data.get("recovered", False)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _closed(episode: Episode | None, now: float, reset_after_s: float) -> bool:
    return episode is None or (
        not episode.in_loop
        and episode.healthy_since is not None
        and now - episode.healthy_since >= reset_after_s
    )


def on_failure(
    episode: Episode | None,
    stack: str,
    role: str,
    now: float,
    *,
    reason: str,
    exit_code: int | None,
    crash_loop: bool,
    reset_after_s: float,
    report: str | None = None,
) -> tuple[Episode, list[Alert]]:
    """A failure the state machine counted (a crash, an OOM kill, an unhealthy restart);
    `crash_loop`: it stopped restarting because of it; `report`: its crash report's id."""
    alerts: list[Alert] = []
    facts: dict[str, Any] = {"reason": reason, "exit_code": exit_code}
    see = ""
    if report is not None:
        facts["crash_report"] = report
        see = f" Crash report: `hyos-supervisor crashes show {report}`."
    if _closed(episode, now, reset_after_s):
        episode = Episode(opened_at=now)
        alerts.append(
            Alert(
                AlertKind.CRASH,
                _key(stack, AlertKind.CRASH, role, now),
                stack,
                now,
                f"[{stack}] {role} " + ("crashed" if exit_code is not None else "turned unhealthy"),
                f"The {role} failed ({reason}); the supervisor restarts it with backoff. "
                "Further failures are told only if it enters a crash loop." + see,
                Severity.WARNING,
                role,
                facts,
            )
        )
    else:
        assert episode is not None
        episode = replace(episode, crashes=episode.crashes + 1, healthy_since=None)
    if crash_loop and not episode.in_loop:
        episode = replace(episode, loops=episode.loops + 1, in_loop=True, healthy_since=None)
        alerts.append(
            Alert(
                AlertKind.CRASH_LOOP_ENTERED,
                _key(stack, AlertKind.CRASH_LOOP_ENTERED, role, episode.opened_at, episode.loops),
                stack,
                now,
                f"[{stack}] {role} is in a crash loop",
                f"The {role} failed {episode.crashes} times since "
                f"{_clock(episode.opened_at)} (last: {reason}); it is no longer restarted and "
                f"its container is kept for inspection. Fix the cause, then run "
                f"`hyos-supervisor restart {role}`." + see,
                Severity.FAILURE,
                role,
                {**facts, "failures": episode.crashes},
            )
        )
    return episode, alerts


def on_left_crash_loop(
    episode: Episode | None, stack: str, role: str, now: float, *, by: str
) -> tuple[Episode | None, list[Alert]]:
    """The service left the crash loop (`by`: the operator's restart, a start)."""
    if episode is None or not episode.in_loop:
        return episode, []
    episode = replace(episode, in_loop=False)
    return episode, [
        Alert(
            AlertKind.CRASH_LOOP_LEFT,
            _key(stack, AlertKind.CRASH_LOOP_LEFT, role, episode.opened_at, episode.loops),
            stack,
            now,
            f"[{stack}] {role} left the crash loop",
            f"The {role} is started again ({by}).",
            Severity.INFO,
            role,
            {"by": by},
        )
    ]


def on_healthy(
    episode: Episode | None, stack: str, role: str, now: float
) -> tuple[Episode | None, list[Alert]]:
    """The service reports healthy (or runs, when it has no health check)."""
    if episode is None:
        return None, []
    since = episode.healthy_since if episode.healthy_since is not None else now
    episode = replace(episode, healthy_since=since, in_loop=False)
    if episode.recovered:
        return episode, []
    episode = replace(episode, recovered=True)
    return episode, [
        Alert(
            AlertKind.RECOVERED,
            _key(stack, AlertKind.RECOVERED, role, episode.opened_at),
            stack,
            now,
            f"[{stack}] {role} recovered",
            f"The {role} is healthy again after {episode.crashes} failure(s) since "
            f"{_clock(episode.opened_at)}.",
            Severity.SUCCESS,
            role,
            {"failures": episode.crashes, "down_s": round(now - episode.opened_at, 3)},
        )
    ]


# --- the login -------------------------------------------------------------------------


def needs_auth(
    stack: str, role: str, now: float, *, url: str | None, code: str | None, reason: str = ""
) -> Alert:
    """The Hytale login waits for a person: with HyOS's device-flow URL and code, one
    alert per code; without (exit 2: the tokens were refused), one per `now`."""
    if code:
        body = (
            f"The {role} waits for the Hytale login: open {url or 'the login page'} and "
            f"enter the code {code}."
        )
        key = _key(stack, AlertKind.NEEDS_AUTH, role, code)
    else:
        body = (
            f"The {role} needs a Hytale login ({reason or 'authentication failed'}); run "
            f"`hyos-supervisor auth`, then `hyos-supervisor restart {role}`."
        )
        key = _key(stack, AlertKind.NEEDS_AUTH, role, now)
    return Alert(
        AlertKind.NEEDS_AUTH,
        key,
        stack,
        now,
        f"[{stack}] Hytale login needed" + (f": code {code}" if code else ""),
        body,
        Severity.WARNING,
        role,
        {"url": url, "code": code, "reason": reason},
    )


# --- updates (issue 26 emits these) ----------------------------------------------------


def update_available(stack: str, now: float, *, current: str, available: str) -> Alert:
    return Alert(
        AlertKind.UPDATE_AVAILABLE,
        _key(stack, AlertKind.UPDATE_AVAILABLE, available),
        stack,
        now,
        f"[{stack}] update available: {available}",
        f"Hytale {available} is available (running {current}).",
        Severity.INFO,
        None,
        {"current": current, "available": available},
    )


def update_applied(stack: str, now: float, *, previous: str, version: str) -> Alert:
    return Alert(
        AlertKind.UPDATE_APPLIED,
        _key(stack, AlertKind.UPDATE_APPLIED, previous, version),
        stack,
        now,
        f"[{stack}] updated to {version}",
        f"The server runs {version} (was {previous}) and passed its health gate.",
        Severity.SUCCESS,
        None,
        {"previous": previous, "version": version},
    )


def update_rolled_back(
    stack: str, now: float, *, previous: str, attempted: str, reason: str
) -> Alert:
    return Alert(
        AlertKind.UPDATE_ROLLED_BACK,
        _key(stack, AlertKind.UPDATE_ROLLED_BACK, previous, attempted, now),
        stack,
        now,
        f"[{stack}] update to {attempted} rolled back",
        f"The update to {attempted} failed ({reason}); the server runs {previous} again.",
        Severity.FAILURE,
        None,
        {"previous": previous, "attempted": attempted, "reason": reason},
    )


def update_needs_attention(
    stack: str, now: float, *, attempted: str, reason: str, restore: str
) -> Alert:
    """The rollback of a failed update failed too: the server is stopped."""
    return Alert(
        AlertKind.UPDATE_NEEDS_ATTENTION,
        _key(stack, AlertKind.UPDATE_NEEDS_ATTENTION, attempted, now),
        stack,
        now,
        f"[{stack}] update to {attempted} failed and could not be rolled back",
        f"The update to {attempted} failed and so did its rollback ({reason}). The server is "
        f"stopped; the world before the update is in its snapshot: `{restore}`.",
        Severity.FAILURE,
        None,
        {"attempted": attempted, "reason": reason, "restore": restore},
    )


# --- backups, restores, drains ---------------------------------------------------------


def backup_failed(stack: str, now: float, *, error: str, scheduled: bool) -> Alert:
    return Alert(
        AlertKind.BACKUP_FAILED,
        _key(stack, AlertKind.BACKUP_FAILED, now),
        stack,
        now,
        f"[{stack}] backup failed",
        f"The {'scheduled ' if scheduled else ''}backup failed: {error}",
        Severity.FAILURE,
        None,
        {"error": error, "scheduled": scheduled},
    )


def backup_stale(stack: str, now: float, *, last_ok: float, every: str) -> Alert:
    """Once per last good backup: the same stale backup is not told twice."""
    return Alert(
        AlertKind.BACKUP_STALE,
        _key(stack, AlertKind.BACKUP_STALE, last_ok),
        stack,
        now,
        f"[{stack}] the last backup is stale",
        f"The last successful backup ({_clock(last_ok)}) is older than twice its interval "
        f"({every}).",
        Severity.WARNING,
        None,
        {"last_ok": last_ok, "every": every, "age_s": round(now - last_ok, 3)},
    )


def restore_done(stack: str, now: float, *, snapshot: str, pinned: str, downtime_s: float) -> Alert:
    return Alert(
        AlertKind.RESTORE_DONE,
        _key(stack, AlertKind.RESTORE_DONE, snapshot, now),
        stack,
        now,
        f"[{stack}] world restored from {snapshot[:8]}",
        f"The world was restored from backup {snapshot[:8]} (the world before it is kept as "
        f"{pinned[:8]}); the server was down {downtime_s:.0f} s.",
        Severity.SUCCESS,
        None,
        {"snapshot": snapshot, "pinned": pinned, "downtime_s": round(downtime_s, 3)},
    )


def drain_started(stack: str, now: float, *, action: str, started: float, deadline: float) -> Alert:
    """One per drain (keyed by its start, which the state file keeps across restarts)."""
    return Alert(
        AlertKind.DRAIN_STARTED,
        _key(stack, AlertKind.DRAIN_STARTED, started),
        stack,
        now,
        f"[{stack}] players warned: {action} pending",
        f"The server will {action} once empty, at the latest {_clock(deadline)}; "
        "`hyos-supervisor cancel` cancels it.",
        Severity.INFO,
        None,
        {"action": action, "started": started, "deadline": deadline},
    )


def drain_cancelled(stack: str, now: float, *, action: str, started: float, by: str) -> Alert:
    return Alert(
        AlertKind.DRAIN_CANCELLED,
        _key(stack, AlertKind.DRAIN_CANCELLED, started),
        stack,
        now,
        f"[{stack}] pending {action} cancelled",
        f"The pending {action} was cancelled ({by}).",
        Severity.INFO,
        None,
        {"action": action, "started": started, "by": by},
    )


def _clock(moment: float) -> str:
    """UTC, to the second: what a person reads in a message."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
