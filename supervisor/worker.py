"""One service's worker: the only code that changes that service's record
(`store.Service`) and its containers while the daemon runs.

Engine events, stack passes, control commands, the dashboard's guard and the worker's own
helper tasks (the login follower, the FinishedAt stamp) only put work in its inbox; the
worker takes one item at a time (its *turn*), then looks at its due step, level-triggered:
the state machine's pending step (`restarts.Pending`) is carried out once due, and the
worker sleeps until the next one is (`requeue_after`). (A *reconcile* is the stack pass's
word: passes.py.) Because one worker does everything for its
service in order, nothing else needs to know whether a restart is in flight.

The inbox (`supervisor.inbox`) holds at most INBOX_BOUND items; wake-ups coalesce. An
event or a submitted job that finds it full is not queued: the worker warns once and, on
its next turn, asks for a stack pass, which reads the world fresh (an exit it missed is
accounted from the container's inspect, as any exit no event told of). An awaited `call`
waits for room.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from supervisor import alerts, hyos, restarts, roles, stopmarks, totals
from supervisor.accounting import ExitAccounting
from supervisor.crashreport import CrashFacts
from supervisor.dockertypes import ContainerExit, EngineError, EngineEvent
from supervisor.inbox import Call, Inbox, Job
from supervisor.loginwatch import LoginWatch
from supervisor.logs import BoundLogger
from supervisor.restarts import Pending, Step
from supervisor.roles import Role
from supervisor.store import Service
from supervisor.supervision import Supervision
from supervisor.update import Source

Item = EngineEvent | Call | Job | None  # None: only look (a timer, a wake-up)

# Items waiting in one worker's inbox, at most. A worker takes an event in well under a
# millisecond and Docker sends a handful per run of a container, so only a worker stuck
# in a step for a long time (a stop's grace period, an engine that is away) comes near.
INBOX_BOUND = 1024
# After a start (and a login), the crash reports' secrets are read again this much later
# (crashes.py): after the start call and its event, not in the way of either.
SECRETS_SETTLE_S = 0.5


class ServiceWorker:
    def __init__(
        self,
        sup: Supervision,
        service: Service,
        *,
        request_pass: Callable[[], None],
        follow_server: Callable[[], None],
        went_down: Callable[[], None] = lambda: None,
    ) -> None:
        """`request_pass` asks for a stack pass (the world changed behind our back);
        `follow_server` has the manager follow the server we restarted, now healthy;
        `went_down` is told when the container exited or turned unhealthy (a pending
        drain acts at once: supervisor/drains.py)."""
        self.sup = sup
        self.service = service
        self.role = service.role
        self.log: BoundLogger = sup.log.bind(service=service.role)
        self.request_pass = request_pass
        self.follow_server = follow_server
        self.went_down = went_down
        self.inbox = Inbox[EngineEvent | Job](INBOX_BOUND, self._overflowing)
        # Bumped whenever a step of ours creates, removes or starts containers: a stack
        # pass planned before that is stale for this service.
        self.generation = 0
        # Events handed to this worker, (lifecycle, health), counted as they arrive, not as
        # they are taken: a stack pass planned before one must not overwrite what it says
        # (passes._Adoption).
        self.heard = (0, 0)
        self._helpers: TaskGroup | None = None
        self.login = LoginWatch(sup, service, self)
        self.accounting = ExitAccounting(sup, service)
        self.accounting.report = self._report_crash
        self._stepped = anyio.Event()  # set (and replaced) whenever a step was carried out
        # The update transaction (supervisor/updates.py), when the daemon has one: the
        # dashboard's update button and Hytale's exit 8 hand over to it.
        self.update_hook: Callable[[Source], Awaitable[bool]] | None = None

    # --- the inbox ------------------------------------------------------------------------

    def observe(self, event: EngineEvent) -> None:
        lifecycle, health = self.heard
        if event.action.startswith("health_status"):
            self.heard = (lifecycle, health + 1)
        else:
            self.heard = (lifecycle + 1, health)
        self.inbox.put(event)

    def submit(self, job: Job) -> None:
        """Run `job` in this worker, in turn, without waiting for it."""
        self.inbox.put(job)

    def wake(self) -> None:
        """Look at the due step soon; coalesced with any look that follows anyway."""
        self.inbox.wake()

    async def call(self, job: Job) -> Any:
        """Run `job` in this worker, in turn, and return (or raise) its outcome."""
        return await self.inbox.call(job)

    def _overflowing(self) -> None:
        self.log.warning(
            "the worker's inbox is full; looking at the whole stack once it catches up",
            extra={"bound": INBOX_BOUND},
        )

    # --- the loop -------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as helpers:
            self._helpers = helpers
            task_status.started()
            requeue_after: float | None = None
            while True:
                item = await self.inbox.next(requeue_after)
                if self.inbox.take_lost():
                    self.request_pass()
                with self.inbox.taking():
                    await self._take(item)
                requeue_after = await self._step_if_due_contained()

    async def _take(self, item: Item) -> None:
        if isinstance(item, Call):
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
                self.request_pass()
            except Exception as err:
                fields = {"action": item.action} if isinstance(item, EngineEvent) else {}
                self.sup.unexpected(what, err, service=self.role, **fields)
                self.request_pass()

    async def _step_if_due_contained(self) -> float | None:
        try:
            return await self.step_if_due()
        except Exception as err:  # an EngineError inside a step is handled by _acting
            self.sup.unexpected("a restart", err, service=self.role)
            self.request_pass()
            return None

    async def step_if_due(self) -> float | None:
        """Carry out the pending step once due; returns the seconds until it is."""
        pending = self.service.restart.pending
        if pending is None or self.sup.stopping or self._held_for_update():
            return None
        wait = pending.due_at - self.sup.clock()
        if wait > 0:
            return wait
        try:
            await self._carry_out(pending)
        finally:
            self._stepped.set()  # a crash report's helper waits for this (settled)
            self._stepped = anyio.Event()
        return None

    async def settled(self, limit: float, ahead: float) -> None:
        """Until the step a decision left pending has been carried out (the restart's
        start call returned), at most `limit` seconds, when it is under way or due within
        `ahead` seconds; at once otherwise (none pending, or due late enough for a crash
        report's helper container to run first). The helper waits for this, so it never
        competes with the restart for the engine; after `limit` the report's
        completeness wins."""
        pending = self.service.restart.pending
        due_soon = pending is not None and pending.due_at - self.sup.clock() < ahead
        if not (due_soon or self.service.busy):  # busy: the step is under way
            return
        with anyio.move_on_after(limit):
            await self._stepped.wait()

    def _held_for_update(self) -> bool:
        return self.role == Role.SERVER and self.sup.update_hold

    def _update_source(self, pending: Pending) -> Source | None:
        """The steps an update transaction takes over, by what asked for them."""
        if self.update_hook is None or self.role != Role.SERVER:
            return None
        if pending.step is Step.INSTALL_UPDATE:
            return Source.DASHBOARD
        if pending.step is Step.RECREATE and pending.cause == restarts.ExitKind.UPDATE.value:
            return Source.EXIT_8
        return None

    # --- steps ----------------------------------------------------------------------------

    async def _carry_out(self, pending: Pending) -> None:
        service = self.service
        service.restart = restarts.issue(service.restart)
        # Saved before the engine is asked: a daemon killed right after the start must
        # not leave the step pending for the next one to carry out again (CI: it started
        # the running server a second time instead of adopting it).
        self.sup.save()
        source = self._update_source(pending)
        if source is not None and self.update_hook is not None and await self.update_hook(source):
            service.totals = totals.after_issue(service.totals, pending)
            return
        container_id = service.container_id
        if container_id is None and pending.step is not Step.RECREATE:
            # Removed meanwhile: a stack pass creates it again.
            self.sup.save()
            self.request_pass()
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
            if self.role == Role.SERVER and self.sup.settings.restart.restart_manager_with_server:
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
            # Again at the end: a stack pass that planned while the step ran saw the world
            # mid-step (a container being replaced), and adopting it would undo the step.
            self.generation += 1
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
        """A step asked for (operator, rotation, the manager following); `cause` is the
        word the totals count it by. Only in this worker's turn: from anywhere else,
        `await worker.ask(step, reason)`."""
        self.service.restart = restarts.request(
            self.service.restart, step, self.sup.clock(), reason, cause
        )
        self.sup.save()
        self.wake()

    async def ask(
        self,
        step: Step,
        reason: str,
        then: Callable[[], None] | None = None,
        cause: str = "requested",
    ) -> None:
        """Ask for a step from outside this worker: recorded in its turn (`then` too, a
        stack-wide fact that must hold once the step is pending)."""

        async def asked() -> None:
            if then is not None:
                then()
            self.request(step, reason, cause)

        await self.call(asked)

    async def restart_for_operator(self) -> None:
        """The operator's `restart`: the state cleared (a crash loop or a login held
        ends), then the container restarted, or started if it is not running, or created
        by a stack pass if it is gone. (Runs in this worker's turn: commands.Commands.)"""
        service = self.service
        if service.restart.status is restarts.ServiceStatus.CRASH_LOOP:
            self.sup.alerts.left_crash_loop(self.role, by="the operator's restart")
        service.restart = restarts.reset(service.restart)
        if service.container_id is None:
            self.request_pass()
        else:
            info = await self.sup.engine.inspect(service.container_id)
            running = info is not None and info.state.running
            self.request(Step.RESTART if running else Step.START, "operator", cause="operator")
        self.sup.save()

    async def count_dashboard_stop(self) -> None:
        """A stop the dashboard asked for was carried out: its total grows."""
        self.service.totals = totals.after_dashboard_stop(self.service.totals)
        self.sup.save()

    async def mark_stop(self, container_id: str) -> float | None:
        """The dashboard is about to stop (or restart) `container_id` through the guard:
        mark that run's exit as asked for, now, and return the mark's moment; None (no
        mark) if the container is not this service's current one. Awaited by the guard
        (`worker.call`) before it forwards the request: the mark is in place before the
        exit can happen, and never beside one of our steps. (dashboard.Dashboard)"""
        service = self.service
        if container_id != service.container_id:
            return None
        at = self.sup.clock()
        service.stop_requested = stopmarks.mark(service.stop_requested, container_id, at)
        return at

    async def withdraw_stop(self, container_id: str, at: float) -> None:
        """The stop marked at `at` was answered without stopping anything."""
        service = self.service
        service.stop_requested = stopmarks.withdraw(service.stop_requested, container_id, at)

    # --- events ---------------------------------------------------------------------------

    async def _on_event(self, event: EngineEvent) -> None:
        service = self.service
        container_id = event.container_id
        if service.container_id not in (None, container_id):
            return  # an old container of ours on its way out
        if event.time_nano and event.time_nano < service.quiet_before_ns:
            return  # an update transaction's own (supervisor/updates.py)
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
            held = service.restart.status is restarts.ServiceStatus.CRASH_LOOP
            service.restart = restarts.on_started(service.restart, now)
            if held:
                self.sup.alerts.left_crash_loop(self.role, by="its container was started")
            service.health = "starting" if service.health is not None else None
            log.info("started")
            self.watch_login(container_id)
            self._refresh_secrets_later(container_id)
        elif action == "health_status: healthy":
            recovered = service.health == "unhealthy"
            service.health = "healthy"
            before = service.restart
            service.restart = restarts.on_healthy(before, now)
            first = before.healthy_since is None and not recovered
            if roles.is_game(self.role) and first and before.started_at is not None:
                # The first healthy of this run: how long the server took to be ready.
                self.sup.tallies.server_ready.observe(now - before.started_at)
            log.info("healthy")
            self.sup.alerts.healthy(self.role)
            if self.role == Role.SERVER and self.sup.manager_after_server:
                self.follow_server()
        elif action == "health_status: unhealthy":
            service.health = "unhealthy"
            await self.accounting.on_unhealthy(log)
            self.went_down()
        elif action == "die":
            await self._on_die(event, log)
            self.went_down()
        elif action == "oom":
            service.oom_seen = True
            log.warning("out of memory", extra={"oom_killed": True})
        elif action == "destroy":
            service.container_id = None
            service.health = None
            if not self.sup.stopping:
                log.warning("container removed behind our back; recreating")
                self.request_pass()
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
            self._helpers.start_soon(self._read_finished_at, event)

    def _report_crash(self, facts: CrashFacts) -> None:
        """(A helper task: gathering a crash report, bounded by `[crashes] gather_s`,
        must never hold up the restart the decision left pending.)"""
        if self._helpers is not None and self.sup.settings.crashes.enabled:
            self._helpers.start_soon(partial(self.sup.crashes.report, facts, self.settled))

    def _refresh_secrets_later(self, container_id: str) -> None:
        """The crash reports' secret values, read again shortly after this run's start
        (SECRETS_SETTLE_S: not during it, the archive reads hold the container)."""
        if self._helpers is None or not self.sup.settings.crashes.enabled:
            return

        async def refresh() -> None:
            await anyio.sleep(SECRETS_SETTLE_S)
            await self.sup.crashes.refresh_secrets(container_id)

        self._helpers.start_soon(refresh)

    async def _read_finished_at(self, event: EngineEvent) -> None:
        """(A helper task: the inspect waits for the engine's exit cleanup, which must
        not hold up the worker.) The engine's FinishedAt, stamped in the worker's turn."""
        try:
            info = await self.sup.engine.inspect(event.container_id)
        except EngineError:
            return
        if info is not None:
            self.submit(partial(self._stamp_finished_at, event.time, info.state.finished_at))

    async def _stamp_finished_at(
        self, event_time: datetime | None, finished_at: datetime | None
    ) -> None:
        """The engine's FinishedAt from now on: a stack pass compares against it."""
        if self.service.last_finished_at == event_time:
            self.service.last_finished_at = finished_at

    def watch_login(self, container_id: str) -> None:
        """Follow the server's login while it runs (one follower per run)."""
        if not roles.is_game(self.role) or self._helpers is None:
            return
        run = (container_id, self.service.restart.started_at)
        if self.service.login_watch != run:
            self.service.login_watch = run
            self.login.follow(self._helpers, container_id, run)

    async def login_read(self, container_id: str, login: hyos.Login | None) -> None:
        """The follower read HyOS's auth.json of `container_id`: take it in (once per
        change) and tell the operator what they must do."""
        service = self.service
        if login == service.login or service.container_id != container_id:
            return
        before, service.login = service.login, login
        log = self.sup.log.bind(service=service.role, container_id=container_id[:12])
        if login is not None and login.waiting:
            # Once per code: the URL and code are what an operator needs, nothing else.
            log.warning(
                "the Hytale login waits for approval: open the URL and enter the code "
                "(or run `hyos-supervisor auth`)",
                extra={"url": login.url, "code": login.code},
            )
            stack, now = self.sup.settings.stack, self.sup.clock()
            self.sup.alerts.emit(
                alerts.needs_auth(stack, self.role, now, url=login.url, code=login.code)
            )
        elif login is not None and before is not None and before.waiting:
            log.info("the Hytale login ended", extra={"login": login.status})
            self._refresh_secrets_later(container_id)  # HyOS's new tokens.json
        self.sup.save()

    async def login_followed(self, run: tuple[str, float | None]) -> None:
        """The follower of `run` ended: the next start of that container watches again."""
        if self.service.login_watch == run:
            self.service.login_watch = None


def _name(job: Job) -> str:
    return getattr(job, "__name__", "a job").strip("_").replace("_", " ")
