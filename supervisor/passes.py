"""Stack passes, what the settings, the CLI and the logs call a *reconcile*: the safety
net under the workers. At startup, every `reconcile_interval_s`, after the event stream reconnects and whenever a worker saw the
world change behind its back, one pass converges the stack on the settings (network,
volume, prepare step, containers) and hands each service's plan to its worker, server
first: adopting what runs, accounting exits nobody saw, starting what should run.

It also owns the one rule between services: the manager follows a server the daemon
restarted, once that server is healthy (or held)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from supervisor import restarts, roles
from supervisor.dockertypes import ContainerExit, EngineError
from supervisor.plan import ServicePlan
from supervisor.restarts import ServiceStatus, Step
from supervisor.roles import Role
from supervisor.supervision import HELD, Supervision, patiently
from supervisor.updown import StackError, UpReport, apply_service, plan_and_ensure
from supervisor.worker import ServiceWorker

ADOPT_AS_STARTED = (ServiceStatus.STOPPED, ServiceStatus.BACKOFF, ServiceStatus.UPDATING)


@dataclass(frozen=True)
class _Pass:
    startup: bool  # start exited containers (a fresh daemon, or the engine was away)
    generations: dict[str, int]  # each worker's, when planned: a step since makes it stale
    # Each worker's counts of events (lifecycle, health), when planned: an event since is
    # newer than the plan's listing (a `health_status` the listing predates is not
    # repeated by the engine).
    heard: dict[str, tuple[int, int]]


class StackPasses:
    def __init__(self, sup: Supervision, workers: Mapping[str, ServiceWorker]) -> None:
        """`workers` may be filled after this (the workers take `request` and
        `follow_server` at their construction); it is complete before anything runs."""
        self.sup = sup
        self.workers = workers
        self._wanted = anyio.Event()
        self._startup_wanted = False

    def request(self, startup: bool = False) -> None:
        self._startup_wanted |= startup
        self._wanted.set()

    def wanted(self) -> bool:
        """A pass was asked for and has not begun yet."""
        return self._wanted.is_set()

    async def run(self) -> None:
        """Passes on request, and every reconcile_interval_s regardless."""
        while True:
            with anyio.move_on_after(self.sup.settings.reconcile_interval_s):
                await self._wanted.wait()
            self.sup.heartbeat.beat()
            startup, self._startup_wanted = self._startup_wanted, False
            self._wanted = anyio.Event()
            if self.sup.stopping:
                continue  # held for `down` (supervisor/drains.py): the CLI removes the stack
            await self.until_done(startup)

    async def until_done(self, startup: bool) -> None:
        """One pass, retried with bounded backoff: right after a dockerd restart the
        engine can refuse starts for a while (containerd still holds the old tasks)."""
        async for attempt in patiently(Exception, 0.5, 10):
            with attempt:
                try:
                    await self.once(startup)
                    self.sup.reconciles += 1
                except (EngineError, StackError) as err:
                    self.sup.log.warning("reconcile failed; retrying", extra={"error": str(err)})
                    raise
                except Exception as err:
                    self.sup.unexpected("a reconcile", err)
                    raise

    async def once(self, startup: bool) -> None:
        """Converge on the settings, respecting crash loops, needs_auth and pending steps.

        At startup (and after an engine outage) stopped containers are started again;
        later, an exit we missed is accounted like any other exit."""
        sup = self.sup
        planned = _Pass(
            startup,
            generations={role: w.generation for role, w in self.workers.items()},
            heard={role: w.heard for role, w in self.workers.items()},
        )
        report = UpReport()
        async with sup.prepare_lock:
            converged = await plan_and_ensure(
                sup.engine, sup.settings, report, start_exited=startup
            )
        if report.changed:  # a new volume or container: its secret files may be new
            sup.crashes.secrets_changed()
        sup.runtime = converged.runtime
        # Left stopped on purpose in this pass (the dashboard's or an operator's stop):
        # the manager must not wait for it, or restart once it runs again.
        left_stopped: set[str] = set()
        for plan in converged.plans:
            worker = self.workers[plan.role]
            adopt = _Adoption(self, worker, plan, planned, report, Role.SERVER in left_stopped)
            if await worker.call(adopt.run):
                left_stopped.add(plan.role)
        if sup.manager_after_server and sup.server_ready_or_held():
            await self.workers[Role.MANAGER].call(self.follow_server_now)
        for change in report.changes:
            sup.log.info(change)
        sup.save()

    def follow_server(self) -> None:
        """The server we restarted is healthy: the manager follows (in its own worker)."""
        manager = self.workers.get(Role.MANAGER)
        if manager is not None:
            manager.submit(self.follow_server_now)

    async def follow_server_now(self) -> None:
        sup = self.sup
        sup.manager_after_server = False
        manager = self.workers.get(Role.MANAGER)
        if manager is None or manager.service.container_id is None:
            return
        info = await sup.engine.inspect(manager.service.container_id)
        if info is None or not info.state.running:
            manager.request(Step.START, "server restarted", cause="server_restarted")
            return
        server = sup.services.get(Role.SERVER)
        server_info = (
            await sup.engine.inspect(server.container_id)
            if server is not None and server.container_id
            else None
        )
        server_started = server_info.state.started_at if server_info is not None else None
        manager_started = info.state.started_at
        # Level, not edge: a manager that started after the server's last start already
        # talks to that server (a stale observation may have flagged it twice).
        if server_started and manager_started and manager_started >= server_started:
            return
        manager.request(Step.RESTART, "server restarted", cause="server_restarted")


@dataclass
class _Adoption:
    """One service's share of a pass, run inside its worker (so never beside a step)."""

    passes: StackPasses
    worker: ServiceWorker
    plan: ServicePlan
    planned: _Pass
    report: UpReport
    server_left_stopped: bool

    async def run(self) -> bool:
        """Returns whether this pass leaves the service stopped on purpose."""
        worker, plan, startup = self.worker, self.plan, self.planned.startup
        service, sup = worker.service, worker.sup
        if plan.role == Role.SERVER and sup.update_hold:
            return True  # a failed update's rollback: stopped until the operator restores
        if worker.generation != self.planned.generations[plan.role]:
            # A step of ours changed it since the plan: the next pass looks, and soon (CI:
            # a new daemon's pending start, carried out during its startup pass, went to a
            # server the killed daemon had started: no start event came, and the service
            # showed `backoff` until the periodic pass, 60 s later).
            self.passes.request()
            return False
        if not startup and service.restart.pending is not None:
            return False  # its worker carries the pending step out when due
        keep = plan.keep
        if keep is not None and not plan.remove and plan.keeps_exited:
            service.container_id = keep.id
            info = await sup.engine.inspect(keep.id)
            if info is None:
                return False
            if not startup:
                exited = ContainerExit.of_info(info)
                await worker.accounting.on_exit(exited, worker.log.bind(container_id=keep.id[:12]))
                return service.restart.status is ServiceStatus.STOPPED
            service.last_finished_at = info.state.finished_at
            if service.restart.pending is not None or service.restart.status in HELD:
                return False  # resumed when due / held for the operator
        await self._apply()
        return False

    async def _apply(self) -> None:
        worker, plan, sup = self.worker, self.plan, self.worker.sup
        service, keep = worker.service, plan.keep
        start = service.restart.status not in HELD
        server_ready = sup.server_ready_or_held() or self.server_left_stopped
        if roles.waits_for_server(plan.role) and plan.start and not server_ready:
            # Only a manager about to start waits for the server; flagging a running
            # one would restart the dashboard under its user.
            start = False
            sup.manager_after_server = True
        container_id = await apply_service(sup.engine, sup.settings, plan, self.report, start)
        if service.container_id != container_id:
            service.health = None
        service.container_id = container_id
        if keep is None or keep.id != container_id or not keep.running:
            return
        # What the worker heard from the engine since the listing is newer, and it has
        # reacted to it. Seen in CI: a `healthy` taken between the listing and this
        # adoption was overwritten with the listing's `starting` (the manager waited for a
        # healthy event the engine never sends twice), and a dashboard Stop's exit taken
        # meanwhile was undone (the stopped server shown running). A health event alone
        # says nothing of running: a new daemon still adopts the server as started.
        lifecycle_then, health_then = self.planned.heard[plan.role]
        lifecycle_now, health_now = worker.heard
        if lifecycle_now != lifecycle_then:
            return
        heard_health = health_now != health_then
        if not heard_health:
            service.health = keep.health
        worker.watch_login(container_id)
        now = sup.clock()
        if service.restart.status in ADOPT_AS_STARTED:
            # Also a restart or recreate that a killed daemon issued but never saw
            # start: the container runs, so the service does.
            service.restart = restarts.on_started(service.restart, now)
        if service.health == "healthy" and service.restart.healthy_since is None:
            service.restart = restarts.on_healthy(service.restart, now)
        if keep.health == "unhealthy" and not heard_health and not self.planned.startup:
            await worker.accounting.on_unhealthy(worker.log.bind(container_id=container_id[:12]))
