"""Delivers the outbox's alerts through Apprise, in the daemon's task group, never in the
way of supervision: `emit` only writes the outbox file and wakes the sender; the sender
calls Apprise (synchronous, network-bound) in worker threads, at most SEND_THREADS at a
time, each call bounded by Apprise's own connect and read timeouts.

Retries: a failed try is tried again after 2 s, 4 s, ... up to 5 min; an alert still owed
24 h after it was added is dropped with a log line. A target that fails is *down*: while
it is, only one alert at a time probes it (on the same backoff), so a receiver that is
away for an hour costs one request per backoff step, not one per alert; when a probe gets
through, everything owed to that target is due at once.

Idempotency: every generic webhook (json://, form://, xml:// and their s-variants) gets
the alert's key in its body (`idempotency_key`, through Apprise's `:field=value` URL
parameters) and as an `Idempotency-Key` header (`+Header=value`); the kind and stack go
with it. A kill between a receiver's answer and the outbox's acknowledgement sends an
alert again on the next start: at least once, duplicates detectable by the key.

Also keeps each service's crash episode (supervisor/alerts.py) in `episodes.json` beside
the outbox files, so a restarted daemon does not open a second episode for one run of
failures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
from anyio.abc import TaskStatus

from supervisor import alerts, outbox
from supervisor.alerts import Alert, Episode
from supervisor.notifysettings import redact
from supervisor.outbox import Entry, Outbox
from supervisor.settings import Settings
from supervisor.statefile import default_state_dir, read_json, write_json_atomic

__all__ = ["AlertSender", "Alerts", "NoAlerts", "alerts_for", "deliver", "outbox_view", "with_key"]

logger = logging.getLogger("supervisor.alerts")

SEND_THREADS = 4
SCAN_S = 2.0  # how often the directory is looked at for alerts other processes added
TIDY_S = 3600.0  # how often delivered tombstones past their 48 h are removed
PROBE_CAP_S = 60.0  # the longest a down target waits between probes
# Apprise's per-request socket timeouts (connect, read), explicit: a thread is held at
# most this long by a target that does not answer.
CONNECT_TIMEOUT_S = 4.0
READ_TIMEOUT_S = 8.0
_WEBHOOKS = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})
EPISODES = "episodes.json"

Deliver = Callable[[str, Alert], "str | None"]


class Alerts(Protocol):
    """What the daemon's parts tell the operator (Supervision.alerts)."""

    def emit(self, alert: Alert) -> None: ...

    def failure(
        self,
        role: str,
        *,
        reason: str,
        exit_code: int | None,
        crash_loop: bool,
        report: str | None = None,
    ) -> None:
        """A failure the restart state machine counted."""

    def healthy(self, role: str) -> None: ...

    def left_crash_loop(self, role: str, *, by: str) -> None: ...


class NoAlerts:
    """No `[notify] urls`: nothing is written, nothing sent."""

    enabled = False

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    def emit(self, alert: Alert) -> None:
        pass

    def failure(
        self,
        role: str,
        *,
        reason: str,
        exit_code: int | None,
        crash_loop: bool,
        report: str | None = None,
    ) -> None:
        pass

    def healthy(self, role: str) -> None:
        pass

    def left_crash_loop(self, role: str, *, by: str) -> None:
        pass


# --- one delivery, in a worker thread --------------------------------------------------


def with_key(url: str, alert: Alert) -> str:
    """`url` with the alert's key, kind and stack as body fields and a header, for the
    generic webhooks; other services' URLs unchanged (a chat message needs no key)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in _WEBHOOKS:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [
        (":idempotency_key", alert.key),
        (":event", alert.kind.value),
        (":stack", alert.stack),
        ("+Idempotency-Key", alert.key),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


_quieted = threading.Lock()


# Apprise and the HTTP stack under it (only Apprise uses requests/urllib3 here: the
# engine's client is aiohttp). Their debug lines carry request paths: a webhook's token.
_QUIET = ("apprise", "urllib3", "requests", "requests_oauthlib", "oauthlib")


def _quiet_apprise() -> None:
    """Apprise's and its HTTP stack's log lines never reach the daemon's log (they name a
    webhook's host or path); what went wrong is read from Apprise's result, redacted."""
    with _quieted:
        for name in _QUIET:
            quiet = logging.getLogger(name)
            if quiet.propagate:
                quiet.addHandler(logging.NullHandler())  # (not logging.lastResort either)
                quiet.propagate = False


def _warm_up() -> None:
    import apprise  # noqa: F401

    _quiet_apprise()


def deliver(url: str, alert: Alert) -> str | None:
    """Send one alert to one target (blocking: run in a thread). None when it was taken;
    else why not, redacted."""
    import apprise

    _quiet_apprise()
    # Sequential: the send runs in this thread (ours is the pool).
    sender = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
    sep = "&" if "?" in url else "?"
    timed = f"{url}{sep}cto={CONNECT_TIMEOUT_S:g}&rto={READ_TIMEOUT_S:g}"
    if not sender.add(with_key(timed, alert)):
        return "Apprise cannot read this URL"
    result = sender.notify(
        body=alert.body, title=alert.title, notify_type=apprise.NotifyType(alert.severity.value)
    )
    if result:
        return None
    said = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
    why = said[-1] if said else "the service did not take it"
    return redact(why, [url])[:300]


# --- the sender ------------------------------------------------------------------------


class _Target:
    def __init__(self, ident: str, url: str) -> None:
        self.id = ident
        self.url = url
        self.failures = 0
        self.down_until: float | None = None  # None: up
        self.probing = False


class AlertSender:
    def __init__(
        self,
        stack: str,
        urls: list[str],
        path: Path,
        *,
        reset_after_s: float = 600.0,
        clock: Callable[[], float] = time.time,
        time_scale: float = 1.0,
        send: Deliver = deliver,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        """`time_scale`: simulated seconds per real second (the soak runs at 100)."""
        self.stack = stack
        self.box = Outbox(path)
        self.targets = {t.id: t for t in (_Target(outbox.target_id(u), u) for u in urls)}
        self.reset_after_s = reset_after_s
        self.clock = clock
        self.time_scale = time_scale
        self.send = send
        self.log = log
        self.pending: dict[str, Entry] = {}
        self.known: set[str] = set()  # file names read
        self.inflight: set[tuple[str, str]] = set()
        self.episodes: dict[str, Episode] = self._load_episodes()
        self.delivered = 0
        self._wake = anyio.Event()
        self._scanned_at = float("-inf")
        self._tidied_at = float("-inf")

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    # --- emitting (any task, any process) ----------------------------------------------

    def emit(self, alert: Alert) -> None:
        """Durably queue `alert` (before returning) and wake the sender. Never raises: a
        notification that cannot be written is logged, and supervision goes on."""
        if not self.enabled:
            return
        now = self.clock()
        try:
            added = self.box.add(alert, tuple(self.targets), now)
        except OSError as err:
            self.log.error(
                "cannot write a notification to the outbox; it is not sent",
                extra={"kind": alert.kind.value, "key": alert.key, "error": str(err)},
            )
            return
        if added:
            self.log.info("notification queued", extra={"kind": alert.kind.value, "key": alert.key})
            self._wake.set()

    def failure(
        self,
        role: str,
        *,
        reason: str,
        exit_code: int | None,
        crash_loop: bool,
        report: str | None = None,
    ) -> None:
        episode, found = alerts.on_failure(
            self.episodes.get(role),
            self.stack,
            role,
            self.clock(),
            reason=reason,
            exit_code=exit_code,
            crash_loop=crash_loop,
            reset_after_s=self.reset_after_s,
            report=report,
        )
        self._episode(role, episode, found)

    def healthy(self, role: str) -> None:
        self._episode(
            role, *alerts.on_healthy(self.episodes.get(role), self.stack, role, self.clock())
        )

    def left_crash_loop(self, role: str, *, by: str) -> None:
        episode, found = alerts.on_left_crash_loop(
            self.episodes.get(role), self.stack, role, self.clock(), by=by
        )
        self._episode(role, episode, found)

    def _episode(self, role: str, episode: Episode | None, found: list[Alert]) -> None:
        if not self.enabled or episode == self.episodes.get(role):
            return
        if episode is None:
            self.episodes.pop(role, None)
        else:
            self.episodes[role] = episode
        try:
            outbox.private(self.box.path)
            data = {r: e.to_json() for r, e in self.episodes.items()}
            write_json_atomic(self.box.path / EPISODES, data)
        except OSError as err:
            self.log.warning("cannot keep the crash episodes", extra={"error": str(err)})
        for alert in found:
            self.emit(alert)

    def _load_episodes(self) -> dict[str, Episode]:
        data = read_json(self.box.path / EPISODES) or {}
        found = {role: Episode.from_json(value) for role, value in data.items()}
        return {role: e for role, e in found.items() if e is not None}

    # --- sending (the daemon's task) -------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if not self.enabled:
            task_status.started()
            return
        self._tidy()
        limiter = anyio.CapacityLimiter(SEND_THREADS)
        async with anyio.create_task_group() as sends:
            task_status.started()
            # Apprise's import (~1 s of plugin loading) once, off the loop, before the
            # first alert waits for it.
            await anyio.to_thread.run_sync(_warm_up, limiter=limiter, abandon_on_cancel=True)
            while True:
                now = self.clock()
                if now - self._scanned_at >= SCAN_S or self._wake.is_set():
                    self._scan(now)
                self._drop_expired(now)
                if now - self._tidied_at >= TIDY_S:
                    self._tidy()
                for entry, target in self._due(now, SEND_THREADS - len(self.inflight)):
                    self.inflight.add((entry.key, target.id))
                    sends.start_soon(self._send, entry.key, target, limiter)
                wait = self._next_wait(self.clock())
                self._wake = anyio.Event()
                with anyio.move_on_after(wait / self.time_scale):
                    await self._wake.wait()

    def _tidy(self) -> None:
        """The directory private, a kill's temp files gone, old tombstones pruned (at
        start, then hourly). A state dir that cannot be written is logged, not fatal:
        supervision goes on without notifications."""
        self._tidied_at = self.clock()
        try:
            outbox.private(self.box.path)
            self.box.remove_stale_temp_files()
            self.box.prune(self._tidied_at)
        except OSError as err:
            self.log.error("cannot tidy the notification outbox", extra={"error": str(err)})
        self.known &= self.box.names()

    def _scan(self, now: float) -> None:
        """Read files not seen yet: this daemon's, and other processes' (the CLI's)."""
        self._scanned_at = now
        for name in sorted(self.box.names() - self.known):
            entry = self.box.read(name)
            if entry is None:
                continue  # a torn or foreign file: read again next time
            self.known.add(name)
            if entry.delivered_at is not None:
                continue
            owed = tuple(t for t in entry.owed if t in self.targets)
            if owed != entry.owed:
                # Targets removed from the settings since: nobody to owe them to.
                entry = replace(entry, owed=owed, delivered_at=None if owed else now)
                self._save(entry)
                if not owed:
                    continue
            # Read by this process for the first time: tried at once (a new daemon, or
            # an alert another process added).
            entry = replace(entry, next_at=min(entry.next_at, now))
            self.pending[entry.key] = entry

    def _drop_expired(self, now: float) -> None:
        for entry in list(self.pending.values()):
            if outbox.expired(entry, now) and not any(k == entry.key for k, _ in self.inflight):
                self.log.warning(
                    "notification dropped: not delivered within 24 h",
                    extra={
                        "kind": entry.alert.kind.value,
                        "key": entry.key,
                        "attempts": entry.attempts,
                        "last_error": entry.last_error,
                    },
                )
                del self.pending[entry.key]
                try:
                    self.box.remove(entry.key)
                except OSError as err:
                    self.log.error("cannot update the outbox", extra={"error": str(err)})

    def _due(self, now: float, room: int) -> list[tuple[Entry, _Target]]:
        """What to send now, oldest first: to a target that is up, every due alert; to a
        target that is down, one probe once its wait is over."""
        chosen: list[tuple[Entry, _Target]] = []
        if room <= 0:
            return chosen
        for entry in sorted(self.pending.values(), key=lambda e: (e.created_at, e.key)):
            for ident in entry.owed:
                target = self.targets[ident]
                if (entry.key, ident) in self.inflight or entry.next_at > now:
                    continue
                if target.down_until is not None:
                    if target.probing or now < target.down_until:
                        continue
                    target.probing = True
                chosen.append((entry, target))
                if len(chosen) >= room:
                    return chosen
        return chosen

    def _next_wait(self, now: float) -> float:
        """Until the next due try, a scan, or a wake-up, whichever is first."""
        moments = [self._scanned_at + SCAN_S]
        for entry in self.pending.values():
            for ident in entry.owed:
                target = self.targets[ident]
                if (entry.key, ident) in self.inflight:
                    continue
                due = entry.next_at
                if target.down_until is not None:
                    due = max(due, target.down_until)
                moments.append(due)
        return max(0.0, min(moments) - now)

    async def _send(self, key: str, target: _Target, limiter: anyio.CapacityLimiter) -> None:
        entry = self.pending.get(key)
        try:
            if entry is None:
                return
            try:
                error = await anyio.to_thread.run_sync(
                    self.send, target.url, entry.alert, limiter=limiter, abandon_on_cancel=True
                )
            except Exception as err:  # a bug in a plugin must not end the sender
                error = redact(repr(err), [target.url])[:300]
            self._settle(key, target, error)
        finally:
            self.inflight.discard((key, target.id))
            target.probing = False
            self._wake.set()

    def _settle(self, key: str, target: _Target, error: str | None) -> None:
        entry = self.pending.get(key)
        if entry is None:
            return
        now = self.clock()
        if error is None:
            if target.down_until is not None:
                self.log.info("notifications get through again", extra={"target": target.id})
                for other in self.pending.values():
                    if target.id in other.owed and other.next_at > now:
                        self.pending[other.key] = replace(other, next_at=now)
            target.failures, target.down_until = 0, None
            entry = outbox.taken(self.pending.get(key, entry), target.id, now)
            self.delivered += 1
        else:
            target.failures += 1
            if target.down_until is None:
                self.log.warning(
                    "notifications cannot be delivered; retrying with backoff for 24 h",
                    extra={"target": target.id, "error": error},
                )
            wait = outbox.retry_delay(target.failures, cap=PROBE_CAP_S)
            target.down_until = now + wait
            entry = outbox.failed(entry, now, error)
        self._save(entry)
        if entry.delivered_at is not None:
            del self.pending[key]
        else:
            self.pending[key] = entry

    def _save(self, entry: Entry) -> None:
        try:
            self.box.save(entry)
        except OSError as err:
            self.log.error("cannot update the outbox", extra={"key": entry.key, "error": str(err)})

    def backlog(self) -> dict[str, Any]:
        return outbox.backlog(list(self.pending.values()), self.clock())


def alerts_for(
    settings: Settings, log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger
) -> AlertSender | NoAlerts:
    """The daemon's sender, or (in the CLI) an emitter whose alerts the daemon sends;
    NoAlerts when no URL is configured."""
    urls = settings.notify.targets()
    if not urls:
        return NoAlerts()
    path = outbox.outbox_path((settings.state_dir or default_state_dir()), settings.stack)
    return AlertSender(
        settings.stack, urls, path, reset_after_s=settings.restart.reset_after_s, log=log
    )


def outbox_view(settings: Settings, now: float) -> dict[str, Any] | None:
    """`status`'s view of the outbox, read from its files (no daemon needed); None when
    notifications are off and nothing is left in it."""
    path = outbox.outbox_path((settings.state_dir or default_state_dir()), settings.stack)
    entries = Outbox(path).entries()
    if not settings.notify.enabled and not entries:
        return None
    return outbox.backlog(entries, now)
