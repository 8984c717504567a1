"""One service's worker: the only code that changes that service's containers while the
daemon runs.

Engine events, stack passes and control commands only put work in its inbox; the worker
takes one item at a time, then reconciles level-triggered: the state machine's pending
step (`restarts.Pending`) is carried out once due, and the worker sleeps until the next
one is (`requeue_after`). Because one worker does everything for its service in order,
nothing else needs to know whether a restart is in flight.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from supervisor import hyos, restarts, stopmarks, totals
from supervisor.accounting import ExitAccounting
from supervisor.dockertypes import ContainerExit, EngineError, EngineEvent
from supervisor.loginwatch import LoginWatch
from supervisor.logs import BoundLogger
from supervisor.restarts import Pending, Step
from supervisor.store import Service
from supervisor.supervision import Supervision

Job = Callable[[], Awaitable[Any]]


@dataclass(eq=False)
class _Call:
    """A job whose caller waits for its outcome (a stack pass adopting its plan)."""

    job: Job
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


Item = EngineEvent | _Call | Job | None  # None: only look (a timer, a wake-up)


class ServiceWorker:
    def __init__(self, sup: Supervision, service: Service) -> None:
        self.sup = sup
        self.service = service
        self.role = service.role
        self.log: BoundLogger = sup.log.bind(service=service.role)
        self._send, self._inbox = anyio.create_memory_object_stream[Item](math.inf)
        # Bumped whenever a step of ours creates, removes or starts containers: a stack
        # pass planned before that is stale for this service.
        self.generation = 0
        self._helpers: TaskGroup | None = None
        self.login = LoginWatch(sup, service)
        self.accounting = ExitAccounting(sup, service)

    # --- the inbox ------------------------------------------------------------------------

    def observe(self, event: EngineEvent) -> None:
        self._send.send_nowait(event)

    def submit(self, job: Job) -> None:
        """Run `job` in this worker, in turn, without waiting for it."""
        self._send.send_nowait(job)

    def wake(self) -> None:
        self._send.send_nowait(None)

    async def call(self, job: Job) -> Any:
        """Run `job` in this worker, in turn, and return (or raise) its outcome."""
        call = _Call(job)
        self._send.send_nowait(call)
        await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    # --- the loop -------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as helpers:
            self._helpers = helpers
            task_status.started()
            requeue_after: float | None = None
            while True:
                item: Item = None
                with anyio.move_on_after(math.inf if requeue_after is None else requeue_after):
                    item = await self._inbox.receive()
                await self._take(item)
                requeue_after = await self._reconcile_contained()

    async def _take(self, item: Item) -> None:
        if isinstance(item, _Call):
            try:
                item.result = await item.job()
            except Exception as err:  # the caller decides what it means
                item.error = err
            finally:
                item.done.set()
        elif item is not None:
            what = "handling an event" if isinstance(item, EngineEvent) else _name(item)
            try:
                await (self._on_event(item) if isinstance(item, EngineEvent) else item())
            except EngineError as err:
                # One failed call must not cost the worker: look again, later.
                self.log.warning(f"{what} failed", extra={"error": str(err)})
                self.sup.request_pass()
            except Exception as err:
                fields = {"action": item.action} if isinstance(item, EngineEvent) else {}
                self.sup.unexpected(what, err, service=self.role, **fields)
                self.sup.request_pass()

    async def _reconcile_contained(self) -> float | None:
        try:
            return await self.reconcile()
        except Exception as err:  # an EngineError inside a step is handled by _acting
            self.sup.unexpected("a restart", err, service=self.role)
            self.sup.request_pass()
            return None

    async def reconcile(self) -> float | None:
        """Carry out the pending step once due; returns the seconds until it is."""
        pending = self.service.restart.pending
        if pending is None or self.sup.stopping:
            return None
        wait = pending.due_at - self.sup.clock()
        if wait > 0:
            return wait
        await self._carry_out(pending)
        return None

    # --- steps ----------------------------------------------------------------------------

    async def _carry_out(self, pending: Pending) -> None:
        service = self.service
        service.restart = restarts.issue(service.restart)
        container_id = service.container_id
        if container_id is None and pending.step is not Step.RECREATE:
            # Removed meanwhile: a stack pass creates it again.
            self.sup.save()
            self.sup.request_pass()
            return
        async with self._acting(pending.step.value):
            service.totals = totals.after_issue(service.totals, pending)
            if pending.step is Step.RESTART:
                assert container_id is not None
                service.stop_requested = stopmarks.mark(
                    service.stop_requested, container_id, self.sup.clock()
                )
                await self.sup.ops.stop(self.role, container_id)
            elif pending.step is Step.RECREATE:
                service.container_id = None  # the old one is going away
                container_id = await self.sup.ops.recreate(self.role, container_id)
                service.container_id = container_id
            elif pending.step is Step.INSTALL_UPDATE:
                await self._ask_hyos_to_install_the_update()
            assert container_id is not None
            started = service.container_id = await self.sup.ops.start(self.role, container_id)
            # What its start event will say, said now: the events of this run wait their
            # turn behind the step, and a health from before it must not linger meanwhile.
            service.health = "starting" if service.health is not None else None
            self._log_issued(pending, started)
            if self.role == "server" and self.sup.settings.restart.restart_manager_with_server:
                self.sup.manager_after_server = True

    def _log_issued(self, pending: Pending, started: str) -> None:
        fields: dict[str, Any] = {"container_id": started[:12]}
        if pending.step is Step.RESTART:
            self.log.info("restarted", extra={**fields, "reason": pending.reason})
        elif pending.step in (Step.START, Step.INSTALL_UPDATE):
            self.log.info("restart issued", extra={**fields, "backoff_s": pending.backoff_s})

    @asynccontextmanager
    async def _acting(self, what: str) -> AsyncIterator[None]:
        """One step of ours: the service is busy meanwhile, and a refused engine call ends
        it with one error line, never the worker."""
        self.service.busy = True
        self.generation += 1
        try:
            yield
        except EngineError as err:
            self.log.error(f"{what} failed", extra={"error": str(err)})
        finally:
            self.service.busy = False
            self.sup.save()

    async def _ask_hyos_to_install_the_update(self) -> None:
        """The dashboard's update stopped Java; ask HyOS's entrypoint to install the update
        on this start, as its own schedule-update.sh does."""
        try:
            await self.sup.engine.write_file(
                self.service.container_id or "",
                hyos.UPDATE_ON_RESTART_FILE,
                hyos.update_on_restart(datetime.now(UTC)),
                self.sup.settings.server.user.uid,
                self.sup.settings.server.user.gid,
            )
        except EngineError as err:
            self.log.error(
                "cannot ask HyOS to install the update; starting the server as it is",
                extra={"error": str(err)},
            )

    def request(self, step: Step, reason: str, cause: str = "requested") -> None:
        """A step asked for from outside (operator, rotation, the manager following);
        `cause` is the word the totals count it by."""
        self.service.restart = restarts.request(
            self.service.restart, step, self.sup.clock(), reason, cause
        )
        self.sup.save()
        self.wake()

    # --- events ---------------------------------------------------------------------------

    async def _on_event(self, event: EngineEvent) -> None:
        service = self.service
        container_id = event.container_id
        if service.container_id not in (None, container_id):
            return  # an old container of ours on its way out
        service.container_id = container_id
        log = self.log.bind(container_id=container_id[:12])
        now = self.sup.clock()
        action = event.action
        if action == "start":
            # A stop marked before this start was not for this run (a restart of a stopped
            # container only starts it): its mark must not swallow this run's crash.
            service.stop_requested = stopmarks.on_start(
                service.stop_requested, container_id, stopmarks.moment(event.time)
            )
            service.restart = restarts.on_started(service.restart, now)
            service.health = "starting" if service.health is not None else None
            log.info("started")
            self.watch_login(container_id)
        elif action == "health_status: healthy":
            service.health = "healthy"
            service.restart = restarts.on_healthy(service.restart, now)
            log.info("healthy")
            if self.role == "server" and self.sup.manager_after_server:
                self.sup.follow_server()
        elif action == "health_status: unhealthy":
            service.health = "unhealthy"
            await self.accounting.on_unhealthy(log)
        elif action == "die":
            await self._on_die(event, log)
        elif action == "oom":
            service.oom_seen = True
            log.warning("out of memory", extra={"oom_killed": True})
        elif action == "destroy":
            service.container_id = None
            service.health = None
            if not self.sup.stopping:
                log.warning("container removed behind our back; recreating")
                self.sup.request_pass()
        self.sup.save()

    async def _on_die(self, event: EngineEvent, log: BoundLogger) -> None:
        """Decide from the event itself: an inspect right after `die` waits for the
        engine's exit cleanup (~100 ms here), which would delay every restart. The event
        carries the exit code, and `oom` comes before `die`; the event's time stands in for
        FinishedAt until the engine's own stamp is read."""
        oom, self.service.oom_seen = self.service.oom_seen, False
        exited = ContainerExit.of_event(event, oom)
        if exited is None:
            info = await self.sup.engine.inspect(event.container_id)
            if info is not None:
                await self.accounting.on_exit(ContainerExit.of_info(info), log)
            return
        await self.accounting.on_exit(exited, log)
        if self._helpers is not None:
            self._helpers.start_soon(self._stamp_finished_at, event)

    async def _stamp_finished_at(self, event: EngineEvent) -> None:
        """The engine's FinishedAt from now on: a stack pass compares against it."""
        try:
            info = await self.sup.engine.inspect(event.container_id)
        except EngineError:
            return
        if info is not None and self.service.last_finished_at == event.time:
            self.service.last_finished_at = info.state.finished_at

    def watch_login(self, container_id: str) -> None:
        """Follow the server's login while it runs (one follower per run)."""
        if self.role == "server" and self._helpers is not None:
            self.login.watch(self._helpers, container_id)


def _name(job: Job) -> str:
    return getattr(job, "__name__", "a job").strip("_").replace("_", " ")
