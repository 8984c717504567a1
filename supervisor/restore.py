"""`backup restore ID [--now]` (issue 25): a transaction that cannot leave the server down
or the world lost.

    pin      a snapshot of the current world, tagged pin:pre-restore (kept until the
             restore is confirmed; a failure here touches nothing)
    stage    restic restores the chosen snapshot beside the world, on the data volume,
             while the server still runs (a failure here touches nothing)
    drain    players warned and waited for (`--now`: not), then the world saved
    stop     the server stopped gracefully
    swap     the world's entries set aside, the staged ones moved in (renames only)
    start    the server started, then the health gate: healthy, and still healthy
             `HOLD_S` later
    commit   the set-aside world removed; the pin released
On any failure after the stop: the server stopped, the set-aside world put back (what the
restore had put in place is kept under /data/.hyos-restore/failed for a look), the server
started, and the error reported in one line. Nothing half-restored is ever started: the
server is started only on a complete swap or a complete rollback.

Each phase is written to `<stack>.restore.json` in the state dir before it is taken. An
interrupted restore (the supervisor SIGKILLed) is finished by the next `backup` verb that
runs: confirmed -> commit; anything else after the stop -> roll back and start; before
the stop -> clean the staging.

What is restored by default: everything the backup holds (`Server/`, `universe/`, mods,
configs, HyOS's `.state`, `.auth`), except the stack's own `/data/.hyos` (its generated
secrets and files the supervisor writes): the running stack's credentials stay valid, so
a backup of another stack restores onto this one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from supervisor.backup import BackupError, Backups
from supervisor.backupjob import (
    commit_request,
    find,
    rollback_request,
    stage_request,
    swap_request,
)
from supervisor.dockertypes import EngineError
from supervisor.drain import Kind
from supervisor.retention import pin_tag
from supervisor.statefile import ensure_dir, read_json, write_json_atomic
from supervisor.store import state_dir_for

__all__ = ["HOLD_S", "Restore", "RestoreError", "journal_path"]

log = logging.getLogger("supervisor.restore")

HOLD_S = 10.0  # the server must still be healthy this long after it first is
READY_TIMEOUT_S = 600.0
PIN = pin_tag("pre-restore")


class RestoreError(BackupError):
    """The restore did not happen; the line says what state the server and world are in."""


def journal_path(backups: Backups) -> Path:
    return state_dir_for(backups.settings) / f"{backups.settings.stack}.restore.json"


@dataclass
class Restored:
    snapshot: str
    pinned: str
    seconds: float
    downtime_s: float


class Restore:
    def __init__(
        self,
        backups: Backups,
        hold_s: float = HOLD_S,
        ready_timeout_s: float = READY_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backups = backups
        self.engine = backups.engine
        self.settings = backups.settings
        self.hold_s = hold_s
        self.ready_timeout_s = ready_timeout_s
        self.clock = clock

    # --- the journal ---------------------------------------------------------------

    def _journal(self) -> dict[str, Any] | None:
        return read_json(journal_path(self.backups))

    def _phase(self, phase: str, **facts: Any) -> None:
        path = journal_path(self.backups)
        ensure_dir(path.parent)
        data = {**(self._journal() or {}), **facts, "phase": phase, "at": time.time()}
        write_json_atomic(path, data)
        log.info("restore: %s", phase, extra={"stack": self.settings.stack, "phase": phase})

    def _done(self) -> None:
        journal_path(self.backups).unlink(missing_ok=True)

    # --- the transaction -----------------------------------------------------------

    async def run(self, ref: str, now: bool) -> Restored:
        began = self.clock()
        await self.recover()
        target = find(await self.backups.snapshots(), ref)
        if target is None:
            raise RestoreError(f"no backup {ref!r}; `backup list` shows the ids")
        server = await self.backups.server()
        if server is None:
            raise RestoreError("the stack has no server container; run `up` first")
        was_running = server.running
        self._phase("pin", snapshot=target.id, server=server.id, was_running=was_running)
        try:
            pinned = await self.backups.create(tag=PIN, prune=False)
        except BackupError as err:
            self._done()
            raise RestoreError(
                f"the pre-restore backup failed, nothing was changed: {err}"
            ) from None
        self._phase("stage", pinned=pinned.id)
        answer = await self.backups.run_job(stage_request(target.id), writable=True)
        if not answer.ok:
            await self._clean()
            raise RestoreError(f"staging failed, nothing was changed: {answer.failure()}")
        if was_running and not now:
            await self._drain(server.id)
        self._phase("stopping")
        stopped_at = self.clock()
        try:
            if was_running:
                await self.backups.stop_server(server.id)
            self._phase("swapping")
            swapped = await self.backups.run_job(swap_request(), writable=True)
            if not swapped.ok:
                raise RestoreError(f"the swap failed: {swapped.failure()}")
            self._phase("started")
            await self.engine.start(server.id)
            healthy_at = await self._health_gate(server.id)
        except (RestoreError, BackupError, EngineError, TimeoutError) as err:
            with anyio.CancelScope(shield=True):
                await self._roll_back(server.id, was_running)
                await self._clean()
            raise RestoreError(
                f"restore of {target.short_id} failed ({err}); the previous world is back"
                + (" and the server running" if was_running else "")
            ) from None
        downtime = healthy_at - stopped_at  # stopped until healthy again
        self._phase("confirmed")
        await self._commit(pinned.id)
        return Restored(target.id, pinned.id, self.clock() - began, downtime)

    async def _drain(self, server_id: str) -> None:
        kind = await self.backups.drain(server_id, "restore")
        if kind is not Kind.ACT:
            await self._clean()
            raise RestoreError(f"the drain ended with {kind.value}; nothing was changed")

    async def _health_gate(self, server_id: str) -> float:
        """Healthy, and still healthy (and never restarted) `hold_s` later; returns when
        it was first healthy."""
        first = await self.engine.wait_ready(server_id, self.ready_timeout_s)
        healthy_at = self.clock()
        await anyio.sleep(self.hold_s)
        info = await self.engine.inspect(server_id)
        if info is None or not info.state.running:
            raise RestoreError("the server stopped during the health gate")
        if info.state.started_at != first.state.started_at:
            raise RestoreError("the server restarted during the health gate")
        health = info.state.health
        if health is not None and health.status != "healthy":
            raise RestoreError(f"the server turned {health.status} during the health gate")
        return healthy_at

    async def _roll_back(self, server_id: str, was_running: bool) -> None:
        log.warning("restore: rolling back", extra={"stack": self.settings.stack})
        self._phase("rolling back")
        info = await self.engine.inspect(server_id)
        if info is not None and info.state.running:
            await self.backups.stop_server(server_id)
        answer = await self.backups.run_job(rollback_request(), writable=True)
        if not answer.ok:
            # The world stays where it is (aside, on the volume); the server stays stopped
            # rather than start on a half-moved world.
            self._phase("rollback failed")
            raise RestoreError(
                f"ROLLBACK FAILED ({answer.failure()}): the server is stopped; the previous "
                "world is under /data/.hyos-restore/aside and in the pin:pre-restore backup"
            )
        if was_running:
            await self.engine.start(server_id)
            await self.engine.wait_ready(server_id, self.ready_timeout_s)
        self._phase("rolled back")

    async def _clean(self) -> None:
        await self.backups.run_job(commit_request(), writable=True)
        self._done()

    async def _commit(self, pinned: str) -> None:
        await self.backups.run_job(commit_request(), writable=True)
        # The restore is confirmed: its pin is released (the snapshot ages out by the
        # retention rules like any other).
        answer = await self.backups.run_job(
            [{"op": "restic", "args": ["tag", "--remove", PIN, pinned]}]
        )
        if not answer.ok:
            log.warning("restore: could not release the pin", extra={"error": answer.failure()})
        self._done()

    async def recover(self) -> str | None:
        """Finish or roll back a restore a killed supervisor left; returns what was done."""
        journal = self._journal()
        if journal is None:
            return None
        phase = str(journal.get("phase"))
        server = str(journal.get("server") or "")
        was_running = bool(journal.get("was_running"))
        log.warning("restore: an interrupted restore found", extra={"phase": phase})
        if phase == "confirmed":
            await self._commit(str(journal.get("pinned") or ""))
            return "committed"
        if phase in ("pin", "stage", "rolled back"):
            await self._clean()
            return "cleaned"
        await self._roll_back(server, was_running)
        await self._clean()
        return "rolled back"
