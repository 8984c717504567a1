"""One writer per service: whatever changes a service's record (the operator's `restart`,
a secrets rotation, the login follower, the FinishedAt stamp) is done in its worker's turn,
and the worker's inbox coalesces wake-ups and holds at most INBOX_BOUND items. The fake
engine and the fake clock stand in for Docker and time."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from supervisor import hyos, restarts
from supervisor.commands import Commands
from supervisor.dockertypes import ContainerState, EngineEvent
from supervisor.drains import Drains
from supervisor.restarts import ServiceRestartState, ServiceStatus, Step
from supervisor.worker import INBOX_BOUND, ServiceWorker
from tests.fakeengine import FakeEngine
from tests.unitkit import fake_supervision, lone_worker

pytestmark = pytest.mark.anyio

CID = "c1"


@dataclass
class Stack:
    engine: FakeEngine
    worker: ServiceWorker
    passes: list[bool] = field(default_factory=list)
    followed: list[bool] = field(default_factory=list)
    drains: Drains | None = None

    def commands(self) -> Commands:
        assert self.drains is not None, "the `running` fixture starts the drains"
        return Commands(self.worker.sup, {"server": self.worker}, self.drains)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """The server's worker (not running yet), its container running."""
    engine = FakeEngine()
    engine.add_container("t-server", container_id=CID, state=ContainerState("running", True))
    sup = fake_supervision(tmp_path, engine)
    passes: list[bool] = []
    followed: list[bool] = []
    worker = lone_worker(
        sup,
        container_id=CID,
        request_pass=lambda: passes.append(True),
        follow_server=lambda: followed.append(True),
    )
    return Stack(engine, worker, passes, followed)


@pytest.fixture
async def running(stack: Stack) -> AsyncIterator[Stack]:
    async with anyio.create_task_group() as tg:
        await tg.start(stack.worker.run)
        stack.drains = Drains(stack.worker.sup, {"server": stack.worker})
        await tg.start(stack.drains.run)
        yield stack
        tg.cancel_scope.cancel()


async def nothing() -> None:
    pass


async def settled(worker: ServiceWorker) -> None:
    """Everything queued before now has been taken (first in, first out)."""
    with anyio.fail_after(5):
        await worker.call(nothing)


class Busy:
    """A job that holds the worker's turn until released (a long step of ours)."""

    def __init__(self) -> None:
        self.started, self.release = anyio.Event(), anyio.Event()

    async def __call__(self) -> None:
        self.started.set()
        await self.release.wait()

    async def hold(self, worker: ServiceWorker) -> None:
        worker.submit(self)
        with anyio.fail_after(5):
            await self.started.wait()


# --- the inbox ------------------------------------------------------------------------------


async def test_wake_ups_in_a_row_are_one(stack: Stack) -> None:
    worker = stack.worker
    for _ in range(5):
        worker.wake()
    assert worker.inbox.queued() == 1


async def test_a_wake_up_behind_another_item_takes_no_room(stack: Stack) -> None:
    """Every turn ends with a look: a wake-up behind any item would only look twice."""
    worker = stack.worker
    worker.submit(nothing)
    worker.wake()
    worker.wake()
    assert worker.inbox.queued() == 1


async def test_a_wake_up_is_queued_again_once_the_last_one_was_taken(stack: Stack) -> None:
    worker = stack.worker
    worker.wake()
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await settled(worker)
        tg.cancel_scope.cancel()
    assert worker.inbox.queued() == 0
    worker.wake()
    worker.wake()
    assert worker.inbox.queued() == 1  # a new wake-up: the first was taken


async def test_a_wake_up_during_a_turn_is_the_turns_own_look(running: Stack) -> None:
    """From outside, during a turn: nothing is queued, and the look that ends the turn
    carries out what the wake-up was for."""
    worker, engine = running.worker, running.engine
    busy = Busy()
    await busy.hold(worker)
    engine.containers[CID].state = ContainerState("exited", False)
    worker.service.restart = restarts.request(
        worker.service.restart, Step.START, worker.sup.clock(), "test"
    )
    worker.wake()
    assert worker.inbox.queued() == 0
    busy.release.set()
    await settled(worker)
    assert ("start", CID) in engine.calls
    assert worker.service.restart.pending is None


async def test_a_step_requested_in_a_turn_is_carried_out_by_that_turns_look(
    running: Stack,
) -> None:
    """No wake-up is queued from inside a turn (the look follows), and none is needed."""
    worker, engine = running.worker, running.engine

    async def ask() -> None:
        worker.request(Step.START, "operator")
        assert worker.inbox.queued() == 0  # no wake-up queued behind us

    engine.containers[CID].state = ContainerState("exited", False)
    await worker.call(ask)
    with anyio.fail_after(5):
        while ("start", CID) not in engine.calls:
            await anyio.sleep(0.01)
    assert worker.service.restart.pending is None


async def test_the_inbox_bound_events_are_counted_once_and_a_pass_looks_instead(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A full inbox: an event or job that does not fit is not queued (the sender is the
    event feed or a hook, which must not block); one warning, and the worker asks for a
    stack pass on its next turn, which reads the world fresh."""
    caplog.set_level(logging.WARNING, logger="test")
    worker = stack.worker
    for _ in range(INBOX_BOUND):
        worker.submit(nothing)
    assert worker.inbox.queued() == INBOX_BOUND
    worker.observe(EngineEvent("die", CID, time_nano=1, exit_code=1))
    worker.observe(EngineEvent("start", CID, time_nano=2))
    worker.wake()
    assert worker.inbox.queued() == INBOX_BOUND  # nothing beyond the bound
    full = [r for r in caplog.records if "inbox is full" in r.getMessage()]
    assert len(full) == 1  # once per overflow, not per lost item
    assert stack.passes == []
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await settled(worker)
        tg.cancel_scope.cancel()
    assert stack.passes == [True]  # once, on the first turn after the loss
    assert worker.service.restart.restart_count == 0  # the lost die was not made up


async def test_a_call_waits_for_room_and_is_never_dropped(stack: Stack) -> None:
    worker = stack.worker
    for _ in range(INBOX_BOUND):
        worker.submit(nothing)
    answered: list[str] = []

    async def answer() -> str:
        return "taken"

    async def caller() -> None:
        answered.append(await worker.call(answer))

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        assert answered == [] and worker.inbox.queued() == INBOX_BOUND  # waiting for room
        await tg.start(worker.run)
        with anyio.fail_after(5):
            while not answered:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert answered == ["taken"]
    assert stack.passes == []  # nothing was lost


# --- writers from outside go through the worker ---------------------------------------------


async def test_the_operators_restart_changes_the_record_only_in_the_workers_turn(
    running: Stack,
) -> None:
    worker = running.worker
    worker.service.restart = ServiceRestartState(
        status=ServiceStatus.CRASH_LOOP, crash_times=(1.0, 2.0, 3.0), restart_count=3
    )
    held = worker.service.restart
    commands = running.commands()
    busy = Busy()
    await busy.hold(worker)
    replies: list[dict[str, object]] = []

    async def operator() -> None:
        replies.append(await commands.answer({"command": "restart", "service": "server"}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(operator)
        await anyio.wait_all_tasks_blocked()
        assert replies == [] and worker.service.restart is held  # not from the control task
        busy.release.set()
    assert replies == [{"ok": True, "message": "server: state cleared, restarting"}]
    with anyio.fail_after(5):
        while ("start", CID) not in running.engine.calls:
            await anyio.sleep(0.01)
    assert running.engine.calls[-2:] == [("stop", CID), ("start", CID)]  # it was running
    assert worker.service.restart.status is not ServiceStatus.CRASH_LOOP
    assert worker.service.restart.crash_times == ()


async def test_the_operators_restart_of_a_removed_container_asks_for_a_pass(
    running: Stack,
) -> None:
    worker = running.worker
    worker.service.container_id = None
    reply = await running.commands().answer({"command": "restart", "service": "server"})
    assert reply["ok"] is True
    assert running.passes == [True]
    assert running.engine.calls == []


async def test_a_rotation_asks_the_server_for_a_restart_in_its_turn(running: Stack) -> None:
    worker = running.worker
    busy = Busy()
    await busy.hold(worker)
    commands = running.commands()
    replies: list[dict[str, object]] = []

    async def rotate_one() -> None:
        async def rotated(names: tuple[str, ...]) -> None:
            pass

        worker.sup.ops.rotate = rotated  # type: ignore[method-assign]
        replies.append(await commands.answer({"command": "rotate", "names": ["api"]}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(rotate_one)
        await anyio.wait_all_tasks_blocked()
        assert replies == [] and not worker.sup.manager_after_server
        assert worker.service.restart.pending is None
        busy.release.set()
    assert replies and replies[0]["ok"] is True
    assert worker.sup.manager_after_server  # the manager follows the restarted server


async def test_the_login_follower_hands_what_it_reads_to_the_worker(stack: Stack) -> None:
    """The follower reads auth.json in its own task; the record changes only when the
    worker takes the job (once per change, however many lines mention the login)."""
    worker, engine = stack.worker, stack.engine
    pending = {"status": "pending", "auth_url": "https://x/device", "auth_code": "ABCD"}
    engine.files[(CID, hyos.AUTH_FILE)] = json.dumps(pending).encode()
    engine.containers[CID].logs = ["device login: visit the URL"] * 3
    async with anyio.create_task_group() as helpers:
        worker.login.follow(helpers, CID, (CID, None))
    # The follower is done (its log ended); nothing was written by it.
    assert worker.service.login is None
    assert worker.inbox.queued() == 2  # one login read (unchanged lines coalesced) + its end
    worker.service.login_watch = (CID, None)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await settled(worker)
        tg.cancel_scope.cancel()
    assert worker.service.login is not None and worker.service.login.waiting
    assert worker.service.login.code == "ABCD"
    assert worker.service.login_watch is None  # its end, taken in turn


async def test_the_engines_finished_at_is_stamped_in_the_workers_turn(running: Stack) -> None:
    """After a `die`, the engine's FinishedAt is read by a helper task and written by the
    worker, only if no later exit was accounted meanwhile."""
    worker, engine = running.worker, running.engine
    engine.exit(CID, 1)
    finished = engine.containers[CID].state.finished_at
    assert finished is not None
    event = EngineEvent("die", CID, time_nano=int(finished.timestamp() * 1e9) - 5, exit_code=1)
    worker.observe(event)
    with anyio.fail_after(5):
        while worker.service.last_finished_at != finished:
            await settled(worker)
    assert worker.service.restart.crash_times  # the crash was accounted (once)
