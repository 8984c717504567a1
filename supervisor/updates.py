"""The daemon's updates (issue 26): every way an update starts ends in one transaction
(supervisor/updater.py), run in the server's worker, the one writer of the server's
record and container.

- `hyos-supervisor update` (the control socket) and each `[update] window` / `auto`
  check: checked first (a refusal is one line, nothing touched), then drained like
  `restart server` (supervisor/drains.py, `Disruption.UPDATE`); when the drain acts, the
  transaction is submitted to the server's worker.
- The dashboard's update button (exit 143, update.json `downloading`) and Hytale's exit 8:
  the worker's pending step hands over to the transaction (the server is already
  stopped; nothing to drain).
- At startup, before the first stack pass: a transaction a killed daemon left is resumed
  or rolled back (the pass would otherwise start a half-installed server).

While the transaction runs, the worker is busy with it: the events of the containers it
stops and starts wait in the inbox and are dropped once it ends (the transaction already
knows what happened; a stack pass planned meanwhile is stale). A rollback that failed
holds the server (`update_hold`): nothing starts it until the operator restored it and ran
`hyos-supervisor update --resolved`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import anyio

from supervisor import restarts, stopmarks
from supervisor.backup import BackupError, Backups
from supervisor.dockertypes import EngineError
from supervisor.restarts import ServiceStatus
from supervisor.roles import Role
from supervisor.statefile import read_json
from supervisor.supervision import Supervision
from supervisor.update import Source, Transaction
from supervisor.updater import RESULT_OF, Updater, UpdateRefused, journal_path, needs_attention
from supervisor.worker import ServiceWorker

__all__ = ["Updates"]

Reply = dict[str, Any]
# Asks for a drained update: (version, source, now) -> the drain's reply.
Begin = Callable[[str, Source, bool], Awaitable[Reply]]


class Updates:
    def __init__(
        self,
        sup: Supervision,
        workers: Mapping[str, ServiceWorker],
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.sup = sup
        self.workers = workers
        self.log = sup.log.bind(component="update")
        self._sleep = sleep
        self.begin_drained: Begin | None = None  # the drains' (daemon.py wires it)
        self.server = workers.get(Role.SERVER)
        self.updater = Updater(
            sup.engine,
            sup.settings,
            Backups(sup.engine, sup.settings),
            clock=sup.clock,
            tell=sup.alerts,
            facts=sup.tallies.update,
            mark_stop=self._mark_stop,
        )
        self.running: Transaction | None = None

    def load(self) -> None:
        """What the journal holds: the metrics' facts, and the hold of a failed rollback."""
        _, record = self.updater.load()
        facts = self.sup.tallies.update
        facts.latest_version = record.available
        facts.available = record.available is not None and record.available not in record.bad
        facts.game_version = (read_json(journal_path(self.sup.settings)) or {}).get("current")
        # Counted for the life of the journal, like the services' totals: a daemon restart
        # does not zero hyos_updates_total.
        for outcome, count in record.counts.items():
            result = RESULT_OF.get(outcome)
            if result is not None:
                facts.results[result] = facts.results.get(result, 0) + count
        self.sup.update_hold = needs_attention(self.sup.settings)
        if self.sup.update_hold:
            self.log.error(
                "the last update's rollback failed: the server stays stopped until it is "
                "restored (`hyos-supervisor status` says how) and `update --resolved` is run"
            )

    # --- in the server's worker ------------------------------------------------------------

    def _mark_stop(self, container_id: str) -> None:
        """The transaction stops the server: that exit is ours, not a crash."""
        if self.server is not None:
            service = self.server.service
            service.stop_requested = stopmarks.mark(
                service.stop_requested, container_id, self.sup.clock()
            )

    async def recover(self) -> None:
        """(In the server's worker, before the first stack pass.)"""
        tx, _ = self.updater.load()
        if tx is None or tx.terminal:
            return
        async with self._transaction():
            self.running = tx
            await self.updater.recover()

    async def transaction(self, source: Source, version: str | None) -> bool:
        """(In the server's worker.) The whole transaction; a refusal is logged. False
        when the worker's own step must go on (exit 8 with no update known: the
        container is recreated, a fresh image with `pull = always`, as before)."""
        try:
            info = await self.updater.server()
            tx = await self.updater.prepare(source, version, info)
        except (UpdateRefused, BackupError, EngineError) as err:
            self.log.info("no update", extra={"source": source.value, "reason": str(err)})
            if source is Source.EXIT_8:
                return False
            if source is Source.DASHBOARD:
                # The button stopped the server to update it: it runs again as it was
                # (a version marked bad is not installed behind the transaction's back).
                await self._start_if_stopped()
            return True
        async with self._transaction():
            self.running = tx
            await self.updater.run(tx)
        return True

    async def _start_if_stopped(self) -> None:
        info = await self.updater.server()
        if info is not None and not info.state.running and not self.sup.update_hold:
            await self.sup.engine.start(info.id)

    def _transaction(self) -> _Held:
        return _Held(self)

    async def settle(self) -> None:
        """The transaction ended: the server's record says what runs now; the events of
        what the transaction did are its own."""
        assert self.server is not None
        worker, service = self.server, self.server.service
        self.running = None
        self.sup.update_hold = needs_attention(self.sup.settings)
        service.quiet_before_ns = time.time_ns()
        try:
            info = await self.updater.server()
        except EngineError:
            info = None
        now = self.sup.clock()
        if info is not None and info.state.running:
            service.container_id = info.id
            service.restart = restarts.on_started(service.restart, now)
            service.health = info.state.health_status
            if service.health in (None, "healthy"):
                service.restart = restarts.on_healthy(service.restart, now)
            worker.watch_login(info.id)
            if self.sup.settings.restart.restart_manager_with_server:
                self.sup.manager_after_server = True
                worker.follow_server()
        else:
            service.restart = replace(service.restart, status=ServiceStatus.STOPPED, pending=None)
            service.health = None
        self.sup.save()

    # --- asked for -------------------------------------------------------------------------

    async def request(self, request: Mapping[str, Any]) -> Reply:
        """The control socket's `update` (`hyos-supervisor update`)."""
        if request.get("resolved"):
            return await self._resolved()
        if self.running is not None:
            return {"ok": False, "error": f"an update to {self.running.target} is under way"}
        version = request.get("version")
        try:
            tx = await self.updater.prepare(Source.CLI, str(version) if version else None)
        except (UpdateRefused, EngineError) as err:
            return {"ok": False, "error": str(err)}
        return await self._drained(tx.target, Source.CLI, bool(request.get("now")))

    async def _resolved(self) -> Reply:
        if not self.updater.resolve():
            return {"ok": False, "error": "no update needs attention"}
        self.sup.update_hold = False
        self.log.info("the update that needed attention is closed by the operator")
        if self.server is not None:
            self.server.request_pass()
        return {"ok": True, "message": "the update that needed attention is closed"}

    async def _drained(self, version: str, source: Source, now: bool) -> Reply:
        if self.begin_drained is None:
            return {"ok": False, "error": "updates are not wired in this daemon"}
        return await self.begin_drained(version, source, now)

    async def act(self, version: str | None, source: Source) -> Reply:
        """The drain acted: the transaction goes to the server's worker."""
        if self.server is None:
            return {"ok": False, "error": f"no {Role.SERVER} in this stack"}
        server = self.server

        async def job() -> None:
            await self.transaction(source, version)  # (a CLI, window or auto source)

        server.submit(job)
        return {"ok": True, "message": f"updating to {version}; `hyos-supervisor status` shows it"}

    async def from_worker(self, source: Source) -> bool:
        """The dashboard's button or exit 8 (already in the server's worker); False: the
        worker's own step goes on."""
        return await self.transaction(source, None)

    # --- the window and the automatic check ----------------------------------------------

    async def run(self) -> None:
        """Look at the versions every `check_every_s`; apply an available update at each
        `window`, or at once when `auto` and no window is set. Until cancelled."""
        settings = self.sup.settings.update
        zone = self.sup.settings.schedule.zone
        next_check = self.sup.clock() + 5.0
        window = settings.window.next_window(self.sup.clock(), zone) if settings.window else None
        while True:
            wake = min(next_check, window) if window is not None else next_check
            await self._sleep(max(0.0, wake - self.sup.clock()))
            now = self.sup.clock()
            if now >= next_check:
                next_check = now + settings.check_every_s
                await self.check()
                if settings.auto and settings.window is None:
                    await self._automatic(Source.AUTO)
            if window is not None and now >= window and settings.window is not None:
                window = settings.window.next_window(now, zone)
                await self._automatic(Source.WINDOW)

    async def check(self) -> None:
        service = self.server.service if self.server is not None else None
        if service is None or service.container_id is None or self.running is not None:
            return
        try:
            versions = await self.updater.versions(service.container_id)
            self.updater.note_versions(versions)
            await self.updater.release_pins()
        except (EngineError, BackupError, OSError) as err:
            self.log.warning("update check failed", extra={"error": str(err)})

    async def _automatic(self, source: Source) -> None:
        if self.running is not None or self.sup.update_hold:
            return
        try:
            tx = await self.updater.prepare(source, None)
        except (UpdateRefused, EngineError) as err:
            self.log.info("no update", extra={"source": source.value, "reason": str(err)})
            return
        reply = await self._drained(tx.target, source, False)
        self.log.info(
            "update asked for",
            extra={
                "source": source.value,
                "version": tx.target,
                "ok": bool(reply.get("ok")),
                "reply": reply.get("message") or reply.get("error"),
            },
        )


class _Held:
    """The server's worker is busy with a transaction (a stack pass planned meanwhile is
    stale); at its end, `settle`."""

    def __init__(self, updates: Updates) -> None:
        self.updates = updates

    async def __aenter__(self) -> None:
        server = self.updates.server
        if server is not None:
            server.service.busy = True
            server.generation += 1
            server.service.restart = replace(
                server.service.restart, status=ServiceStatus.UPDATING, pending=None
            )
            self.updates.sup.save()

    async def __aexit__(self, *exc: object) -> None:
        server = self.updates.server
        with anyio.CancelScope(shield=True):
            if server is not None:
                try:
                    await self.updates.settle()
                finally:
                    server.service.busy = False
                    server.generation += 1
