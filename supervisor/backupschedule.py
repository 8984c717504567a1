"""`[backup] every` under `hyos-supervisor run`: one task in the daemon's task group that
sleeps until the next backup is due, takes it (retention applied), and logs the result.

When it is due is decided by `BackupEvery.next_after` (pure): an interval counts from the
last successful backup (kept in the records, so a restarted daemon keeps the rhythm); a
cron line is its next window. A failed attempt is retried `RETRY_S` later, not at once.
A backup older than twice its interval is a warning (and `status` says OVERDUE); it and a
failed attempt are notified too (supervisor/alerts.py: once per stale backup).

Under the daemon, backups are taken in `save` mode: a `stop` backup stops the server
behind its worker's back (the worker would take the stop for an exit and restart it),
so until the stop goes through the worker, `mode = "stop"` is logged and taken as `save`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import anyio

from supervisor.alerts import backup_failed, backup_stale
from supervisor.alertsender import Alerts, NoAlerts
from supervisor.backup import BackupError, Backups
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
) -> None:
    """Until cancelled (or `rounds` attempts, for tests)."""
    every = settings.backup.every
    if every is None:
        return
    tell = alerts or NoAlerts()
    if settings.backup.mode == "stop":
        log.warning("backup.mode = stop is not taken by `run` yet; scheduled backups save instead")
        settings = settings.model_copy(
            update={"backup": settings.backup.model_copy(update={"mode": "save"})}
        )
    zone = settings.schedule.zone
    backups = Backups(engine, settings, clock=clock)
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
