"""`[backup] every` under `hyos-supervisor run`: one task in the daemon's task group that
sleeps until the next backup is due, takes it (retention applied), and logs the result.

When it is due is decided by `BackupEvery.next_after` (pure): an interval counts from the
last successful backup (kept in the records, so a restarted daemon keeps the rhythm); a
cron line is its next window. A failed attempt is retried `RETRY_S` later, not at once.
A backup older than twice its interval is a warning (and `status` says OVERDUE); it and a
failed attempt are notified too (supervisor/alerts.py: once per stale backup).

A `stop` backup drains, stops, snapshots and starts the server; the daemon passes
`mark_stop`, which has the server's worker mark that stop as asked for first (as the
dashboard's Stop), so the worker leaves the server stopped until the backup starts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import anyio

from supervisor.alerts import backup_failed, backup_stale
from supervisor.alertsender import Alerts, NoAlerts
from supervisor.backup import BackupError, Backups, StopMarker, no_daemon
from supervisor.backupkey import BackupKeyError
from supervisor.backupsettings import overdue
from supervisor.dockertypes import DockerUnreachable, EngineError
from supervisor.ports import EnginePort
from supervisor.restore import Restore
from supervisor.settings import Settings

__all__ = ["RETRY_S", "run_schedule"]

RETRY_S = 600.0


async def run_schedule(
    engine: EnginePort,
    settings: Settings,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    rounds: int | None = None,
    *,
    alerts: Alerts | None = None,
    mark_stop: StopMarker = no_daemon,
) -> None:
    """Until cancelled (or `rounds` attempts, for tests)."""
    every = settings.backup.every
    if every is None:
        return
    tell = alerts or NoAlerts()
    zone = settings.schedule.zone
    backups = Backups(engine, settings, clock=clock, mark_stop=mark_stop)
    failed_at: float | None = None
    attempts = 0
    while rounds is None or attempts < rounds:
        last = (backups.records().get("last_ok") or {}).get("time")
        due = every.next_after(last, clock(), zone)
        if failed_at is not None:
            due = max(due, failed_at + RETRY_S)
        await sleep(max(0.0, due - clock()))
        if overdue(last, every, clock(), zone):
            log.warning("the last successful backup is older than twice its interval")
            if last is not None:  # (overdue says so only with one)
                tell.emit(
                    backup_stale(settings.stack, clock(), last_ok=float(last), every=every.text)
                )
        attempts += 1
        try:
            await Restore(backups).recover()
            made = await backups.create()
        except (BackupError, BackupKeyError, EngineError, DockerUnreachable, OSError) as err:
            failed_at = clock()
            log.error("scheduled backup failed", extra={"error": str(err)})
            tell.emit(backup_failed(settings.stack, failed_at, error=str(err), scheduled=True))
            continue
        failed_at = None
        log.info(
            "scheduled backup done",
            extra={"snapshot": made.id, "files": made.files, "verified": made.verified},
        )
