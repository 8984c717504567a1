"""A service's worker reconciles level-triggered: the state machine's pending step is
carried out once due, never before, and the worker says how long until it is. The fake
engine records the calls (tests/fakeengine.py); a fake wall clock stands in for time."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from supervisor import restarts
from supervisor.dockertypes import EngineError
from supervisor.ops import Operations
from supervisor.restarts import ExitKind, ServiceStatus, Step
from supervisor.worker import ServiceWorker
from tests.fakeclock import FakeClock
from tests.fakeengine import FakeEngine
from tests.unitkit import fake_supervision, lone_worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine() -> FakeEngine:
    engine = FakeEngine()
    engine.add_container("t-server", container_id="c1")
    return engine


@pytest.fixture
def worker(tmp_path: Path, engine: FakeEngine, clock: FakeClock) -> ServiceWorker:
    return lone_worker(fake_supervision(tmp_path, engine, clock), container_id="c1")


async def test_a_backoff_start_waits_until_due_then_runs_once(
    worker: ServiceWorker, engine: FakeEngine, clock: FakeClock
) -> None:
    state = restarts.on_started(restarts.ServiceRestartState(), clock.now)
    worker.service.restart, decision = restarts.on_exit(
        state, ExitKind.CRASH, clock.now, worker.sup.policy
    )
    assert await worker.step_if_due() == pytest.approx(decision.backoff_s)
    clock.advance(decision.backoff_s / 2)
    assert await worker.step_if_due() == pytest.approx(decision.backoff_s / 2)
    assert engine.calls == []  # not before it is due
    clock.advance(decision.backoff_s / 2)
    assert await worker.step_if_due() is None
    assert engine.calls == [("start", "c1")]
    assert worker.service.restart.pending is None
    assert await worker.step_if_due() is None  # carried out once
    assert engine.calls == [("start", "c1")]
    assert not worker.service.busy


async def test_a_restart_step_stops_as_ours_then_starts(
    worker: ServiceWorker, engine: FakeEngine
) -> None:
    worker.request(Step.RESTART, "operator")
    assert await worker.step_if_due() is None
    assert engine.calls == [("stop", "c1"), ("start", "c1")]
    assert "c1" in worker.service.stop_requested  # its exit will not count as a crash
    assert worker.sup.manager_after_server  # the manager follows a restarted server


async def test_nothing_is_carried_out_while_stopping(
    worker: ServiceWorker, engine: FakeEngine
) -> None:
    worker.request(Step.START, "operator")
    worker.sup.stopping = True
    assert await worker.step_if_due() is None
    assert engine.calls == []
    assert worker.service.restart.pending is not None  # shutdown cancels it


async def test_a_removed_container_asks_for_a_stack_pass_instead(
    worker: ServiceWorker, engine: FakeEngine
) -> None:
    passes: list[bool] = []
    worker.request_pass = lambda: passes.append(True)
    worker.request(Step.START, "operator")
    worker.service.container_id = None
    assert await worker.step_if_due() is None
    assert engine.calls == []
    assert passes == [True]
    assert worker.service.restart.pending is None
    assert worker.service.restart.status is ServiceStatus.STOPPED


async def test_a_nap_ends_as_soon_as_the_engine_is_back(
    worker: ServiceWorker, engine: FakeEngine
) -> None:
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


async def test_a_refused_start_waits_through_the_daemons_nap(
    worker: ServiceWorker, engine: FakeEngine
) -> None:
    """Transient refusals are retried, each wait taken through `nap` (which the engine's
    return cuts short); the start then goes through."""
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)

    engine.refuse("start", EngineError("Cannot connect to the Docker daemon"), times=2)
    ops = Operations(engine, worker.sup.settings, worker.log, nap=nap)
    assert await ops.start("server", "c1") == "c1"
    assert engine.calls == [("start", "c1")] * 3
    assert naps == [0.5, 1.0]


async def test_a_plan_made_while_a_step_runs_is_stale_once_it_ended(
    worker: ServiceWorker, engine: FakeEngine
) -> None:
    """A stack pass planned mid-step (seen in CI: while a start replaced a container the
    engine could no longer start) must not be adopted after it: it would put the replaced
    container's id back into the record. The pass compares generations."""
    seen_mid_step: list[int] = []
    start = engine.start

    async def start_and_look(container_id: str) -> None:
        seen_mid_step.append(worker.generation)  # what a pass planning now would record
        await start(container_id)

    engine.start = start_and_look  # type: ignore[method-assign]
    worker.request(Step.START, "operator")
    await worker.step_if_due()
    assert seen_mid_step and worker.generation != seen_mid_step[0]


async def test_settled_waits_only_for_a_step_due_soon_or_under_way(
    worker: ServiceWorker, engine: FakeEngine, clock: FakeClock
) -> None:
    """A crash report's helper container waits (`settled`) for the restart a decision left
    pending when it is due within `ahead` seconds, or already under way; never otherwise
    (it runs first, before a restart due later)."""
    with anyio.fail_after(1):
        await worker.settled(5, 0.7)  # nothing pending: at once
    worker.request(Step.START, "operator")
    worker.service.restart = _due(worker, clock.now + 1.0)
    with anyio.fail_after(1):
        await worker.settled(5, 0.7)  # due in 1 s (the default backoff): the helper first
    worker.service.restart = _due(worker, clock.now + 0.5)
    waited: list[bool] = []

    async def helper() -> None:
        await worker.settled(5, 0.7)
        waited.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(helper)
        await anyio.wait_all_tasks_blocked()
        assert waited == []  # due in 0.5 s: the helper waits for the step
        clock.advance(0.5)
        assert await worker.step_if_due() is None
        await anyio.wait_all_tasks_blocked()
        assert waited == [True] and engine.calls == [("start", "c1")]
    worker.service.busy = True  # a step under way (its pending already taken)
    started = anyio.current_time()
    await worker.settled(0.1, 0.7)  # waits for it, up to the limit
    assert anyio.current_time() - started >= 0.09


def _due(worker: ServiceWorker, at: float) -> restarts.ServiceRestartState:
    from dataclasses import replace

    state = worker.service.restart
    assert state.pending is not None
    return replace(state, pending=replace(state.pending, due_at=at))
