"""`hyos-supervisor run`: reconcile once, then keep the stack healthy from engine events.

One anyio task group holds every task: the event watcher, the safety-net reconcile,
the watchdog, the control socket and any pending restart. The first SIGTERM/SIGINT
cancels that group and then stops the stack in a shielded scope, so a second SIGTERM
cannot cut the server's world save short; a second SIGINT forces it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
)

from entrypoint.contract import LABEL_MANAGED, LABEL_ROLE, LABEL_STACK
from supervisor import control, hyos, restarts
from supervisor.engine import (
    ContainerInfo,
    ContainerState,
    Engine,
    EngineError,
    EngineEvent,
    NotFound,
)
from supervisor.guard import serve_guard
from supervisor.guard_rules import Allow
from supervisor.guard_rules import Policy as GuardPolicy
from supervisor.logs import BoundLogger, bind, quiet_cancelled_wakeups
from supervisor.notify import Heartbeat, Notifier, watchdog_loop
from supervisor.reconcile import (
    StackError,
    UpReport,
    apply_service,
    desired_stack,
    plan_and_ensure,
    run_prepare,
)
from supervisor.restarts import Action, ExitKind, ServiceStatus
from supervisor.settings import Settings
from supervisor.stack import GUARD_SOCKET_NAME, Runtime
from supervisor.statefile import ensure_dir
from supervisor.store import (
    Service,
    StateStore,
    live_view,
    state_dir_for,
    state_path,
    status_line,
)

logger = logging.getLogger("supervisor.daemon")

WATCHED_EVENTS = ["die", "oom", "health_status", "start", "stop", "destroy"]
# The guard's rules whose allowed requests stop the server on the dashboard's behalf.
DASHBOARD_STOPS = {"container-stop": "stop", "container-restart": "restart"}
GUARD_RETRY_S = (0.5, 30.0)
# At most this often, a dashboard request through the guard has the daemon look whether
# the manager saved settings over the supervisor's wiring (hyos.manager_config_overrides).
MANAGER_CONFIG_CHECK_S = 5.0
# How the engine refuses to start a container whose containerd task outlived dockerd.
STALE_TASK = re.compile(r"task [0-9a-f]{12,}: already exists")
HELD = (ServiceStatus.CRASH_LOOP, ServiceStatus.NEEDS_AUTH)
ADOPT_AS_STARTED = (ServiceStatus.STOPPED, ServiceStatus.BACKOFF, ServiceStatus.UPDATING)


class _StartedOnce(TaskStatus[None]):
    """Passes the first `started()` on; later ones (a re-served guard) are no-ops."""

    def __init__(self, inner: TaskStatus[None]) -> None:
        self.inner = inner
        self.done = False

    def started(self, value: None = None) -> None:
        if not self.done:
            self.done = True
            self.inner.started(value)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.notifier = notifier
        self.clock = clock
        self.policy = settings.restart.policy()
        self.services = {role: Service(role) for role in settings.services()}
        self.state_dir = ensure_dir(state_dir_for(settings))
        self.store = StateStore(state_path(settings))
        self.state_path = self.store.path
        self.socket_path = self.state_dir / f"{settings.stack}.{control.SOCKET_NAME}"
        self.heartbeat = Heartbeat()
        self.log: BoundLogger = bind(logger, stack=settings.stack)
        self.stopping = False
        self.force = anyio.Event()
        self.manager_after_server = False
        self.last_event_nano = 0
        self._reconcile_lock = anyio.Lock()
        self._manager_config_due = 0.0
        self.runtime: Runtime | None = None
        self._reconcile_pending = False
        # Completed reconcile passes: proof, for `status` and tests, that the daemon looked.
        self.reconciles = 0
        self._work: TaskGroup | None = None
        self._work_scope = anyio.CancelScope()

    # --- state file and view (supervisor.store) -------------------------------------------

    def load(self) -> None:
        self.manager_after_server = self.store.load(self.services, self.log)

    def save(self) -> None:
        try:
            self.store.save(self.services, self.manager_after_server, self.clock())
        except OSError as err:
            self.log.error(
                "cannot write the state file",
                extra={"path": str(self.store.path), "error": str(err)},
            )
        self.notifier.status(status_line(self.services))

    def view(self) -> dict[str, Any]:
        """The live view `status` shows."""
        return live_view(
            self.settings.stack,
            self.services,
            self.clock(),
            stopping=self.stopping,
            heartbeat_age_s=self.heartbeat.age(),
            reconciles=self.reconciles,
        )

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> int:
        self.load()
        async with anyio.create_task_group() as root:
            root.start_soon(self._signals)
            with self._work_scope:
                async with anyio.create_task_group() as work:
                    self._work = work
                    await work.start(self._watch_events)
                    await self.reconcile(startup=True)
                    self.notifier.ready()
                    self.log.info("supervising", extra={"status": status_line(self.services)})
                    work.start_soon(self._periodic_reconcile)
                    work.start_soon(control.serve, self.socket_path, self._answer)
                    if self.runtime is not None and self.runtime.guard_dir is not None:
                        await work.start(self._serve_guard, Path(self.runtime.guard_dir))
                    interval = self.notifier.watchdog_interval()
                    if interval is not None:
                        work.start_soon(self._pulse, interval)
                        work.start_soon(watchdog_loop, self.notifier, self.heartbeat)
            self._work = None
            await self._shutdown()
            root.cancel_scope.cancel()
        return 0

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async for signum in received:
                name = signal.Signals(signum).name
                if not self.stopping:
                    self.stopping = True
                    self.notifier.stopping()
                    self.log.info("shutting down", extra={"signal": name})
                    self._work_scope.cancel()
                elif signum == signal.SIGINT:
                    self.log.warning("second SIGINT: forcing the stop")
                    self.force.set()
                else:
                    self.log.info("already stopping; the server keeps its grace period")

    async def _shutdown(self) -> None:
        with anyio.CancelScope(shield=True):
            self.stopping = True
            self.notifier.stopping()
            for service in self.services.values():
                service.restart = restarts.cancel_pending(service.restart)
                service.restart_due = None
            if not self.settings.stop_on_exit:
                self.log.info("leaving the stack running (stop_on_exit = false)")
                self.save()
                return
            # Reverse start order: the manager first, then the server with its grace period.
            for role in reversed(list(self.services)):
                await self._stop_for_shutdown(self.services[role])
            self.save()
            self.log.info("stack stopped", extra={"status": status_line(self.services)})

    async def _stop_for_shutdown(self, service: Service) -> None:
        observed = [
            o for o in await self.engine.list_stack(self.settings.stack) if o.role == service.role
        ]
        timeout = self.settings.services()[service.role].stop_timeout
        for container in observed:
            if not container.running:
                continue
            service.stop_requested.add(container.id)
            log = self.log.bind(service=service.role, container_id=container.id[:12])
            log.info("stopping", extra={"stop_timeout": timeout})
            async with anyio.create_task_group() as race:
                race.start_soon(self._kill_when_forced, container.id, log)
                await self.engine.stop(container.id, timeout)
                race.cancel_scope.cancel()
            # The stop call returns once the engine reports the container stopped.
            service.restart = replace(service.restart, status=ServiceStatus.STOPPED)
            service.health = None
            log.info("stopped")

    async def _serve_guard(
        self, guard_dir: Path, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the manager's guard for as long as the daemon runs. A failure inside the
        guard never ends supervision: it is logged and the guard is served again (the
        socket re-created) after a bounded backoff."""
        policy = GuardPolicy(self.settings.stack, self.settings.server.stop_timeout)
        serve = partial(
            serve_guard,
            guard_dir / GUARD_SOCKET_NAME,
            self.settings.docker_host.removeprefix("unix://"),
            policy,
            self.settings.manager.gid,
            max_connections=self.settings.guard_max_connections,
            on_allowed=self._dashboard_request,
        )
        status = _StartedOnce(task_status)
        delay = GUARD_RETRY_S[0]
        while True:
            try:
                await serve(task_status=status)
            except Exception as err:
                if not status.done:
                    raise  # the first bind fails the startup loudly
                self.log.error("the guard failed", extra={"error": repr(err)})
                self.log.debug("the guard failed", exc_info=True)
            self.log.error("serving the guard again", extra={"retry_in_s": delay})
            await anyio.sleep(delay)
            delay = min(delay * 2, GUARD_RETRY_S[1])

    def _dashboard_request(self, allowed: Allow) -> None:
        """The dashboard stops or restarts the server through the guard: that exit is
        asked for, so it must not count as a crash or be undone by a restart."""
        self._check_manager_config_soon()
        server = self.services.get("server")
        if allowed.rule not in DASHBOARD_STOPS or server is None:
            return
        if allowed.container_id is None or allowed.container_id != server.container_id:
            return
        server.stop_requested.add(allowed.container_id)
        self.log.info(
            "the dashboard asked for a server " + DASHBOARD_STOPS[allowed.rule],
            extra={"service": "server", "container_id": allowed.container_id[:12]},
        )

    def _check_manager_config_soon(self) -> None:
        now = self.clock()
        if now >= self._manager_config_due:
            self._manager_config_due = now + MANAGER_CONFIG_CHECK_S
            self._spawn(self._repair_manager_config)

    async def _repair_manager_config(self) -> None:
        """HyOS's manager saves its whole config, HyOS's defaults for what it was given
        by environment included (server name, API client id and secret), and the saved
        file wins from then on: the dashboard loses the server. The prepare step removes
        those keys; the manager restarts to forget what it cached."""
        manager = self.services.get("manager")
        if manager is None or manager.container_id is None or manager.busy or self.stopping:
            return
        try:
            raw = await self.engine.read_file(manager.container_id, hyos.MANAGER_CONFIG_FILE)
            keys = hyos.manager_config_overrides(raw)
            if not keys:
                return
            self.log.warning(
                "the dashboard saved settings over the supervisor's wiring; removing them "
                "and restarting the manager",
                extra={"service": "manager", "keys": list(keys)},
            )
            async with self._reconcile_lock:
                await run_prepare(self.engine, self.settings)
        except (EngineError, StackError) as err:
            self.log.warning(
                "cannot check the dashboard's settings file",
                extra={"service": "manager", "error": str(err)},
            )
            return
        await self._restart_now(manager, "the dashboard's settings overrode the wiring")

    async def _kill_when_forced(self, container_id: str, log: BoundLogger) -> None:
        await self.force.wait()
        log.warning("killing now")
        await self.engine.kill(container_id)

    async def _pulse(self, interval: float) -> None:
        """Proves the loop is alive to the watchdog even when no event arrives."""
        while True:
            self.heartbeat.beat()
            await anyio.sleep(interval)

    async def _periodic_reconcile(self) -> None:
        while True:
            await anyio.sleep(self.settings.reconcile_interval_s)
            self.heartbeat.beat()
            await self._reconcile_until_done(False)

    # --- events -------------------------------------------------------------------------

    def _event_filters(self) -> dict[str, list[str]]:
        return {
            "type": ["container"],
            "label": [f"{LABEL_MANAGED}=true", f"{LABEL_STACK}={self.settings.stack}"],
            "event": WATCHED_EVENTS,
        }

    async def _watch_events(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow the engine's events forever; reconnect with backoff and resume with since=."""
        started = False
        since: str | None = None
        while True:
            try:
                async with self.engine.events(self._event_filters(), since=since) as stream:
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        self.log.info("event stream reconnected", extra={"since": since})
                        # Whatever the engine did while we were away: look, don't guess.
                        self._spawn(self._reconcile_until_done, True)
                    async for event in stream:
                        self.heartbeat.beat()
                        nano = event.time_nano
                        if nano and nano <= self.last_event_nano:
                            continue  # replayed by since=
                        self.last_event_nano = max(self.last_event_nano, nano)
                        since = f"{nano // 10**9}.{nano % 10**9:09d}" if nano else since
                        try:
                            await self._on_event(event)
                        except EngineError as err:
                            # One failed call must not cost the stream: look again, later.
                            self.log.warning(
                                "handling an event failed",
                                extra={"error": str(err), "action": event.action},
                            )
                            self._spawn(self._reconcile_until_done, False)
                        except Exception as err:
                            self.unexpected("handling an event", err, action=event.action)
                            self._spawn(self._reconcile_until_done, False)
            except EngineError as err:
                if not started:
                    raise
                self.log.warning("event stream lost", extra={"error": str(err) or repr(err)})
            except Exception as err:
                if not started:
                    raise
                self.unexpected("following the engine's events", err)
            await self._await_engine()

    async def _reconcile_until_done(self, startup: bool) -> None:
        """Reconcile, retrying with bounded backoff: right after a dockerd restart the
        engine can refuse starts for a while (containerd still holds the old tasks)."""
        if self._reconcile_pending:
            return  # one retry loop at a time is enough
        self._reconcile_pending = True
        try:
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(Exception),
                wait=wait_exponential(multiplier=0.5, max=30),
                stop=stop_never,
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    try:
                        await self.reconcile(startup=startup)
                        self.reconciles += 1
                    except (EngineError, StackError) as err:
                        self.log.warning("reconcile failed; retrying", extra={"error": str(err)})
                        raise
                    except Exception as err:
                        self.unexpected("a reconcile", err)
                        raise
        finally:
            self._reconcile_pending = False

    async def _await_engine(self) -> None:
        """Bounded exponential backoff until the engine answers again."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(EngineError),
            wait=wait_exponential(multiplier=0.25, max=15),
            stop=stop_never,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self.engine.ping(attempts=1)

    async def _on_event(self, event: EngineEvent) -> None:
        service = self.services.get(event.labels.get(LABEL_ROLE, ""))
        container_id = event.container_id
        if service is None or not container_id:
            return
        if service.container_id not in (None, container_id):
            return  # an old container of ours on its way out
        service.container_id = container_id
        action = event.action
        log = self.log.bind(service=service.role, container_id=container_id[:12])
        now = self.clock()
        if action == "start":
            service.restart = restarts.on_started(service.restart, now)
            service.health = "starting" if service.health is not None else None
            service.restart_due = None
            log.info("started")
            self._watch_login(service, container_id)
        elif action == "health_status: healthy":
            service.health = "healthy"
            service.restart = restarts.on_healthy(service.restart, now)
            log.info("healthy")
            if service.role == "server" and self.manager_after_server:
                await self._start_manager_after_server()
        elif action == "health_status: unhealthy":
            service.health = "unhealthy"
            await self._on_unhealthy(service, log)
        elif action == "die":
            await self._on_die(service, event, log)
        elif action == "oom":
            service.oom_seen = True
            log.warning("out of memory", extra={"oom_killed": True})
        elif action == "destroy":
            service.container_id = None
            service.health = None
            if not service.busy and not self.stopping:
                log.warning("container removed behind our back; recreating")
                self._spawn(self._reconcile_until_done, False)
        self.save()

    async def _on_die(self, service: Service, event: EngineEvent, log: BoundLogger) -> None:
        """Decide from the event itself, then inspect. An inspect right after `die` waits
        for the engine's exit cleanup (network, mounts: ~100 ms here), which would delay
        every restart; the event carries the exit code, and `oom` comes before `die`."""
        oom, service.oom_seen = service.oom_seen, False
        if event.exit_code is not None:
            # The event's time stands in for FinishedAt until the inspect below has it.
            exited = ContainerInfo(
                id=event.container_id,
                name=event.name,
                state=ContainerState(
                    status="exited",
                    exit_code=event.exit_code,
                    oom_killed=oom,
                    finished_at=event.time,
                ),
            )
            await self._on_exit(service, exited, log)
        info = await self.engine.inspect(event.container_id)
        if info is None:
            return
        if event.exit_code is None:
            await self._on_exit(service, info, log)
        elif service.last_finished_at == event.time:
            # Engine's own stamp from now on: reconcile compares against it.
            service.last_finished_at = info.state.finished_at

    def _spawn(self, func: Callable[..., Any], *args: Any) -> None:
        if self._work is not None:
            self._work.start_soon(self._contained, func, args)

    async def _contained(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Run one of the daemon's own jobs; a surprise inside it never ends supervision:
        it is logged once and the world is looked at again by a reconcile."""
        try:
            await func(*args)
        except Exception as err:
            what = getattr(func, "__name__", "a task").strip("_").replace("_", " ")
            self.unexpected(what, err)
            if func != self._reconcile_until_done:
                self._spawn(self._reconcile_until_done, False)

    def unexpected(self, what: str, err: BaseException, **fields: Any) -> None:
        """An error nobody planned for (a bug, or Docker answering in a way we did not
        expect): one line at ERROR, the traceback at DEBUG. Supervision goes on."""
        self.log.error(
            f"{what} failed unexpectedly; supervision continues",
            extra={"error": repr(err), **fields},
        )
        self.log.debug(f"{what} failed", exc_info=err)

    # --- decisions ----------------------------------------------------------------------

    async def _on_exit(self, service: Service, info: ContainerInfo, log: BoundLogger) -> None:
        finished = info.state.finished_at
        if finished == service.last_finished_at:
            return  # this exit is already accounted for
        service.last_finished_at = finished
        service.health = None
        exit_code = info.state.exit_code
        oom = info.state.oom_killed
        requested = info.id in service.stop_requested
        service.stop_requested.discard(info.id)
        asked = requested or self.stopping
        explained = None if asked or oom else await self._explain_exit(service, info.id, exit_code)
        kind = restarts.classify_exit(service.role, exit_code, oom, asked, explained)
        reason = restarts.describe_exit(service.role, exit_code, oom, asked, explained)
        service.restart, decision = restarts.on_exit(
            service.restart, kind, self.clock(), self.policy, reason=reason, container=info.name
        )
        if decision.action in (Action.RESTART, Action.RETRY_LOGIN) and not self.stopping:
            service.restart_due = self.clock() + decision.backoff_s
        # Persist the decision before logging or acting on it: a kill -9 can come at any
        # moment (fsync under load takes tens of ms), and the next daemon must resume it.
        self.save()
        fields = {
            "exit_code": exit_code,
            "oom_killed": oom,
            "restart_count": service.restart.restart_count,
            "backoff_s": decision.backoff_s,
            "reason": reason,
            "decision": decision.action.value,
        }
        level = logging.INFO if kind is ExitKind.CLEAN else logging.WARNING
        log.log(level, "exited", extra=fields)
        if self.stopping:
            return
        await self._act(service, decision, log)

    async def _explain_exit(
        self, service: Service, container_id: str, exit_code: int
    ) -> hyos.ServerExit | None:
        """What HyOS's state files say about a server exit whose code alone is ambiguous
        (1: Java crashed, or the login ran out; 143: a stray SIGTERM, or the update
        button). Read through the engine from the stopped container's volume."""
        if service.role != "server" or exit_code not in (1, 143):
            return None
        try:
            if exit_code == 1:
                raw = await self.engine.read_file(container_id, hyos.AUTH_FILE)
                service.login = hyos.parse_login(raw)
                return hyos.explain_exit(exit_code, service.login, False)
            raw = await self.engine.read_file(container_id, hyos.UPDATE_FILE)
            since = service.restart.started_at or 0.0
            return hyos.explain_exit(exit_code, None, hyos.update_started_since(raw, since))
        except EngineError as err:
            self.log.warning(
                "cannot read HyOS's state after an exit; judging by the code alone",
                extra={"service": service.role, "error": str(err)},
            )
            return None

    def _watch_login(self, service: Service, container_id: str) -> None:
        """Follow the server's logs while it runs; lines about the login re-read HyOS's
        auth.json (event-driven: no polling while nothing happens). One follower per run
        of the container: a restart ends the old stream and starts a new one."""
        run = (container_id, service.restart.started_at)
        if service.role == "server" and service.login_watch != run:
            service.login_watch = run
            self._spawn(self._follow_login, service, container_id, run)

    async def _follow_login(
        self, service: Service, container_id: str, run: tuple[str, float | None]
    ) -> None:
        try:
            await self._read_login(service, container_id)
            async with self.engine.follow_logs(container_id) as lines:
                async for line in lines:
                    waiting = service.login is not None and service.login.waiting
                    if waiting or hyos.LOGIN_LINE.search(line):
                        await self._read_login(service, container_id)
        except EngineError as err:
            # The container went away or the engine hiccupped; its next start watches again.
            self.log.debug("stopped following the login", extra={"error": str(err)})
        finally:
            if service.login_watch == run:
                service.login_watch = None

    async def _read_login(self, service: Service, container_id: str) -> None:
        login = hyos.parse_login(await self.engine.read_file(container_id, hyos.AUTH_FILE))
        if login == service.login or service.container_id != container_id:
            return
        before, service.login = service.login, login
        log = self.log.bind(service=service.role, container_id=container_id[:12])
        if login is not None and login.waiting:
            # Once per code: the URL and code are what an operator needs, nothing else.
            log.warning(
                "the Hytale login waits for approval: open the URL and enter the code "
                "(or run `hyos-supervisor auth`)",
                extra={"url": login.url, "code": login.code},
            )
        elif login is not None and before is not None and before.waiting:
            log.info("the Hytale login ended", extra={"login": login.status})
        self.save()

    async def _install_update(self, service: Service) -> None:
        """The dashboard's update stopped Java; ask HyOS's entrypoint to install the update
        on this start, as its own schedule-update.sh does, then start at once."""
        if service.container_id is not None:
            try:
                await self.engine.write_file(
                    service.container_id,
                    hyos.UPDATE_ON_RESTART_FILE,
                    hyos.update_on_restart(datetime.now(UTC)),
                    self.settings.server.uid,
                    self.settings.server.gid,
                )
            except EngineError as err:
                self.log.error(
                    "cannot ask HyOS to install the update; starting the server as it is",
                    extra={"service": service.role, "error": str(err)},
                )
        self._schedule_restart(service, 0.0)

    async def _act(self, service: Service, decision: restarts.Decision, log: BoundLogger) -> None:
        if decision.action in (Action.RESTART, Action.RETRY_LOGIN):
            if decision.message:
                log.warning(decision.message, extra={"reason": decision.reason})
            service.restart_due = self.clock() + decision.backoff_s
            self._schedule_restart(service, decision.backoff_s)
        elif decision.action is Action.INSTALL_UPDATE:
            log.info("installing the update the dashboard asked for")
            await self._install_update(service)
        elif decision.action is Action.RECREATE:
            self._spawn(self._recreate, service)
        elif decision.action is Action.STOP_CRASH_LOOP:
            lines = await self.engine.logs_tail(
                service.container_id or "", self.policy.crash_loop_log_lines
            )
            log.error(
                "crash loop: not restarting; the container is kept for inspection. "
                f"Fix the cause, then run `hyos-supervisor restart {service.role}`",
                extra={"reason": decision.reason, "last_logs": lines},
            )
        elif decision.action is Action.NEEDS_AUTH:
            log.error(decision.message, extra={"reason": decision.reason})

    async def _on_unhealthy(self, service: Service, log: BoundLogger) -> None:
        info = await self.engine.inspect(service.container_id or "")
        if info is None:
            return
        started = info.state.started_at
        service.restart, decision = restarts.on_unhealthy(
            service.restart,
            self.clock(),
            started.timestamp() if started is not None else 0.0,
            info.health_start_period_s,
            service.busy or self.stopping,
            self.policy,
        )
        self.save()  # the decision first (see _on_exit)
        log.warning(
            "unhealthy",
            extra={
                "decision": decision.action.value,
                "restart_count": service.restart.restart_count,
            },
        )
        if decision.action is Action.RESTART:
            self._spawn(self._restart_now, service)
        else:
            await self._act(service, decision, log)

    def _schedule_restart(self, service: Service, delay: float) -> None:
        # Busy from now, not from when the task first runs: nothing may schedule it twice.
        service.busy = True
        self._spawn(self._restart_after, service, delay)

    @asynccontextmanager
    async def _busy(self, service: Service, what: str) -> AsyncIterator[None]:
        """One restart, stop or recreate of ours: the service is busy meanwhile, and a
        refused engine call ends it with one error line, never the daemon."""
        service.busy = True
        try:
            yield
        except EngineError as err:
            self.log.error(f"{what} failed", extra={"service": service.role, "error": str(err)})
        finally:
            service.busy = False
            self.save()

    async def _restart_after(self, service: Service, delay: float) -> None:
        async with self._busy(service, "restart"):
            await anyio.sleep(delay)
            service.restart_due = None
            if service.container_id is None:
                # Removed while we waited: a reconcile recreates it (it skips busy ones,
                # and this one is no longer busy once we return).
                self._spawn(self._reconcile_until_done, False)
                return
            started = await self._start_with_retries(service, service.container_id)
            self.log.info(
                "restart issued",
                extra={"service": service.role, "container_id": started[:12], "backoff_s": delay},
            )
            self._after_server_restart(service)

    async def _start_with_retries(self, service: Service, container_id: str) -> str:
        """Start, retrying refusals with bounded backoff: right after a dockerd restart the
        engine refuses starts for a while (stale endpoints). Gives up only when the
        container is gone; shutdown cancels it. Returns the id that was started."""

        def transient(err: BaseException) -> bool:
            return isinstance(err, EngineError) and not isinstance(err, NotFound)

        def note(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            self.log.warning(
                "start refused; retrying",
                extra={
                    "service": service.role,
                    "error": str(error),
                    "attempt": state.attempt_number,
                },
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception(transient),
            wait=wait_exponential(multiplier=0.5, max=30),
            stop=stop_never,
            before_sleep=note,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    await self.engine.start(container_id)
                except EngineError as err:
                    if STALE_TASK.search(str(err)):
                        # containerd kept its task across a dockerd restart: this
                        # container will never start again.
                        container_id = await self._replace(
                            service,
                            container_id,
                            "replaced a container the engine can no longer start",
                        )
                    raise
        return container_id

    async def _replace(
        self, service: Service, old_id: str | None, why: str, level: int = logging.WARNING
    ) -> str:
        """A fresh container of the desired spec in place of `old_id`; returns its id."""
        desired = desired_stack(self.settings, self.runtime)[service.role]
        if old_id is not None:
            await self.engine.remove(old_id)
        service.container_id = None
        new_id = await self.engine.create(desired.name, desired.body)
        service.container_id = new_id
        self.log.log(
            level,
            why,
            extra={
                "service": service.role,
                "container_id": new_id[:12],
                "old": (old_id or "")[:12],
            },
        )
        return new_id

    async def _restart_now(self, service: Service, reason: str = "unhealthy") -> None:
        """Stop (flagged as ours) and start again: for unhealthy, dependents and operators."""
        container_id = service.container_id
        if container_id is None:
            return
        async with self._busy(service, "restart"):
            timeout = self.settings.services()[service.role].stop_timeout
            service.stop_requested.add(container_id)
            await self.engine.stop(container_id, timeout)
            started = await self._start_with_retries(service, container_id)
            self.log.info(
                "restarted",
                extra={"service": service.role, "container_id": started[:12], "reason": reason},
            )
            self._after_server_restart(service)

    async def _recreate(self, service: Service) -> None:
        """Exit 8: the server asked for an update; new container, fresh image if configured."""
        async with self._busy(service, "recreate"):
            if self.settings.pull == "always":
                await self.engine.pull(self.settings.services()[service.role].image)
            new_id = await self._replace(
                service, service.container_id, "recreated for update", logging.INFO
            )
            await self._start_with_retries(service, new_id)
            self._after_server_restart(service)

    def _after_server_restart(self, service: Service) -> None:
        if service.role == "server" and self.settings.restart.restart_manager_with_server:
            self.manager_after_server = True

    def _server_ready_or_held(self) -> bool:
        server = self.services.get("server")
        return server is None or server.health == "healthy" or server.restart.status in HELD

    async def _start_manager_after_server(self) -> None:
        self.manager_after_server = False
        manager = self.services.get("manager")
        if manager is None or manager.container_id is None or manager.busy:
            return
        info = await self.engine.inspect(manager.container_id)
        if info is None or not info.state.running:
            self._schedule_restart(manager, 0.0)
            return
        server = self.services.get("server")
        server_info = (
            await self.engine.inspect(server.container_id)
            if server is not None and server.container_id
            else None
        )
        server_started = server_info.state.started_at if server_info is not None else None
        manager_started = info.state.started_at
        # Level, not edge: a manager that started after the server's last start already
        # talks to that server (a stale observation may have flagged it twice).
        if server_started and manager_started and manager_started >= server_started:
            return
        self._spawn(self._restart_now, manager, "server restarted")

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, startup: bool) -> None:
        """Converge on the settings, respecting crash loops, needs_auth and pending backoff.

        At startup (and after an engine outage) stopped containers are started again;
        later, an exit we missed is accounted like any other exit.
        """
        async with self._reconcile_lock:
            report = UpReport()
            converged = await plan_and_ensure(
                self.engine, self.settings, report, start_exited=startup
            )
            self.runtime = converged.runtime
            # Left stopped on purpose in this pass (the dashboard's or an operator's stop):
            # the manager must not wait for it, or restart once it runs again.
            left_stopped: set[str] = set()
            for plan in converged.plans:
                service = self.services[plan.role]
                if service.busy:
                    continue
                log = self.log.bind(service=plan.role)
                keep = plan.keep
                if keep is not None and not plan.remove and plan.keeps_exited:
                    service.container_id = keep.id
                    info = await self.engine.inspect(keep.id)
                    if info is None:
                        continue
                    if not startup:
                        await self._on_exit(service, info, log.bind(container_id=keep.id[:12]))
                        if service.restart.status is ServiceStatus.STOPPED:
                            left_stopped.add(plan.role)
                        if service.restart_due is not None and not service.busy:
                            # A restart was decided but nothing carries it out any more.
                            delay = max(0.0, (service.restart_due or 0.0) - self.clock())
                            self._schedule_restart(service, delay)
                        continue
                    service.last_finished_at = info.state.finished_at
                    if service.restart_due and service.restart.status in (
                        ServiceStatus.BACKOFF,
                        ServiceStatus.NEEDS_AUTH,  # waiting to retry a login that ran out
                    ):
                        delay = max(0.0, service.restart_due - self.clock())
                        self._schedule_restart(service, delay)
                        continue
                    if service.restart.status in HELD:
                        continue
                hold = service.restart.status in HELD
                start = not hold
                server_ready = self._server_ready_or_held() or "server" in left_stopped
                if plan.role == "manager" and plan.start and not server_ready:
                    # Only a manager about to start waits for the server; flagging a
                    # running one would restart the dashboard under its user.
                    start = False
                    self.manager_after_server = True
                container_id = await apply_service(self.engine, self.settings, plan, report, start)
                if service.container_id != container_id:
                    service.health = None
                service.container_id = container_id
                if keep is not None and keep.id == container_id and keep.running:
                    service.health = keep.health
                    self._watch_login(service, container_id)
                    if service.restart.status in ADOPT_AS_STARTED:
                        # Also a restart or recreate that a killed daemon issued but
                        # never saw start: the container runs, so the service does.
                        service.restart = restarts.on_started(service.restart, self.clock())
                    if keep.health == "healthy" and service.restart.healthy_since is None:
                        service.restart = restarts.on_healthy(service.restart, self.clock())
                    if keep.health == "unhealthy" and not startup:
                        await self._on_unhealthy(service, log.bind(container_id=container_id[:12]))
            if self.manager_after_server and self._server_ready_or_held():
                await self._start_manager_after_server()
            for change in report.changes:
                self.log.info(change)
            self.save()

    # --- control socket -----------------------------------------------------------------

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """A control request; whatever goes wrong answers the client, never ends the daemon."""
        try:
            return await self._control(request)
        except EngineError as err:
            self.log.error(
                "control request failed",
                extra={"command": str(request.get("command")), "error": str(err)},
            )
            return {"ok": False, "error": str(err)}
        except Exception as err:
            self.unexpected("a control request", err, command=str(request.get("command")))
            return {"ok": False, "error": f"internal error: {err!r}"}

    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Dispatch a control request to its handler (CONTROL_HANDLERS)."""
        command = str(request.get("command"))
        handler = CONTROL_HANDLERS.get(command)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        return await handler(self, request)

    async def _control_status(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, **self.view()}

    async def _control_health(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "heartbeat_age_s": self.heartbeat.age(), "stopping": self.stopping}

    async def _control_rotate(self, request: dict[str, Any]) -> dict[str, Any]:
        names = tuple(str(n) for n in request.get("names") or ())
        async with self._reconcile_lock:
            try:
                await run_prepare(self.engine, self.settings, rotate=names)
            except (StackError, EngineError) as err:
                return {"ok": False, "error": str(err)}
        self.log.info("secrets rotated", extra={"names": list(names)})
        server = self.services.get("server")
        if server is not None and server.container_id is not None:
            # The manager follows once the server is healthy again.
            self.manager_after_server = True
            self._spawn(self._restart_now, server, "secrets rotated")
        return {
            "ok": True,
            "message": f"rotated {', '.join(names)}; restarting server, then manager",
        }

    async def _control_restart(self, request: dict[str, Any]) -> dict[str, Any]:
        role = str(request.get("service"))
        service = self.services.get(role)
        if service is None:
            return {"ok": False, "error": f"unknown service {role!r}; use server or manager"}
        service.restart = restarts.reset(service.restart)
        service.restart_due = None
        if service.container_id is None:
            self._spawn(self._reconcile_until_done, False)
        else:
            info = await self.engine.inspect(service.container_id)
            if info is not None and info.state.running:
                self._spawn(self._restart_now, service, "operator")
            else:
                self._schedule_restart(service, 0.0)
        self.save()
        return {"ok": True, "message": f"{role}: state cleared, restarting"}


ControlHandler = Callable[[Daemon, dict[str, Any]], Awaitable[dict[str, Any]]]
# The control socket's commands (`hyos-supervisor status`, `health`, `secrets rotate`,
# `restart`): one JSON request line in, one reply line out.
CONTROL_HANDLERS: dict[str, ControlHandler] = {
    "status": Daemon._control_status,
    "health": Daemon._control_health,
    "rotate": Daemon._control_rotate,
    "restart": Daemon._control_restart,
}


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
