"""The daemon's side of the dashboard's stops: the guard's hook marks the run it ends and
hears Docker's answer; the worker consumes or clears the mark (supervisor.stopmarks)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from supervisor.dashboard import Dashboard
from supervisor.dockertypes import EngineEvent
from supervisor.guard_rules import Allow
from supervisor.logs import bind
from supervisor.notify import Notifier
from supervisor.restarts import Step
from supervisor.settings import load_settings
from supervisor.store import StateStore
from supervisor.supervision import Supervision
from supervisor.worker import ServiceWorker

CID = "c" * 64


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Engine:
    async def start(self, container_id: str) -> None:
        pass

    async def stop(self, container_id: str, timeout: int) -> None:
        pass


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Dashboard, ServiceWorker]:
    for name in list(os.environ):
        if name.startswith("HYOS_"):
            monkeypatch.delenv(name, raising=False)
    settings_ = load_settings(state_dir=str(tmp_path))
    sup = Supervision(
        settings_,
        Engine(),  # type: ignore[arg-type]
        Notifier(environ={}),
        StateStore(tmp_path / "state.json"),
        bind(logging.getLogger("test"), stack="t"),
        Clock(),
    )
    worker = ServiceWorker(sup, sup.services["server"])
    worker.service.container_id = CID
    return Dashboard(sup, {"server": worker}), worker


def _event(action: str, at: float, exit_code: int | None = None) -> EngineEvent:
    return EngineEvent(action, CID, time_nano=int(at * 1e9), exit_code=exit_code)


def _allowed(rule: str) -> Allow:
    return Allow(rule, f"/containers/{CID}/{rule.split('-')[1]}", container_id=CID)


@pytest.mark.parametrize(("rule", "answer"), [("container-stop", 304), ("container-restart", 204)])
@pytest.mark.anyio
async def test_a_dashboard_stop_that_stopped_nothing_leaves_no_mark(
    daemon: tuple[Dashboard, ServiceWorker], rule: str, answer: int
) -> None:
    """The reproducer: a stop of a stopped server (304), or a restart of one (Docker only
    starts it), then a start, then `docker kill`: the kill is a crash, restarted. On
    c7d2e34 the mark swallowed it ("stopped by the supervisor (exit 137)", decision none)."""
    dashboard, worker = daemon
    clock: Any = worker.sup.clock
    await worker._on_event(_event("start", clock.now - 5))
    answered = dashboard.on_allowed(_allowed("container-stop"))  # the server is running
    clock.now += 1
    await worker._on_event(_event("die", clock.now, 0))
    if answered is not None:  # c7d2e34's hook heard no answer
        answered(204)
    assert worker.service.restart.pending is None  # asked for: not restarted
    clock.now += 1
    answered = dashboard.on_allowed(_allowed(rule))  # the server is stopped now
    if answered is not None:
        answered(answer)
    clock.now += 1
    await worker._on_event(_event("start", clock.now))
    clock.now += 1
    await worker._on_event(_event("die", clock.now, 137))
    assert not worker.service.stop_requested
    pending = worker.service.restart.pending
    assert pending is not None and pending.step is Step.START, worker.service.restart


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
