"""Where the daemon's parts emit notifications, beside their own tests' rigs: a drain that
waits for players and its cancellation (supervisor/drains.py), a scheduled backup that
fails and one that is stale (supervisor/backupschedule.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from supervisor.alerts import Alert
from supervisor.alertsender import NoAlerts
from supervisor.backupschedule import run_schedule
from tests.fakeclock import FakeClock
from tests.unit.test_backup_job import JobEngine, _ok_backup, _settings
from tests.unit.test_drains import rig


class Told(NoAlerts):
    """An `Alerts` that keeps what it was given (the failure bookkeeping stays off)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def emit(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def kinds(self) -> list[str]:
        return [a.kind.value for a in self.alerts]


@pytest.mark.anyio
async def test_a_drain_that_waits_is_told_once_and_its_cancel_too(tmp_path: Path) -> None:
    told = Told()
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        r.sup.alerts = told
        commands = r.commands()
        reply = await commands.answer({"command": "restart", "service": "server"})
        assert reply.get("pending") is True
        started = [a for a in told.alerts if a.kind.value == "drain_started"]
        assert started and len({a.key for a in started}) == 1  # one drain, one key
        assert (await commands.answer({"command": "cancel"}))["ok"] is True
        await r.until(lambda: "drain_cancelled" in told.kinds())
    (cancelled,) = [a for a in told.alerts if a.kind.value == "drain_cancelled"]
    assert cancelled.facts["action"] == "restart"


@pytest.mark.anyio
async def test_an_empty_server_is_restarted_without_a_drain_message(tmp_path: Path) -> None:
    told = Told()
    async with rig(tmp_path, leaves=[]) as r:
        r.sup.alerts = told
        await r.commands().answer({"command": "restart", "service": "server"})
        await r.until(lambda: len(r.steps()) == 2)
    assert told.alerts == []


def test_a_failed_and_a_stale_scheduled_backup_are_told(tmp_path: Path) -> None:
    clock = FakeClock()
    told = Told()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    failing = (1, [{"step": 0, "op": "init", "code": 1, "stderr": "Fatal: repository locked"}])
    listing = (0, [{"step": 0, "op": "restic", "code": 0, "json": []}])
    # One success, then failures: 1h later the first fails, the retries come RETRY_S
    # (10 min) apart; past two intervals without a success the backup is stale (the same
    # key however many attempts see it).
    engine = JobEngine([_ok_backup(), listing, *[failing] * 11])
    settings = _settings(tmp_path, every="1h")
    log = logging.getLogger("test.schedule")
    anyio.run(lambda: run_schedule(engine, settings, log, clock, sleep, rounds=12, alerts=told))
    kinds = told.kinds()
    assert kinds.count("backup_failed") == 11
    stale = [a for a in told.alerts if a.kind.value == "backup_stale"]
    assert len(stale) >= 2 and len({a.key for a in stale}) == 1
    assert "repository locked" in told.alerts[0].body
