"""The tests' fake engine keeps the contracts of `EnginePort` that the code relies on, so
a unit test that passes on it does not pass only because the fake is lenient."""

from __future__ import annotations

import anyio
import pytest

from supervisor.dockertypes import (
    ContainerState,
    EngineError,
    EngineEvent,
    NotFound,
    ownership_filter,
    ownership_labels,
)
from tests.fakeengine import FakeEngine

pytestmark = pytest.mark.anyio
HEALTHCHECK = {"Test": ["CMD", "/healthcheck"], "StartPeriod": 10**9}


def body(role: str, *, healthcheck: bool = False) -> dict[str, object]:
    labels = {**ownership_labels("s"), "io.hyos.role": role, "io.hyos.spec-hash": "h"}
    found: dict[str, object] = {"Image": "img:1", "Labels": labels}
    if healthcheck:
        found["Healthcheck"] = HEALTHCHECK
    return found


async def test_a_name_is_taken_once_and_a_missing_image_is_not_found() -> None:
    engine = FakeEngine(images={"img:1": ((), ("run",))})
    await engine.create("s-server", body("server"))
    with pytest.raises(EngineError, match="already in use"):
        await engine.create("s-server", body("server"))
    with pytest.raises(NotFound, match="No such image: other:2"):
        await engine.create("s-manager", {"Image": "other:2"})
    assert await engine.image_command("img:1") == ((), ("run",))


async def test_list_stack_sees_only_the_stacks_containers() -> None:
    engine = FakeEngine()
    cid = await engine.create("s-server", body("server"))
    engine.add_container("stranger", labels={"io.hyos.stack": "s"})  # not managed
    (observed,) = await engine.list_stack("s")
    assert (observed.id, observed.role, observed.state) == (cid, "server", "created")
    assert await engine.list_stack("other") == []


async def test_start_stop_and_remove_report_like_the_engine() -> None:
    engine = FakeEngine(healthy_on_start=False)
    cid = await engine.create("s-server", body("server", healthcheck=True))
    await engine.start(cid)
    info = await engine.inspect("s-server")
    assert info is not None and info.state.running and info.state.health_status == "starting"
    await engine.stop(cid, 10)
    info = await engine.inspect(cid)
    assert info is not None and (info.state.status, info.state.exit_code) == ("exited", 143)
    await engine.remove(cid)
    await engine.remove(cid)  # already gone: not an error
    assert await engine.inspect(cid) is None
    with pytest.raises(NotFound):
        await engine.start(cid)
    assert engine.calls == [
        ("create", "s-server"), ("start", cid), ("stop", cid), ("remove", cid), ("remove", cid),
        ("start", cid),
    ]  # fmt: skip


async def test_events_are_filtered_as_the_feed_asks() -> None:
    engine = FakeEngine(healthy_on_start=False)
    ours = await engine.create("s-server", body("server"))
    stranger = engine.add_container("stranger", state=ContainerState(status="created"))
    filters = {"label": ownership_filter("s"), "event": ["start", "die"]}
    async with engine.events(filters) as stream:
        await engine.start(stranger.id)
        await engine.start(ours)
        engine.exit(ours, 1)
        first, second = await anext(stream), await anext(stream)
    assert (first.action, first.container_id) == ("start", ours)
    assert (second.action, second.exit_code) == ("die", 1)


async def test_queued_events_reach_the_next_subscriber_first() -> None:
    engine = FakeEngine()
    event = EngineEvent("die", "c1", 1, labels=ownership_labels("s"))
    engine.queue_events(event)
    async with engine.events({"label": ownership_filter("s")}) as stream:
        assert await anext(stream) == event


async def test_wait_ready_follows_the_health_check() -> None:
    engine = FakeEngine(healthy_on_start=False)
    cid = await engine.create("s-server", body("server", healthcheck=True))
    await engine.start(cid)
    async with anyio.create_task_group() as group:
        group.start_soon(engine.wait_ready, cid, 5)
        await anyio.wait_all_tasks_blocked()
        engine.set_health(cid, "healthy")  # wait_ready returns, the group ends
    other = await engine.create("s-manager", body("manager", healthcheck=True))
    await engine.start(other)
    engine.exit(other, 137, oom=True)
    with pytest.raises(EngineError, match=r"exited with code 137 \(OOM killed\)"):
        await engine.wait_ready(other, 5)


async def test_refusals_are_recorded_then_raised_in_order() -> None:
    engine = FakeEngine()
    cid = await engine.create("s-server", body("server"))
    engine.refuse("start", EngineError("Cannot connect to the Docker daemon"), times=2)
    for _ in range(2):
        with pytest.raises(EngineError, match="Cannot connect"):
            await engine.start(cid)
    await engine.start(cid)
    assert engine.calls.count(("start", cid)) == 3


async def test_files_and_volumes() -> None:
    engine = FakeEngine()
    cid = await engine.create("s-server", body("server"))
    await engine.write_file(cid, "/data/.state/auth.json", b"{}", 568, 568)
    assert await engine.read_file(cid, "/data/.state/auth.json") == b"{}"
    assert await engine.read_file(cid, "/data/.state/auth.json", limit=1) is None
    assert await engine.read_file(cid, "/nothing") is None
    assert await engine.ensure_volume("v", {"a": "b"}) is True
    assert await engine.ensure_volume("v", {}) is False
    assert await engine.volume_labels("v") == {"a": "b"}
