"""The daemon's side of the dashboard's stops: the guard's hook has the server's worker mark
the run it ends (in its turn, before the guard forwards) and hears Docker's answer; the
worker consumes or clears the mark (supervisor.stopmarks). The fake engine and the fake
clock stand in for Docker and time; the worker runs its own loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from entrypoint.contract import LABEL_ROLE
from supervisor.dashboard import Dashboard
from supervisor.dockertypes import ContainerState, EngineEvent, ownership_labels
from supervisor.guard import Guard
from supervisor.guard_rules import Allow, Resolution
from supervisor.guard_rules import Policy as GuardPolicy
from supervisor.restarts import Step
from supervisor.worker import ServiceWorker
from tests.fakeclock import FakeClock
from tests.fakeengine import FakeEngine
from tests.unitkit import fake_supervision, lone_worker

pytestmark = pytest.mark.anyio

CID = "c" * 64


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Dashboard, ServiceWorker]]:
    """A dashboard and the server's worker, running, its container `CID` running."""
    engine = FakeEngine()
    engine.add_container("t-server", container_id=CID, state=ContainerState("running", True))
    sup = fake_supervision(tmp_path, engine)
    worker = lone_worker(sup, container_id=CID)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        yield Dashboard(sup, {"server": worker}), worker
        tg.cancel_scope.cancel()


def _event(action: str, at: float, exit_code: int | None = None) -> EngineEvent:
    return EngineEvent(action, CID, time_nano=int(at * 1e9), exit_code=exit_code)


def _allowed(rule: str) -> Allow:
    return Allow(rule, f"/containers/{CID}/{rule.split('-')[1]}", container_id=CID)


async def _settled(worker: ServiceWorker) -> None:
    """Everything queued before now has been taken (the inbox is first in, first out)."""

    async def nothing() -> None:
        pass

    with anyio.fail_after(5):
        await worker.call(nothing)


async def _handled(worker: ServiceWorker, event: EngineEvent) -> None:
    worker.observe(event)
    await _settled(worker)


@pytest.mark.parametrize(("rule", "answer"), [("container-stop", 304), ("container-restart", 204)])
async def test_a_dashboard_stop_that_stopped_nothing_leaves_no_mark(
    daemon: tuple[Dashboard, ServiceWorker], rule: str, answer: int
) -> None:
    """The reproducer: a stop of a stopped server (304), or a restart of one (Docker only
    starts it), then a start, then `docker kill`: the kill is a crash, restarted. On
    c7d2e34 the mark swallowed it ("stopped by the supervisor (exit 137)", decision none)."""
    dashboard, worker = daemon
    clock: FakeClock = worker.sup.clock  # type: ignore[assignment]
    await _handled(worker, _event("start", clock.now - 5))
    answered = await dashboard.on_allowed(_allowed("container-stop"))  # the server is running
    assert answered is not None
    clock.advance(1)
    await _handled(worker, _event("die", clock.now, 0))
    answered(204)
    assert worker.service.restart.pending is None  # asked for: not restarted
    clock.advance(1)
    answered = await dashboard.on_allowed(_allowed(rule))  # the server is stopped now
    assert answered is not None
    answered(answer)
    clock.advance(1)
    await _handled(worker, _event("start", clock.now))
    clock.advance(1)
    await _handled(worker, _event("die", clock.now, 137))
    assert not worker.service.stop_requested
    pending = worker.service.restart.pending
    assert pending is not None and pending.step is Step.START, worker.service.restart


async def test_the_mark_is_made_in_the_workers_turn_before_the_hook_returns(
    daemon: tuple[Dashboard, ServiceWorker],
) -> None:
    """The guard forwards only once its hook returns: by then the server's worker has put
    the mark in the record. While the worker is busy (a step of ours), the hook waits for
    its turn and nothing is written meanwhile."""
    dashboard, worker = daemon
    busy, release = anyio.Event(), anyio.Event()

    async def a_step_of_ours() -> None:
        busy.set()
        await release.wait()

    worker.submit(a_step_of_ours)
    with anyio.fail_after(5):
        await busy.wait()
    returned: list[bool] = []

    async def guard_hook() -> None:
        returned.append(await dashboard.on_allowed(_allowed("container-stop")) is not None)

    async with anyio.create_task_group() as tg:
        tg.start_soon(guard_hook)
        await anyio.wait_all_tasks_blocked()
        assert returned == [] and not worker.service.stop_requested  # waits its turn
        release.set()
    assert returned == [True]
    assert list(worker.service.stop_requested) == [CID]


async def test_a_stop_of_another_container_is_not_marked(
    daemon: tuple[Dashboard, ServiceWorker],
) -> None:
    dashboard, worker = daemon
    worker.service.container_id = "d" * 64  # the server was recreated meanwhile
    assert await dashboard.on_allowed(_allowed("container-stop")) is None
    assert not worker.service.stop_requested


async def test_a_refused_stop_is_withdrawn_in_the_workers_turn(
    daemon: tuple[Dashboard, ServiceWorker],
) -> None:
    """Docker's error: the hook queues the withdrawal; the worker takes it after the mark,
    and the run's next exit is a crash again."""
    dashboard, worker = daemon
    answered = await dashboard.on_allowed(_allowed("container-restart"))
    assert answered is not None and CID in worker.service.stop_requested
    answered(500)
    await _settled(worker)
    assert not worker.service.stop_requested


async def test_through_the_guard_the_mark_is_in_place_when_docker_hears_the_stop(
    daemon: tuple[Dashboard, ServiceWorker], tmp_path: Path
) -> None:
    """End to end through the guard's shell: a fake Docker records, at the moment the
    forwarded stop reaches it, whether the server's record holds the mark."""
    dashboard, worker = daemon
    upstream_path, guard_path = tmp_path / "docker.sock", tmp_path / "guard.sock"
    marked_when_forwarded: list[bool] = []

    async def docker(conn: anyio.abc.SocketStream) -> None:
        async with conn:
            marked_when_forwarded.append(CID in worker.service.stop_requested)
            await conn.receive()
            await conn.send(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    async def resolve(ref: str) -> Resolution | None:
        labels = {**ownership_labels("t"), LABEL_ROLE: "server"}
        return Resolution(CID, labels) if ref in (CID, CID[:12]) else None

    async def no_exec(ref: str) -> None:
        return None

    guard = Guard(GuardPolicy("t"), str(upstream_path), resolve, no_exec, dashboard.on_allowed)
    upstream = await anyio.create_unix_listener(upstream_path)
    listener = await anyio.create_unix_listener(guard_path)
    async with upstream, listener, anyio.create_task_group() as tg:
        tg.start_soon(upstream.serve, docker)
        tg.start_soon(listener.serve, guard.handle)
        with anyio.fail_after(10):
            async with await anyio.connect_unix(guard_path) as client:
                await client.send(
                    f"POST /v1.41/containers/{CID}/stop?t=30 HTTP/1.1\r\nHost: docker\r\n"
                    "Content-Length: 0\r\n\r\n".encode()
                )
                answer = b""
                while b"\r\n\r\n" not in answer:
                    answer += await client.receive()
        tg.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 204"), answer
    assert marked_when_forwarded == [True]
    await _settled(worker)
    assert list(worker.service.stop_requested) == [CID]  # 204: the mark stays for the exit
