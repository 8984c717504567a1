"""What the unit tests of the daemon's middle layer build the same way: a `Supervision`
on the fake engine and a fake clock (no Docker, no sockets), and a lone service worker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from supervisor.dockertypes import EngineEvent
from supervisor.logs import bind
from supervisor.notify import Notifier
from supervisor.settings import load_settings
from supervisor.store import StateStore
from supervisor.supervision import Supervision
from supervisor.worker import ServiceWorker
from tests.fakeclock import FakeClock
from tests.fakeengine import FakeEngine


def fake_supervision(
    tmp_path: Path, engine: FakeEngine, clock: FakeClock | None = None, *, stack: str = "t"
) -> Supervision:
    """Default settings with the state under `tmp_path`, no sd_notify, a test logger."""
    return Supervision(
        load_settings(state_dir=str(tmp_path)),
        engine,
        Notifier(environ={}),
        StateStore(tmp_path / "state.json"),
        bind(logging.getLogger("test"), stack=stack),
        clock or FakeClock(),
    )


def lone_worker(
    sup: Supervision,
    role: str = "server",
    container_id: str | None = None,
    *,
    request_pass: Callable[[], None] = lambda: None,
    follow_server: Callable[[], None] = lambda: None,
) -> ServiceWorker:
    """One service's worker (not running yet), without stack passes or a manager to follow."""
    worker = ServiceWorker(
        sup, sup.services[role], request_pass=request_pass, follow_server=follow_server
    )
    if container_id is not None:
        worker.service.container_id = container_id
    return worker


SERVER_ID = "c1"


def engine_with_server(container_id: str = SERVER_ID) -> FakeEngine:
    """A fake engine holding the stack's server container (created, not started)."""
    engine = FakeEngine()
    engine.add_container("t-server", container_id=container_id)
    return engine


def server_event(
    action: str, at: float, exit_code: int | None = None, container_id: str = SERVER_ID
) -> EngineEvent:
    """An engine event of the server's container at epoch second `at`."""
    return EngineEvent(action, container_id, int(at * 1e9), name="t-server", exit_code=exit_code)
