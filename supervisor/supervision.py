"""What the daemon's parts share: settings, the engine and its operations, the clock, the
services' records and their store, and the few stack-wide facts (stopping, the manager
owed a restart after the server's). The daemon builds one. It writes only the state file
(`save`); it acts on no container: the workers and the stack passes do."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential

from supervisor import roles
from supervisor.alertsender import Alerts, NoAlerts
from supervisor.crashes import CrashReporter
from supervisor.logs import BoundLogger
from supervisor.notify import Heartbeat, Notifier
from supervisor.ops import Operations
from supervisor.ports import EnginePort
from supervisor.restarts import RestartPolicy, ServiceStatus
from supervisor.roles import Role
from supervisor.settings import Settings
from supervisor.stack import Runtime
from supervisor.store import Service, StateStore, live_view, status_line
from supervisor.tallies import Tallies

HELD = (ServiceStatus.CRASH_LOOP, ServiceStatus.NEEDS_AUTH)


@dataclass(eq=False)
class Supervision:
    settings: Settings
    engine: EnginePort
    notifier: Notifier
    store: StateStore
    log: BoundLogger
    clock: Callable[[], float] = time.time
    services: dict[str, Service] = field(init=False)
    policy: RestartPolicy = field(init=False)
    ops: Operations = field(init=False)
    crashes: CrashReporter = field(init=False)  # crash reports (supervisor/crashes.py)
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    # What the operator is notified of (supervisor/alertsender.py); the daemon sets it.
    alerts: Alerts = field(default_factory=NoAlerts)
    tallies: Tallies = field(default_factory=Tallies)  # what /metrics reads beyond the records
    stopping: bool = False
    manager_after_server: bool = False  # the server was restarted by us; the manager follows
    # An update's rollback failed: the server stays stopped until the operator restored it
    # (supervisor/updates.py); nothing starts it meanwhile.
    update_hold: bool = False
    # The pending drain as the state file keeps it (supervisor/drains.py writes it).
    drain_record: dict[str, Any] | None = None
    runtime: Runtime | None = None  # what the last stack pass found (the guard's directory)
    reconciles: int = 0  # completed stack passes: proof, for `status` and tests, that we looked
    # The prepare step and the stack's shape are changed by one pass or rotation at a time.
    prepare_lock: anyio.Lock = field(default_factory=anyio.Lock)

    # Set (and replaced) whenever the event stream reconnects: the engine is back.
    engine_back: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self.services = {role: Service(role) for role in self.settings.services()}
        self.policy = self.settings.restart.policy()
        self.ops = Operations(
            self.engine,
            self.settings,
            self.log,
            lambda: self.runtime,
            nap=self.nap,
            stopped=lambda role, seconds: self.tallies.stopped(roles.is_game(role), seconds),
        )
        self.crashes = CrashReporter(
            self.engine, self.settings, self.clock, written=self.tallies.crash_report_written
        )

    async def nap(self, seconds: float) -> None:
        """Sleep `seconds`, or until the engine is back, whichever comes first."""
        with anyio.move_on_after(seconds):
            await self.engine_back.wait()

    def announce_engine_back(self) -> None:
        self.engine_back.set()
        self.engine_back = anyio.Event()

    def load(self) -> None:
        self.manager_after_server = self.store.load(self.services, self.log)

    def save(self) -> None:
        try:
            self.store.save(
                self.services, self.manager_after_server, self.clock(), self.drain_record
            )
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

    def server_ready_or_held(self) -> bool:
        server = self.services.get(Role.SERVER)
        return server is None or server.health == "healthy" or server.restart.status in HELD

    def unexpected(self, what: str, err: BaseException, **fields: Any) -> None:
        """An error nobody planned for (a bug, or Docker answering in a way we did not
        expect): one line at ERROR, the traceback at DEBUG. Supervision goes on."""
        self.log.error(
            f"{what} failed unexpectedly; supervision continues",
            extra={"error": repr(err), **fields},
        )
        self.log.debug(f"{what} failed", exc_info=err)


def patiently(retry_on: type[BaseException], first_s: float, cap_s: float) -> AsyncRetrying:
    """Retry forever on `retry_on`, waiting first_s, doubling up to cap_s: the daemon's
    answer to an engine that is away or not ready yet (shutdown cancels it)."""
    return AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        wait=wait_exponential(multiplier=first_s, max=cap_s),
        stop=stop_never,
        reraise=True,
    )
