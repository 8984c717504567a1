"""The guard remembers what never changes after creation (a container's full id and labels,
an exec's container and user) for the object's life, and only while it hears the engine's
destroy events; names always go to the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
import pytest

from entrypoint.contract import LABEL_MANAGED, LABEL_ROLE, LABEL_STACK
from supervisor.dockertypes import ContainerInfo, EngineEvent, ExecInfo
from supervisor.guard import EXEC_CACHE_SIZE, EngineResolver, ResolutionCache
from supervisor.guard_rules import Resolution
from tests.fakeengine import FakeEngine

pytestmark = pytest.mark.anyio
STACK = "s"
SERVER = "a" * 64
OTHER = "b" * 64
LABELS = {LABEL_MANAGED: "true", LABEL_STACK: STACK, LABEL_ROLE: "server"}


class LookupCountingEngine(FakeEngine):
    """The shared fake engine, counting the lookups the guard makes (ids and names) and
    saying when the guard's destroy-event stream is open."""

    def __init__(self) -> None:
        super().__init__()
        self.add_container("srv", container_id=SERVER, labels=LABELS)
        self.add_container("other", container_id=OTHER)
        self.execs["e" * 64] = ExecInfo("e" * 64, SERVER, "", False)
        self.lookups: list[str] = []
        self.opened = anyio.Event()

    async def inspect(self, ref: str, attempts: int | None = None) -> ContainerInfo | None:
        self.lookups.append(ref)
        return await super().inspect(ref, attempts)

    async def inspect_exec(self, exec_id: str, attempts: int | None = None) -> ExecInfo | None:
        self.lookups.append(exec_id)
        return await super().inspect_exec(exec_id, attempts)

    @asynccontextmanager
    async def events(
        self, filters: Mapping[str, list[str]], since: str | None = None
    ) -> AsyncIterator[AsyncIterator[EngineEvent]]:
        assert filters["event"] == ["destroy"] and filters["label"] == [f"{LABEL_STACK}={STACK}"]
        async with super().events(filters, since) as stream:
            self.opened.set()
            yield stream


def destroyed(container_id: str) -> EngineEvent:
    return EngineEvent("destroy", container_id, labels={LABEL_STACK: STACK})


async def test_full_ids_are_remembered_until_destroyed_names_never() -> None:
    engine = LookupCountingEngine()
    resolver = EngineResolver(engine, ResolutionCache(STACK))
    # Not yet hearing destroy events: nothing is remembered.
    await resolver.container(SERVER)
    await resolver.container(SERVER)
    assert engine.lookups == [SERVER, SERVER]
    async with anyio.create_task_group() as tg:
        tg.start_soon(resolver.watch_destroys, STACK)
        await engine.opened.wait()
        engine.lookups.clear()
        for _ in range(3):
            for ref in (SERVER, "srv"):
                found = await resolver.container(ref)
                assert found is not None and found.id == SERVER
            await resolver.container(OTHER)  # not the stack's server: not remembered
            await resolver.exec("e" * 64)
        assert engine.lookups == [SERVER, "srv", OTHER, "e" * 64] + ["srv", OTHER] * 2
        # Destroyed: forgotten, with its execs.
        engine.emit(destroyed(SERVER))
        await anyio.wait_all_tasks_blocked()
        engine.lookups.clear()
        await resolver.container(SERVER)
        await resolver.exec("e" * 64)
        assert engine.lookups == [SERVER, "e" * 64]
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
