"""The daemon's parts feed the tallies `/metrics` reads, as things happen: the worker the
server's ready duration, a graceful stop its duration, a drain's status call the player
count, the guard its verdicts and its added latency (supervisor/tallies.py)."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.abc
import pytest

from entrypoint.contract import LABEL_ROLE
from supervisor.dockertypes import ownership_labels
from supervisor.drains import Drains
from supervisor.guard import Guard
from supervisor.guard_rules import Policy as GuardPolicy
from supervisor.guard_rules import Resolution
from supervisor.restarts import ServiceStatus, on_started
from supervisor.roles import Role
from supervisor.tallies import PlayerCount
from tests.fakeclock import T0, FakeClock
from tests.unit.test_drainer import FakeApi
from tests.unitkit import SERVER_ID, engine_with_server, fake_supervision, lone_worker, server_event

pytestmark = pytest.mark.anyio


async def test_the_first_healthy_of_a_run_is_its_ready_duration(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = engine_with_server()
    sup = fake_supervision(tmp_path, engine, clock)
    worker = lone_worker(sup, Role.SERVER, SERVER_ID)
    await worker._on_event(server_event("start", clock.now))
    clock.advance(12.5)
    await worker._on_event(server_event("health_status: healthy", clock.now))
    clock.advance(30)
    await worker._on_event(server_event("health_status: healthy", clock.now))  # the same run
    ready = sup.tallies.server_ready
    assert (ready.count, ready.total) == (1, 12.5)
    await worker._on_event(server_event("start", clock.now))  # a new run
    clock.advance(40)
    await worker._on_event(server_event("health_status: healthy", clock.now))
    assert (ready.count, ready.total) == (2, 52.5)
    # Healthy again after an unhealthy spell (no restart: held in crash loop) is no start.
    await worker._on_event(server_event("health_status: unhealthy", clock.now))
    clock.advance(10)
    await worker._on_event(server_event("health_status: healthy", clock.now))
    assert ready.count == 2


async def test_only_the_servers_graceful_stops_are_timed(tmp_path: Path) -> None:
    engine = engine_with_server()
    engine.add_container("t-manager", container_id="m1")
    sup = fake_supervision(tmp_path, engine)
    for cid in (SERVER_ID, "m1"):
        await engine.start(cid)
    await sup.ops.stop(Role.SERVER, SERVER_ID)
    await sup.ops.stop(Role.MANAGER, "m1")
    assert sup.tallies.server_stop.count == 1
    assert sup.tallies.server_stop.total >= 0


async def test_a_drains_status_call_is_the_player_count(tmp_path: Path) -> None:
    clock = FakeClock()
    sup = fake_supervision(tmp_path, engine_with_server(), clock)
    server = sup.services[Role.SERVER]
    server.container_id = SERVER_ID
    server.restart = on_started(server.restart, clock.now)
    assert server.restart.status is ServiceStatus.RUNNING
    drains = Drains(sup, {}, api=FakeApi(clock, leaves=[60.0, 120.0]))
    assert sup.tallies.players is None
    await drains.gate.status()
    assert sup.tallies.players == PlayerCount(2, 100, T0)
    server.container_id = None  # not up: no call, and the last count is kept as it was
    clock.advance(5)
    await drains.gate.status()
    assert sup.tallies.players == PlayerCount(2, 100, T0)


async def test_the_guard_counts_verdicts_and_times_what_it_forwards(tmp_path: Path) -> None:
    upstream_path, guard_path = tmp_path / "docker.sock", tmp_path / "guard.sock"

    async def docker(conn: anyio.abc.SocketStream) -> None:
        async with conn:
            await conn.receive()
            await conn.send(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    async def resolve(ref: str) -> Resolution | None:
        labels = {**ownership_labels("t"), LABEL_ROLE: Role.SERVER.value}
        return Resolution(SERVER_ID * 32, labels) if ref.startswith(SERVER_ID) else None

    async def no_exec(ref: str) -> None:
        return None

    guard = Guard(GuardPolicy("t", max_api_minor=41), str(upstream_path), resolve, no_exec)

    async def ask(head: str) -> bytes:
        async with await anyio.connect_unix(guard_path) as client:
            await client.send(head.encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await client.receive()
            return answer

    upstream = await anyio.create_unix_listener(upstream_path)
    listener = await anyio.create_unix_listener(guard_path)
    async with upstream, listener, anyio.create_task_group() as tg:
        tg.start_soon(upstream.serve, docker)
        tg.start_soon(listener.serve, guard.handle)
        with anyio.fail_after(10):
            allowed = await ask(
                f"POST /v1.41/containers/{SERVER_ID}/stop HTTP/1.1\r\nHost: d\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            denied = await ask("POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\n\r\n")
        tg.cancel_scope.cancel()
    assert allowed.startswith(b"HTTP/1.1 204") and denied.startswith(b"HTTP/1.1 403")
    assert guard.tally.requests == {"allow": 1, "deny": 1}
    assert guard.tally.added_latency.count == 1
