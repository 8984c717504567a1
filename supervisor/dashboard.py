"""The daemon's side of HyOS's dashboard: serve the manager's Docker API guard for as long
as the daemon runs, learn from the guard which stops the dashboard asked for, and undo
dashboard settings saved over the supervisor's wiring."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from supervisor import hyos
from supervisor.dockertypes import EngineError
from supervisor.guard import AnswerHook, serve_guard
from supervisor.guard_rules import Allow
from supervisor.guard_rules import Policy as GuardPolicy
from supervisor.restarts import Step
from supervisor.roles import Role
from supervisor.stack import GUARD_SOCKET_NAME
from supervisor.supervision import Supervision
from supervisor.updown import StackError, run_prepare
from supervisor.worker import ServiceWorker

# The guard's rules whose allowed requests stop the server on the dashboard's behalf.
DASHBOARD_STOPS = {"container-stop": "stop", "container-restart": "restart"}
GUARD_RETRY_S = (0.5, 30.0)
# At most this often, a dashboard request through the guard has the daemon look whether
# the manager saved settings over the supervisor's wiring (hyos.manager_config_overrides).
MANAGER_CONFIG_CHECK_S = 5.0


class _EveryBind(TaskStatus[None]):
    """Passes the first `started()` on (later ones: a re-served guard) and tells `on_bound`
    of every one: each is a new socket."""

    def __init__(self, inner: TaskStatus[None], on_bound: Callable[[datetime], None]) -> None:
        self.inner = inner
        self.on_bound = on_bound
        self.done = False

    def started(self, value: None = None) -> None:
        self.on_bound(datetime.now(UTC))
        if not self.done:
            self.done = True
            self.inner.started(value)


class Dashboard:
    def __init__(self, sup: Supervision, workers: dict[str, ServiceWorker]) -> None:
        self.sup = sup
        self.workers = workers
        self._manager_config_due = 0.0

    async def serve_guard(
        self, guard_dir: Path, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """A failure inside the guard never ends supervision: it is logged and the guard
        is served again (the socket re-created) after a bounded backoff."""
        settings = self.sup.settings
        serve = partial(
            serve_guard,
            guard_dir / GUARD_SOCKET_NAME,
            settings.docker_host.removeprefix("unix://"),
            GuardPolicy(
                settings.stack,
                settings.stop_timeout(Role.SERVER),
                exec_gid=settings.server.user.gid,
            ),
            settings.manager.user.gid,
            engine=self.sup.engine,  # one engine client in the process
            max_connections=settings.guard_max_connections,
            on_allowed=self.on_allowed,
            tally=self.sup.tallies.guard,
        )
        status = _EveryBind(task_status, self.on_guard_bound)
        delay = GUARD_RETRY_S[0]
        while True:
            try:
                await serve(task_status=status)
            except Exception as err:
                if not status.done:
                    raise  # the first bind fails the startup loudly
                self.sup.log.error("the guard failed", extra={"error": repr(err)})
                self.sup.log.debug("the guard failed", exc_info=True)
            self.sup.log.error("serving the guard again", extra={"retry_in_s": delay})
            await anyio.sleep(delay)
            delay = min(delay * 2, GUARD_RETRY_S[1])

    def on_guard_bound(self, bound_at: datetime) -> None:
        manager = self.workers.get(Role.MANAGER)
        if manager is not None:
            manager.submit(partial(self.restart_manager_started_before, bound_at))

    async def restart_manager_started_before(self, bound_at: datetime) -> None:
        """The manager's Docker socket is a file mount (stack.GUARD_SOCKET_TARGET): it holds
        the socket the guard had when the manager started, which no one serves once the
        guard is bound anew (the daemon started, or the guard was served again). A manager
        running since before this socket was bound is restarted to reach the new one; one
        started after it needs nothing. (Runs in the manager's worker.)"""
        if self.sup.stopping:
            return
        observed = await self.sup.engine.list_stack(self.sup.settings.stack)
        for container in observed:
            if container.role != Role.MANAGER:
                continue
            info = await self.sup.engine.inspect(container.id)
            started = None if info is None else info.state.started_at
            if info is None or not info.state.running or started is None or started >= bound_at:
                continue
            self.sup.log.info(
                "the manager holds the guard's previous socket; restarting it",
                extra={"service": Role.MANAGER, "container_id": info.id[:12]},
            )
            self.workers[Role.MANAGER].request(
                Step.RESTART,
                "the guard's socket was bound anew; the manager holds the old one",
                cause="guard_socket",
            )
            return

    async def on_allowed(self, allowed: Allow) -> AnswerHook | None:
        """The dashboard stops or restarts the server through the guard: that exit is
        asked for, so it must not count as a crash or be undone by a restart. The mark is
        made before the request is forwarded (the exit's event may be handled before
        Docker's answer arrives) and withdrawn when Docker answers without stopping
        anything (304: it was not running; an error); a start clears it
        (supervisor.stopmarks).

        The server's worker makes the mark, in its turn, and the guard waits for it
        before it forwards (`worker.call`): the mark is in the record before the exit can
        happen, and a stop asked for during a step of ours waits for that step to end
        (it then stops the run the step started, and that run's exit is the one marked).
        The withdrawal is queued to the worker: it follows the mark in the inbox."""
        self._check_manager_config_soon()
        server = self.workers.get(Role.SERVER)
        container_id = allowed.container_id
        if allowed.rule not in DASHBOARD_STOPS or server is None or container_id is None:
            return None
        at = await server.call(partial(server.mark_stop, container_id))
        if at is None:
            return None  # not the server's current container
        what = DASHBOARD_STOPS[allowed.rule]
        log = self.sup.log.bind(service=Role.SERVER, container_id=container_id[:12])

        def answered(status: int) -> None:
            if 200 <= status < 300:
                log.info(f"the dashboard asked for a server {what}")
                server.submit(server.count_dashboard_stop)
                return
            server.submit(partial(server.withdraw_stop, container_id, at))
            log.info(
                f"the dashboard's {what} stopped nothing; its mark is withdrawn",
                extra={"status": status},
            )

        return answered

    def _check_manager_config_soon(self) -> None:
        now = self.sup.clock()
        manager = self.workers.get(Role.MANAGER)
        if manager is not None and now >= self._manager_config_due:
            self._manager_config_due = now + MANAGER_CONFIG_CHECK_S
            manager.submit(self.repair_manager_config)

    async def repair_manager_config(self) -> None:
        """HyOS's manager saves its whole config, HyOS's defaults for what it was given
        by environment included (server name, API client id and secret), and the saved
        file wins from then on: the dashboard loses the server. The prepare step removes
        those keys; the manager restarts to forget what it cached. (Runs in the manager's
        worker, so never beside one of its steps.)"""
        manager = self.workers[Role.MANAGER]
        container_id = manager.service.container_id
        if container_id is None or self.sup.stopping:
            return
        try:
            raw = await self.sup.engine.read_file(container_id, hyos.MANAGER_CONFIG_FILE)
            keys = hyos.manager_config_overrides(raw)
            if not keys:
                return
            self.sup.log.warning(
                "the dashboard saved settings over the supervisor's wiring; removing them "
                "and restarting the manager",
                extra={"service": Role.MANAGER, "keys": list(keys)},
            )
            async with self.sup.prepare_lock:
                await run_prepare(self.sup.engine, self.sup.settings)
        except (EngineError, StackError) as err:
            self.sup.log.warning(
                "cannot check the dashboard's settings file",
                extra={"service": Role.MANAGER, "error": str(err)},
            )
            return
        manager.request(
            Step.RESTART, "the dashboard's settings overrode the wiring", cause="dashboard_settings"
        )
