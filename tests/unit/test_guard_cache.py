"""The guard remembers what never changes after creation (a container's full id and labels,
an exec's container and user) for the object's life, and only while it hears the engine's
destroy events; names always go to the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from entrypoint.contract import LABEL_MANAGED, LABEL_ROLE, LABEL_STACK
from supervisor.dockertypes import ContainerInfo, EngineEvent, ExecInfo
from supervisor.guard import EXEC_CACHE_SIZE, EngineResolver, ResolutionCache
from supervisor.guard_rules import Resolution

pytestmark = pytest.mark.anyio
STACK = "s"
SERVER = "a" * 64
OTHER = "b" * 64
LABELS = {LABEL_MANAGED: "true", LABEL_STACK: STACK, LABEL_ROLE: "server"}


class StubEngine:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.containers = {
            SERVER: ContainerInfo(SERVER, "srv", labels=LABELS),
            "srv": ContainerInfo(SERVER, "srv", labels=LABELS),
            OTHER: ContainerInfo(OTHER, "other"),
        }
        self.execs = {"e" * 64: ExecInfo("e" * 64, SERVER, "", False)}
        self.send, self.receive = anyio.create_memory_object_stream[EngineEvent](10)
        self.opened = anyio.Event()

    async def inspect(self, ref: str, attempts: int | None = None) -> ContainerInfo | None:
        self.calls.append(ref)
        return self.containers.get(ref)

    async def inspect_exec(self, exec_id: str, attempts: int | None = None) -> ExecInfo | None:
        self.calls.append(exec_id)
        return self.execs.get(exec_id)

    @asynccontextmanager
    async def events(self, filters: Any) -> AsyncIterator[AsyncIterator[EngineEvent]]:
        assert filters["event"] == ["destroy"] and filters["label"] == [f"{LABEL_STACK}={STACK}"]
        self.opened.set()
        yield self.receive


async def test_full_ids_are_remembered_until_destroyed_names_never() -> None:
    engine = StubEngine()
    resolver = EngineResolver(engine, ResolutionCache(STACK))  # type: ignore[arg-type]
    # Not yet hearing destroy events: nothing is remembered.
    await resolver.container(SERVER)
    await resolver.container(SERVER)
    assert engine.calls == [SERVER, SERVER]
    async with anyio.create_task_group() as tg:
        tg.start_soon(resolver.watch_destroys, STACK)
        await engine.opened.wait()
        engine.calls.clear()
        for _ in range(3):
            assert (await resolver.container(SERVER)).id == SERVER  # type: ignore[union-attr]
            assert (await resolver.container("srv")).id == SERVER  # type: ignore[union-attr]
            await resolver.container(OTHER)  # not the stack's server: not remembered
            await resolver.exec("e" * 64)
        assert engine.calls == [SERVER, "srv", OTHER, "e" * 64] + ["srv", OTHER] * 2
        # Destroyed: forgotten, with its execs.
        await engine.send.send(EngineEvent("destroy", SERVER))
        await anyio.wait_all_tasks_blocked()
        engine.calls.clear()
        await resolver.container(SERVER)
        await resolver.exec("e" * 64)
        assert engine.calls == [SERVER, "e" * 64]
        tg.cancel_scope.cancel()
    assert not resolver.cache.live and resolver.cache.containers == {}


def test_a_lookup_that_raced_a_destroy_is_not_kept_and_execs_are_bounded() -> None:
    cache = ResolutionCache(STACK)
    cache.reset(live=True)
    epoch = cache.epoch
    cache.forget(SERVER)  # its destroy was heard while the lookup was in flight
    res = _res(SERVER)
    cache.keep_container(res, epoch)
    assert cache.container(SERVER) is None
    cache.keep_container(res, cache.epoch)
    assert cache.container(SERVER) == res
    for i in range(EXEC_CACHE_SIZE + 10):
        cache.keep_exec(ExecInfo(f"{i:064x}", SERVER, "", False), cache.epoch)
    assert len(cache.execs) == EXEC_CACHE_SIZE
    assert cache.exec(f"{0:064x}") is None  # the oldest went first
    cache.keep_exec(ExecInfo("f" * 64, OTHER, "", False), cache.epoch)  # not our server's
    assert cache.exec("f" * 64) is None


def _res(cid: str) -> Resolution:
    return Resolution(cid, LABELS)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
