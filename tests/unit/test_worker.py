"""A service's worker reconciles level-triggered: the state machine's pending step is
carried out once due, never before, and the worker says how long until it is. A stub
engine records the calls; a fake wall clock stands in for time."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import restarts
from supervisor.dockertypes import EngineError
from supervisor.logs import bind
from supervisor.notify import Notifier
from supervisor.ops import Operations
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
        self.refusals = 0  # starts refused (as by an engine that is away) before one works

    async def start(self, container_id: str) -> None:
        self.calls.append(("start", container_id))
        if self.refusals:
            self.refusals -= 1
            raise EngineError("Cannot connect to the Docker daemon")

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


async def test_a_nap_ends_as_soon_as_the_engine_is_back(worker: Any) -> None:
    async with anyio.create_task_group() as tg:
        woke = anyio.Event()

        async def nap() -> None:
            await worker.sup.nap(300)
            woke.set()

        tg.start_soon(nap)
        await anyio.wait_all_tasks_blocked()
        worker.sup.announce_engine_back()
        with anyio.fail_after(5):
            await woke.wait()


async def test_a_refused_start_waits_through_the_daemons_nap(worker: Any) -> None:
    """Transient refusals are retried, each wait taken through `nap` (which the engine's
    return cuts short); the start then goes through."""
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)

    engine = worker.sup.engine
    engine.refusals = 2
    ops = Operations(engine, worker.sup.settings, worker.log, nap=nap)
    assert await ops.start("server", "c1") == "c1"
    assert engine.calls == [("start", "c1")] * 3
    assert naps == [0.5, 1.0]
