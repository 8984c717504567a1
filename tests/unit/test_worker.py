"""A service's worker reconciles level-triggered: the state machine's pending step is
carried out once due, never before, and the worker says how long until it is. A stub
engine records the calls; a fake wall clock stands in for time."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from supervisor import restarts
from supervisor.logs import bind
from supervisor.notify import Notifier
from supervisor.restarts import ExitKind, ServiceStatus, Step
from supervisor.settings import load_settings
from supervisor.store import StateStore
from supervisor.supervision import Supervision
from supervisor.worker import ServiceWorker

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0


class RecordingEngine:
    """Only the calls a step makes; each one is recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def start(self, container_id: str) -> None:
        self.calls.append(("start", container_id))

    async def stop(self, container_id: str, timeout: int) -> None:
        self.calls.append(("stop", container_id))


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in list(os.environ):
        if name.startswith("HYOS_"):
            monkeypatch.delenv(name, raising=False)
    settings = load_settings(state_dir=str(tmp_path))
    sup = Supervision(
        settings,
        RecordingEngine(),  # type: ignore[arg-type]
        Notifier(environ={}),
        StateStore(tmp_path / "state.json"),
        bind(logging.getLogger("test"), stack="t"),
        FakeClock(),
    )
    worker = ServiceWorker(sup, sup.services["server"])
    worker.service.container_id = "c1"
    return worker


async def test_a_backoff_start_waits_until_due_then_runs_once(worker: Any) -> None:
    clock, engine = worker.sup.clock, worker.sup.engine
    state = restarts.on_started(restarts.ServiceRestartState(), clock.now)
    worker.service.restart, decision = restarts.on_exit(
        state, ExitKind.CRASH, clock.now, worker.sup.policy
    )
    assert await worker.reconcile() == pytest.approx(decision.backoff_s)
    clock.now += decision.backoff_s / 2
    assert await worker.reconcile() == pytest.approx(decision.backoff_s / 2)
    assert engine.calls == []  # not before it is due
    clock.now += decision.backoff_s / 2
    assert await worker.reconcile() is None
    assert engine.calls == [("start", "c1")]
    assert worker.service.restart.pending is None
    assert await worker.reconcile() is None  # carried out once
    assert engine.calls == [("start", "c1")]
    assert not worker.service.busy


async def test_a_restart_step_stops_as_ours_then_starts(worker: Any) -> None:
    worker.request(Step.RESTART, "operator")
    assert await worker.reconcile() is None
    assert worker.sup.engine.calls == [("stop", "c1"), ("start", "c1")]
    assert "c1" in worker.service.stop_requested  # its exit will not count as a crash
    assert worker.sup.manager_after_server  # the manager follows a restarted server


async def test_nothing_is_carried_out_while_stopping(worker: Any) -> None:
    worker.request(Step.START, "operator")
    worker.sup.stopping = True
    assert await worker.reconcile() is None
    assert worker.sup.engine.calls == []
    assert worker.service.restart.pending is not None  # shutdown cancels it


async def test_a_removed_container_asks_for_a_stack_pass_instead(worker: Any) -> None:
    passes: list[bool] = []
    worker.sup.request_pass = lambda: passes.append(True)
    worker.request(Step.START, "operator")
    worker.service.container_id = None
    assert await worker.reconcile() is None
    assert worker.sup.engine.calls == []
    assert passes == [True]
    assert worker.service.restart.pending is None
    assert worker.service.restart.status is ServiceStatus.STOPPED
