"""`hyos-supervisor run`: the wiring of a level-triggered controller, its signals and its
shutdown.

One worker per service (`supervisor.worker`) does everything to that service's
containers; engine events (`supervisor.eventfeed`), stack passes (`supervisor.passes`),
the control socket (`supervisor.commands`) and the dashboard's guard
(`supervisor.dashboard`) only put work in a worker's inbox. One anyio task group holds
them all. The first SIGTERM/SIGINT cancels that group and then stops the stack in a
shielded scope, so a second SIGTERM cannot cut the server's world save short; a second
SIGINT forces it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from entrypoint.contract import LABEL_ROLE
from supervisor import control, restarts, stopmarks
from supervisor.alertsender import alerts_for
from supervisor.commands import Commands
from supervisor.dashboard import Dashboard
from supervisor.dockertypes import EngineEvent
from supervisor.drains import Disruption, DrainRequest, Drains
from supervisor.engine import Engine
from supervisor.eventfeed import EventFeed
from supervisor.logs import BoundLogger, bind, quiet_cancelled_wakeups
from supervisor.notify import Notifier, watchdog_loop
from supervisor.passes import StackPasses
from supervisor.ports import EnginePort
from supervisor.restarts import ServiceStatus
from supervisor.roles import Role
from supervisor.settings import Settings
from supervisor.statefile import ensure_dir
from supervisor.store import Service, StateStore, state_dir_for, state_path, status_line
from supervisor.supervision import Supervision
from supervisor.updown import guard_dir_for
from supervisor.worker import ServiceWorker

if TYPE_CHECKING:
    from supervisor.metricsserver import MetricsSource

logger = logging.getLogger("supervisor.daemon")

# How long the daemon holds for a `down` (supervisor/drains.py) before it supervises again.
HOLD_FOR_DOWN_S = 600.0


class Daemon:
    def __init__(
        self,
        settings: Settings,
        engine: EnginePort,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        state_dir = ensure_dir(state_dir_for(settings))
        self.socket_path = state_dir / f"{settings.stack}.{control.SOCKET_NAME}"
        self.log: BoundLogger = bind(logger, stack=settings.stack)
        self.sup = Supervision(
            settings, engine, notifier, StateStore(state_path(settings)), self.log, clock
        )
        self.alerts = alerts_for(settings, self.log)
        self.sup.alerts = self.alerts
        self.workers: dict[str, ServiceWorker] = {}
        self.passes = StackPasses(self.sup, self.workers)
        self.drains = Drains(self.sup, self.workers, hold=self.hold_for_down)
        for role, service in self.sup.services.items():
            self.workers[role] = ServiceWorker(
                self.sup,
                service,
                request_pass=self.passes.request,
                follow_server=self.passes.follow_server,
                went_down=self.drains.server_exited if role == Role.SERVER else lambda: None,
            )
        self.events = EventFeed(self.sup, self.dispatch, self.passes.request)
        self.commands = Commands(self.sup, self.workers, self.drains, end=self.end_after_down)
        self._wire_updates()
        self.dashboard = Dashboard(self.sup, self.workers)
        self.metrics: MetricsSource | None = None
        self._metrics_page: Callable[[], bytes] | None = None
        if settings.metrics.address is not None:
            # Imported only when on: a daemon without metrics carries none of it.
            from supervisor.metricsserver import MetricsSource, registry_for, render

            self.metrics = MetricsSource(self.sup, self.drains)
            registry = registry_for(self.metrics)
            self._metrics_page = partial(render, registry)
        self.force = anyio.Event()
        self._work_scope = anyio.CancelScope()
        self._shutting_down = False
        self._work: TaskGroup | None = None

    def _wire_updates(self) -> None:
        """Issue 26: every way an update starts ends in one transaction (updates.py)."""
        from supervisor.update import Source
        from supervisor.updates import Updates

        updates = self.updates = Updates(self.sup, self.workers)
        drains = self.drains

        async def begin(version: str, source: Source, now: bool) -> dict[str, object]:
            request = DrainRequest(Disruption.UPDATE, version=version, source=source.value)
            return await drains.begin(request, now=now)

        async def act(version: str | None, source: str) -> dict[str, object]:
            return await updates.act(version, Source(source))

        updates.begin_drained = begin
        drains.on_update = act
        self.commands.update = updates.request
        server = self.workers.get(Role.SERVER)
        if server is not None:
            server.update_hook = updates.from_worker

    def metrics_page(self) -> bytes:
        """`/metrics`: what the daemon holds, read without awaiting anything."""
        assert self._metrics_page is not None, "metrics are off"
        return self._metrics_page()

    def dispatch(self, event: EngineEvent) -> None:
        """An event concerns one service: it goes to that service's worker."""
        worker = self.workers.get(event.labels.get(LABEL_ROLE, ""))
        if worker is not None and event.container_id:
            worker.observe(event)

    async def run(self) -> int:
        sup = self.sup
        sup.load()
        self.drains.load()
        self.updates.load()
        async with anyio.create_task_group() as root:
            root.start_soon(self._signals)
            with self._work_scope:
                async with anyio.create_task_group() as work:
                    self._work = work
                    # First: alerts the first pass decides go out while it runs.
                    await work.start(self.alerts.run)
                    for worker in self.workers.values():
                        await work.start(worker.run)
                    await work.start(self.events.follow)
                    guard_dir = guard_dir_for(sup.settings)
                    if guard_dir is not None:
                        # Before the first pass: the manager's socket mount binds the socket
                        # that exists when it starts (stack.GUARD_SOCKET_TARGET).
                        await work.start(self.dashboard.serve_guard, guard_dir)
                    server = self.workers.get(Role.SERVER)
                    if server is not None:
                        # A transaction a killed daemon left is resumed or rolled back
                        # before the first pass could start a half-installed server.
                        await server.call(self.updates.recover)
                    await self.passes.once(startup=True)
                    # After the first pass: a resumed drain sees the adopted server.
                    await work.start(self.drains.run)
                    # Bound before READY: a `status` right after READY finds it answering.
                    await work.start(control.serve, self.socket_path, self.commands.answer)
                    address = sup.settings.metrics.address
                    if address is not None:
                        from supervisor.metricsserver import serve_metrics

                        await work.start(serve_metrics, *address, self.metrics_page)
                    sup.notifier.ready()
                    self.log.info("supervising", extra={"status": status_line(sup.services)})
                    work.start_soon(self.passes.run)
                    work.start_soon(self.updates.run)
                    if sup.settings.backup.every is not None:
                        from supervisor.backupschedule import run_schedule

                        schedule = partial(
                            run_schedule, alerts=self.alerts, mark_stop=self.mark_server_stop
                        )
                        work.start_soon(schedule, sup.engine, sup.settings, self.log)
                    # Crash reports mask the secret values read from what runs now (not
                    # later, while a crashed container restarts: supervisor/crashes.py).
                    if sup.settings.crashes.enabled:
                        work.start_soon(self._read_crash_secrets)
                    if sup.settings.logs.enabled:
                        # Bounded game logs (issue 27): daily, through the helper container.
                        from supervisor import gamelogs

                        work.start_soon(gamelogs.run_schedule, sup.engine, sup.settings, self.log)
                    interval = sup.notifier.watchdog_interval()
                    if interval is not None:
                        work.start_soon(self._pulse, interval)
                        work.start_soon(watchdog_loop, sup.notifier, sup.heartbeat)
            await self._shutdown()
            root.cancel_scope.cancel()
        return 0

    async def _read_crash_secrets(self) -> None:
        for service in self.sup.services.values():
            if service.container_id is not None:
                await self.sup.crashes.refresh_secrets(service.container_id)

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async for signum in received:
                name = signal.Signals(signum).name
                if not self._shutting_down:
                    self._shut_down(signal=name)
                elif signum == signal.SIGINT:
                    self.log.warning("second SIGINT: forcing the stop")
                    self.force.set()
                else:
                    self.log.info("already stopping; the server keeps its grace period")

    def _shut_down(self, **why: str) -> None:
        self._shutting_down = True
        self.sup.stopping = True
        self.sup.notifier.stopping()
        self.log.info("shutting down", extra=why)
        self._work_scope.cancel()

    async def mark_server_stop(self, container_id: str) -> None:
        """A scheduled stop-mode backup is about to stop the server: its worker marks the
        exit as asked for, so it leaves the server stopped until the backup starts it."""
        from supervisor.backup import BackupError

        server = self.workers[Role.SERVER]
        if await server.call(partial(server.mark_stop, container_id)) is None:
            raise BackupError("the server was replaced meanwhile; nothing stopped")

    def hold_for_down(self) -> None:
        """`down`'s drain acted: nothing is restarted, recreated or reconciled from now
        on (the CLI stops and removes the stack), until `end_after_down`."""
        self.sup.stopping = True
        self.log.info("holding for down: supervising nothing while the stack is removed")
        if self._work is not None:
            self._work.start_soon(self._release_hold_later)

    async def _release_hold_later(self) -> None:
        """A `down` that never finished (its CLI killed) must not leave the stack
        unsupervised for good: after HOLD_FOR_DOWN_S supervision resumes."""
        await anyio.sleep(HOLD_FOR_DOWN_S)
        if self.sup.stopping and not self._shutting_down:
            self.log.warning("the down that held the daemon did not finish; supervising again")
            self.sup.stopping = False
            self.passes.request(startup=True)

    def end_after_down(self) -> bool:
        """The CLI's `down` is done: the daemon ends as on SIGTERM (exit 0). Only while
        held for it; False otherwise."""
        if not self.sup.stopping or self._shutting_down:
            return False
        self._shut_down(reason="down")
        return True

    async def _pulse(self, interval: float) -> None:
        """Proves the loop is alive to the watchdog even when no event arrives."""
        while True:
            self.sup.heartbeat.beat()
            await anyio.sleep(interval)

    async def _shutdown(self) -> None:
        sup = self.sup
        with anyio.CancelScope(shield=True):
            sup.stopping = True
            sup.notifier.stopping()
            for service in sup.services.values():
                service.restart = restarts.cancel_pending(service.restart)
            if not sup.settings.stop_on_exit:
                # A pending drain stays in the state file: the next daemon resumes it.
                self.log.info("leaving the stack running (stop_on_exit = false)")
                sup.save()
                return
            self.drains.forget_for_shutdown()
            # Reverse start order: the manager first, then the server with its grace period.
            for role in reversed(list(sup.services)):
                await self._stop_for_shutdown(sup.services[role])
            sup.save()
            self.log.info("stack stopped", extra={"status": status_line(sup.services)})

    async def _stop_for_shutdown(self, service: Service) -> None:
        sup = self.sup
        observed = await sup.engine.list_stack(sup.settings.stack)
        for container in (o for o in observed if o.role == service.role and o.running):
            service.stop_requested = stopmarks.mark(
                service.stop_requested, container.id, sup.clock()
            )
            log = self.log.bind(service=service.role, container_id=container.id[:12])
            log.info("stopping", extra={"stop_timeout": sup.settings.stop_timeout(service.role)})
            async with anyio.create_task_group() as race:
                race.start_soon(self._kill_when_forced, container.id, log)
                await sup.ops.stop(service.role, container.id)
                race.cancel_scope.cancel()
            # The stop call returns once the engine reports the container stopped.
            service.restart = replace(service.restart, status=ServiceStatus.STOPPED)
            service.health = None
            log.info("stopped")

    async def _kill_when_forced(self, container_id: str, log: BoundLogger) -> None:
        await self.force.wait()
        log.warning("killing now")
        await self.sup.engine.kill(container_id)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error inside (nested) task-group errors, cancellations aside."""
    cancelled = anyio.get_cancelled_exc_class()
    for err in group.exceptions:
        if isinstance(err, BaseExceptionGroup):
            found = first_error(err)
            if not isinstance(found, BaseExceptionGroup):
                return found
        elif not isinstance(err, cancelled):
            return err
    return group


async def run_daemon(settings: Settings) -> int:
    """Supervise until a signal; returns 0. What makes it fail (at startup: the first
    reconcile; at shutdown: the engine gone) is raised as itself, for the CLI's one line."""
    notifier = Notifier()
    quiet_cancelled_wakeups(asyncio.get_running_loop())
    try:
        async with Engine.connect(settings.docker_host, settings.docker_retries) as engine:
            return await Daemon(settings, engine, notifier).run()
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    finally:
        notifier.close()
