"""The daemon's drains: a disruptive action on the server waits for its players first.

`restart server`, `secrets rotate`, `down` (while a daemon runs) and the `[schedule]`
restart windows come here; the crash and unhealthy restarts (the workers' own) and the
dashboard's Stop/Restart (the guard) never do. One drain at a time, run by the planner
(supervisor/drain.py) through its shell (supervisor/drainer.py) in the daemon's task
group; when it acts, the action itself is submitted to the server's worker, the only
code that changes the server's record and container (the worker's restart stops
gracefully with the full `stop_timeout`, after the drain's `POST /server/save`).

A second request while one is pending: the same action joins it (with `--now`: the
pending drain acts at once); another action is refused with one line (cancel first).

Skipped at once: a server that is not up (not running, or starting, or unhealthy) has
nobody on it (no REST call), and a server that cannot be asked (an image without curl,
no client id and secret on its volume) can never be counted or warned.

A drain is kept in the state file at each step. A daemon that stops the stack on exit
(`stop_on_exit = true`) cancels it (the stop is the disruption: nothing is left to
drain); one that leaves the stack running, or is killed, leaves it to the next daemon,
which resumes it where it was (the planner keeps wall-clock time; a warning whose moment
passed meanwhile is dropped, never sent late).

The REST API's credentials are read, when a token is needed, from the server
container's own secret files (`/data/.hyos/secrets/api_client_*`, through the engine's
archive endpoint): what the plugin's hash was made from, rotated or supplied alike.
They are never logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from supervisor import alerts, drain, secretspec
from supervisor.dockertypes import EngineError
from supervisor.drain import DrainPolicy, DrainState, Kind
from supervisor.drainer import DrainApi, Drainer
from supervisor.logs import BoundLogger
from supervisor.restarts import ServiceStatus, Step
from supervisor.roles import Role
from supervisor.serverapi import ApiError, ExecTransport, Failure, ServerApi, ServerStatus
from supervisor.store import Service
from supervisor.supervision import Supervision
from supervisor.tallies import PlayerCount
from supervisor.updown import StackError
from supervisor.worker import ServiceWorker

__all__ = ["Disruption", "DrainRequest", "Drains"]

Reply = dict[str, Any]

# How long a control request waits for its drain to settle (act, or wait for players):
# inside the control socket's 10 s per request.
SETTLE_S = 9.0


class Disruption(StrEnum):
    RESTART = "restart"  # `restart server`
    ROTATE = "rotate"  # `secrets rotate`: new values, then the server (and the manager)
    STOP = "stop"  # `down`: the CLI stops and removes the stack once the drain acted
    SCHEDULED = "scheduled"  # a `[schedule] restart` window
    UPDATE = "update"  # an update of the game (supervisor/updates.py)


# What the warnings say the server will do ({action} in `[drain] message`).
_WORDS = {
    Disruption.RESTART: "restart",
    Disruption.ROTATE: "restart",
    Disruption.STOP: "stop",
    Disruption.SCHEDULED: "restart",
    Disruption.UPDATE: "update",
}


@dataclass(frozen=True, slots=True)
class DrainRequest:
    what: Disruption
    names: tuple[str, ...] = ()  # ROTATE: the secrets
    only_if_empty: bool = False  # SCHEDULED: skip the window when players stay
    version: str | None = None  # UPDATE: the version
    source: str = "cli"  # UPDATE: what asked for it (update.Source)

    def to_json(self) -> dict[str, Any]:
        return {
            "what": self.what.value,
            "names": list(self.names),
            "only_if_empty": self.only_if_empty,
            "version": self.version,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Any) -> DrainRequest | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                Disruption(data["what"]),
                tuple(str(n) for n in data.get("names") or ()),
                bool(data.get("only_if_empty", False)),
                None if data.get("version") is None else str(data["version"]),
                str(data.get("source") or "cli"),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class Pending:
    request: DrainRequest
    state: DrainState

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request.to_json(), "state": self.state.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> Pending | None:
        if not isinstance(data, dict):
            return None
        request = DrainRequest.from_json(data.get("request"))
        state = DrainState.from_json(data.get("state"))
        return None if request is None or state is None else cls(request, state)


@dataclass(eq=False)
class _Run:
    """One drive of a drain: when the requester may answer, and what."""

    settled: anyio.Event = field(default_factory=anyio.Event)  # acted, or waits for players
    finished: anyio.Event = field(default_factory=anyio.Event)
    reply: Reply | None = None


def server_up(service: Service | None) -> bool:
    """Players can be on it: running, and healthy (or without a health check)."""
    return (
        service is not None
        and service.container_id is not None
        and service.restart.status is ServiceStatus.RUNNING
        and service.health in (None, "healthy")
    )


class _Gate:
    """The REST API as a drain uses it: not asked while the server is not up (nobody is
    on it: zero players, nothing to save), and a server image without curl counts as
    empty (nobody can be warned; waiting could not end before the deadline)."""

    def __init__(
        self,
        api: DrainApi,
        service: Service | None,
        log: BoundLogger,
        seen: Callable[[ServerStatus], None] = lambda status: None,
    ) -> None:
        self.api = api
        self.service = service
        self.log = log
        self.seen = seen  # the server's own answers (the metrics' player count)

    async def status(self) -> ServerStatus:
        if not server_up(self.service):
            self.log.info("the server is not up: nobody to wait for")
            return ServerStatus(False, 0, 0, "")
        try:
            answer = await self.api.status()
        except ApiError as err:
            if err.failure in (Failure.NO_CURL, Failure.NO_CREDENTIALS):
                self.log.warning(
                    "the drain cannot ask the server; acting at once",
                    extra={"failure": err.failure.value, "error": err.detail},
                )
                return ServerStatus(True, 0, 0, "")
            raise
        self.seen(answer)
        return answer

    async def broadcast(self, message: str) -> None:
        if server_up(self.service):  # nobody on a stopped server hears it
            await self.api.broadcast(message)

    async def save(self) -> None:
        if server_up(self.service):
            await self.api.save()


class Drains:
    def __init__(
        self,
        sup: Supervision,
        workers: Mapping[str, ServiceWorker],
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        wait: Callable[[float, anyio.Event], Awaitable[None]] | None = None,
        api: DrainApi | None = None,
        hold: Callable[[], None] = lambda: None,
    ) -> None:
        """`sleep` (until a schedule window), `wait` (the drainer's) and `api` are the
        tests'; by default the real clock's and the server's REST API through the engine."""
        self.sup = sup
        self.workers = workers
        self.log = sup.log.bind(component="drain")
        self._sleep = sleep
        self._wait = wait
        self._hold = hold  # `down`'s drain acted: the daemon stands aside (daemon.py)
        # UPDATE acted: (version, source) -> the reply (supervisor/updates.py; daemon.py).
        self.on_update: Callable[[str | None, str], Awaitable[Reply]] | None = None
        self.service = sup.services.get(Role.SERVER)
        service = self.service
        transport = ExecTransport(
            sup.engine, lambda: service.container_id if service is not None else None
        )
        self.api = ServerApi(transport, self._credentials, sup.clock)
        self.gate = _Gate(api or self.api, service, self.log, self._players_seen)
        self.pending: Pending | None = None
        self.drainer: Drainer | None = None
        self.last: dict[str, Any] | None = None  # how the last drain ended
        self.next_window: float | None = None
        self._group: TaskGroup | None = None
        self._run: _Run | None = None
        self._saved: Any = None  # load's find, for run
        self._told: DrainState | None = None  # the drain the operator was told of (alerts)

    # --- the daemon's side ----------------------------------------------------------------

    def load(self) -> None:
        """The drain a previous daemon left, kept (the first stack pass saves the state
        file before `run` resumes it). With the services' records: Supervision.load."""
        self._saved = self.sup.store.saved_drain()
        resumed = Pending.from_json(self._saved) if self._saved is not None else None
        self.sup.drain_record = None if resumed is None else resumed.to_json()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Resume a drain a previous daemon left (`load`), then follow the schedule,
        until cancelled."""
        async with anyio.create_task_group() as group:
            self._group = group
            saved, self._saved = self._saved, None
            resumed = Pending.from_json(saved) if saved is not None else None
            if resumed is not None and resumed.request.what is Disruption.STOP:
                # The `down` that asked for it is gone with its daemon: not resumed.
                self.log.info("drain for down dropped: the down that asked for it is gone")
                self.sup.drain_record = None
                self.sup.save()
            elif resumed is not None:
                self.log.info(
                    "drain resumed",
                    extra={"action": resumed.request.what.value, "deadline_s": self._left(resumed)},
                )
                self._start(resumed, now=False)
            elif saved is not None:
                self.log.warning("ignoring an unreadable saved drain")
            task_status.started()
            await self._follow_schedule()
            await anyio.sleep_forever()

    def server_exited(self) -> None:
        """The server's container stopped or turned unhealthy (in the worker's turn): a
        pending drain looks at once; nobody is on a stopped server, so it acts (a crash
        is restarted at once anyway). Stopped on purpose (the dashboard's Stop, a person's
        choice) a pending restart is cancelled instead: starting it again would undo it."""
        drainer, pending, service = self.drainer, self.pending, self.service
        if drainer is None or pending is None or service is None:
            return
        judged = service.last_exit
        on_purpose = (
            judged is not None
            and judged.asked
            and service.restart.status is ServiceStatus.STOPPED
            and pending.request.what
            in (Disruption.RESTART, Disruption.SCHEDULED, Disruption.UPDATE)
        )
        if on_purpose:
            self.log.info("drain cancelled: the server was stopped on purpose")
            drainer.cancel()
        else:
            drainer.poll_now()

    def forget_for_shutdown(self) -> None:
        """The daemon stops the stack: the pending drain is cancelled with it."""
        if self.sup.drain_record is not None:
            self.log.info("drain cancelled: the daemon stops the stack")
            self.sup.drain_record = None
            self._tell_cancelled("the supervisor stopped the stack")

    # --- the operator's side --------------------------------------------------------------

    async def begin(self, request: DrainRequest, now: bool = False) -> Reply:
        """Drain for `request` (or act at once with `now`); returns once the action was
        taken or the drain waits for players (at most SETTLE_S): what the operator is told."""
        pending = self.pending
        if pending is not None:
            if pending.request.what is not request.what or pending.request.names != request.names:
                return {
                    "ok": False,
                    "error": f"a drained {self._describe(pending)} is pending; "
                    "run `hyos-supervisor cancel` first, or wait for it",
                }
            if not now or self.drainer is None:
                return {"ok": True, "message": f"joined the pending {self._describe(pending)}"}
            self.drainer.hurry()
            return await self._answer(self._run, finished=True)
        state = drain.start(_WORDS[request.what], self.sup.clock(), self._policy(request))
        return await self._answer(self._start(Pending(request, state), now=now))

    async def cancel(self) -> Reply:
        if self.pending is None or self.drainer is None:
            return {"ok": False, "error": "no drain is pending"}
        what = self._describe(self.pending)
        run = self._run
        self.drainer.cancel()
        if run is not None:
            with anyio.move_on_after(SETTLE_S):
                await run.finished.wait()
        return {"ok": True, "message": f"cancelled the pending {what}"}

    def view(self) -> dict[str, Any]:
        """For `status`: the pending drain, the last one's outcome, the next window."""
        now = self.sup.clock()
        found: dict[str, Any] | None = None
        pending = self.pending
        if pending is not None:
            state = (self.drainer.state if self.drainer is not None else None) or pending.state
            policy = self._policy(pending.request)
            warning = drain.next_warning(policy, state)
            found = {
                "action": pending.request.what.value,
                "deadline": None if state.postponed else _iso(state.deadline),
                "deadline_in_s": None if state.postponed else round(max(0.0, state.deadline - now)),
                "postponed": state.postponed,
                "players": state.players,
                "next_warning": None if warning is None else _iso(warning),
                "next_warning_in_s": None if warning is None else round(max(0.0, warning - now)),
            }
        return {
            "drain": found,
            "last_drain": self.last,
            "next_window": None if self.next_window is None else _iso(self.next_window),
            "next_window_in_s": (
                None if self.next_window is None else round(max(0.0, self.next_window - now))
            ),
        }

    # --- inside -----------------------------------------------------------------------------

    def _players_seen(self, status: ServerStatus) -> None:
        """Kept for /metrics: the scrape shows the last count, never asks for one."""
        self.sup.tallies.players = PlayerCount(
            status.player_count, status.max_players, self.sup.clock()
        )

    def _policy(self, request: DrainRequest) -> DrainPolicy:
        return self.sup.settings.drain.policy(request.only_if_empty)

    def _describe(self, pending: Pending) -> str:
        return f"{pending.request.what.value} of the {Role.SERVER} ({self._left(pending)} s left)"

    def _left(self, pending: Pending) -> int:
        return round(max(0.0, pending.state.deadline - self.sup.clock()))

    def _start(self, pending: Pending, *, now: bool) -> _Run:
        assert self._group is not None, "Drains.run is not running"
        run = self._run = _Run()
        self.pending = pending
        self._record(pending.state)
        self.drainer = Drainer(
            self._policy(pending.request),
            self.gate,
            self.sup.clock,
            self.log,
            persist=lambda state: self._persisted(run, state),
            wait=self._wait,
        )
        if now:
            self.drainer.hurry()
        self._group.start_soon(self._drive, pending, self.drainer, run)
        return run

    async def _answer(self, run: _Run | None, *, finished: bool = False) -> Reply:
        if run is None:
            return {"ok": False, "error": "no drain is pending"}
        with anyio.move_on_after(SETTLE_S):
            await (run.finished if finished else run.settled).wait()
        if run.reply is not None:
            return run.reply
        pending = self.pending
        if pending is None:
            return {"ok": True, "message": "under way; `hyos-supervisor status` shows it"}
        state = self.drainer.state if self.drainer is not None else None
        players = "unknown" if state is None or state.players is None else str(state.players)
        return {
            "ok": True,
            "pending": True,
            "message": f"draining: the {pending.request.what.value} of the {Role.SERVER} waits "
            f"for an empty server, at most {self._left(pending)} s (players online: {players}); "
            "`hyos-supervisor cancel` cancels it",
        }

    def _persisted(self, run: _Run, state: DrainState) -> None:
        """After each step: kept in the state file; the requester hears once it waits."""
        if self.pending is not None:
            self.pending = replace(self.pending, state=state)
        self._record(state)
        decision = drain.decide(
            self.drainer.policy if self.drainer else DrainPolicy(), state, self.sup.clock()
        )
        if decision.kind is not Kind.ACT:
            run.settled.set()
        if decision.kind not in (Kind.ACT, Kind.SKIP, Kind.CANCELLED) and not state.cancelled:
            # It waits for players: worth a message (one per drain: keyed by its start).
            self._told = state
            self.sup.alerts.emit(
                alerts.drain_started(
                    self.sup.settings.stack,
                    self.sup.clock(),
                    action=state.action,
                    started=state.started,
                    deadline=state.deadline,
                )
            )

    def _tell_cancelled(self, by: str) -> None:
        told, self._told = self._told, None
        if told is not None:
            self.sup.alerts.emit(
                alerts.drain_cancelled(
                    self.sup.settings.stack,
                    self.sup.clock(),
                    action=told.action,
                    started=told.started,
                    by=by,
                )
            )

    def _record(self, state: DrainState) -> None:
        if self.pending is not None:
            self.sup.drain_record = Pending(self.pending.request, state).to_json()
            self.sup.save()

    async def _drive(self, pending: Pending, drainer: Drainer, run: _Run) -> None:
        request = pending.request
        reply: Reply
        try:
            kind = await drainer.run(pending.state)
            if kind is Kind.ACT:
                reply = await self._act(request)
            elif kind is Kind.SKIP:
                reply = {"ok": True, "message": "skipped: players stayed past max_wait"}
            else:
                reply = {"ok": False, "error": f"the {request.what.value} was cancelled"}
                self._tell_cancelled("cancelled")
            outcome = kind.value
        except Exception as err:  # never the daemon's end
            self.sup.unexpected("a drain", err, action=request.what.value)
            reply = {"ok": False, "error": f"internal error: {err!r}"}
            outcome = "failed"
        # (Not on cancellation: a daemon leaving the stack running keeps it for the next.)
        self.pending = None
        self.drainer = None
        self._told = None
        self.sup.drain_record = None
        self.sup.save()
        self.last = {"action": request.what.value, "outcome": outcome, "at": _iso(self.sup.clock())}
        self.sup.tallies.drain_ended(outcome)
        run.reply = reply
        run.settled.set()
        run.finished.set()

    async def _act(self, request: DrainRequest) -> Reply:
        server = self.workers.get(Role.SERVER)
        if server is None:
            return {"ok": False, "error": f"no {Role.SERVER} in this stack"}
        what = request.what
        if what is Disruption.RESTART:
            await server.call(server.restart_for_operator)  # in its turn, as every change
            return {"ok": True, "message": f"{Role.SERVER}: state cleared, restarting"}
        if what is Disruption.ROTATE:
            return await self._rotate(request.names, server)
        if what is Disruption.UPDATE:
            if self.on_update is None:
                return {"ok": False, "error": "updates are not wired in this daemon"}
            return await self.on_update(request.version, request.source)
        if what is Disruption.SCHEDULED:
            if self.service is None or self.service.restart.status is not ServiceStatus.RUNNING:
                self.log.info("scheduled restart skipped: the server is not running")
                return {"ok": True, "message": "skipped: the server is not running"}
            await server.ask(Step.RESTART, "scheduled restart", cause="schedule")
            self.log.info("scheduled restart issued")
            return {"ok": True, "message": f"{Role.SERVER}: restarting (scheduled)"}
        self._hold()
        return {"ok": True, "message": f"drained: the {Role.SERVER} saved the world"}

    async def _rotate(self, names: tuple[str, ...], server: ServiceWorker) -> Reply:
        """New values, then the server restarted (the manager follows once it is healthy)."""
        async with self.sup.prepare_lock:
            try:
                await self.sup.ops.rotate(names)
                self.sup.crashes.secrets_changed()  # crash reports read the new values
            except (StackError, EngineError) as err:
                self.log.error("secrets rotation failed", extra={"error": str(err)})
                return {"ok": False, "error": str(err)}
        self.sup.log.info("secrets rotated", extra={"names": list(names)})
        if server.service.container_id is not None:
            await server.ask(
                Step.RESTART, "secrets rotated", then=self._manager_follows, cause="rotation"
            )
        return {
            "ok": True,
            "message": f"rotated {', '.join(names)}; restarting {Role.SERVER}, then {Role.MANAGER}",
        }

    def _manager_follows(self) -> None:
        self.sup.manager_after_server = True

    async def _credentials(self) -> tuple[str, str]:
        """The API client's id and secret, from the server container's secret files."""
        container_id = self.service.container_id if self.service is not None else None
        if container_id is None:
            raise ApiError(Failure.UNREACHABLE, f"the {Role.SERVER} is not running")
        values = []
        for name in ("api_client_id", "api_client_secret"):
            try:
                raw = await self.sup.engine.read_file(container_id, secretspec.BY_NAME[name].path)
            except EngineError as err:
                raise ApiError(Failure.UNREACHABLE, str(err)) from None
            if raw is None or not raw.strip():
                raise ApiError(Failure.NO_CREDENTIALS, f"no {name} on the server's volume")
            values.append(raw.decode(errors="replace").strip())
        return values[0], values[1]

    async def _follow_schedule(self) -> None:
        """`[schedule] restart`: each window starts a drained restart (skipped while another
        drain is pending; a window the daemon was not running for is not made up)."""
        settings = self.sup.settings.schedule
        if settings.restart is None:
            return
        after = self.sup.clock()
        while True:
            window = settings.restart.next_window(after, settings.zone)
            self.next_window = window
            self.log.info("next scheduled restart", extra={"at": _iso(window)})
            await self._sleep(max(0.0, window - self.sup.clock()))
            after = max(window, self.sup.clock())
            if self.pending is not None:
                self.log.info("scheduled restart skipped: a drain is pending")
                continue
            self.log.info("scheduled restart window")
            request = DrainRequest(Disruption.SCHEDULED, only_if_empty=settings.only_if_empty)
            await self.begin(request)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
