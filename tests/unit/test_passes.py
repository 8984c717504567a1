"""A stack pass adopts what runs from its listing; what a worker heard from the engine after
that listing is newer and wins. Fake engine, no Docker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from supervisor.daemon import Daemon
from supervisor.dockertypes import EngineEvent
from supervisor.notify import Notifier
from supervisor.restarts import ServiceStatus
from supervisor.roles import Role
from supervisor.settings import load_settings
from tests.fakeengine import FakeEngine

pytestmark = pytest.mark.anyio


def daemon_on(engine: FakeEngine, tmp_path: Path) -> Daemon:
    return Daemon(load_settings(state_dir=str(tmp_path)), engine, Notifier(environ={}))


async def startup_pass(daemon: Daemon, then: Callable[[], Awaitable[None]] | None = None) -> None:
    """The daemon's workers and its startup pass (the stack brought up), `then` while the
    workers still run, then nothing."""
    async with anyio.create_task_group() as work:
        for worker in daemon.workers.values():
            await work.start(worker.run)
        with anyio.fail_after(5):
            await daemon.passes.once(startup=True)
            if then is not None:
                await then()
        work.cancel_scope.cancel()


async def test_a_healthy_event_heard_after_the_listing_starts_the_manager_in_that_pass(
    tmp_path: Path,
) -> None:
    """Seen in CI (a daemon killed mid-pass, then a new one): the server turned healthy
    between the new daemon's listing and its adoption of the server. The adoption put the
    listing's `starting` over the worker's `healthy`, the manager waited for a healthy
    event that the engine never sends twice, and stayed stopped until the next periodic
    pass (60 s by default)."""
    engine = FakeEngine(healthy_on_start=False)
    await startup_pass(daemon_on(engine, tmp_path))
    (server,) = [c for c in engine.containers.values() if c.name.endswith("-server")]
    (manager,) = [c for c in engine.containers.values() if c.name.endswith("-manager")]
    assert server.info().state.running and not manager.info().state.running

    # A new daemon, the first one killed before it saved the server's start (CI: the
    # record said stopped, and the healthy server stayed "stopped" in the daemon's view):
    # its listing sees the server `starting`; the server turns healthy just after, and
    # its worker hears of it before the pass adopts the server.
    for saved in tmp_path.glob("*.json"):
        saved.unlink()
    second = daemon_on(engine, tmp_path)

    def turn_healthy() -> None:
        engine.set_health(server.id, "healthy")
        second.dispatch(
            EngineEvent(
                "health_status: healthy", server.id, 1, name=server.name, labels=server.labels
            )
        )

    engine.after_listing = turn_healthy
    await startup_pass(second)
    record = second.sup.services[Role.SERVER]
    assert record.health == "healthy"
    assert record.restart.status is ServiceStatus.RUNNING, record.restart
    assert record.restart.healthy_since is not None
    assert manager.info().state.running
    assert not second.sup.manager_after_server


async def test_an_exit_heard_after_the_listing_is_not_undone_by_it(tmp_path: Path) -> None:
    """Seen in CI (HyOS's manager, a 1 s pass interval): the dashboard's Stop ended the
    server between a pass's listing and its adoption of the server; the adoption took the
    listing's `running` and recorded the stopped server as started."""
    engine = FakeEngine()
    daemon = daemon_on(engine, tmp_path)

    def exit_cleanly() -> None:
        engine.exit(server.id, 0)
        daemon.dispatch(
            EngineEvent(
                "die",
                server.id,
                2_000_000_000_000_000_000,
                name=server.name,
                labels={**server.labels, "exitCode": "0"},
                exit_code=0,
            )
        )

    async with anyio.create_task_group() as work:
        for worker in daemon.workers.values():
            await work.start(worker.run)
        await daemon.passes.once(startup=True)
        (server,) = [c for c in engine.containers.values() if c.name.endswith("-server")]
        engine.after_listing = exit_cleanly
        with anyio.fail_after(5):
            await daemon.passes.once(startup=False)
        work.cancel_scope.cancel()
    record = daemon.sup.services[Role.SERVER]
    assert not server.info().state.running
    assert record.restart.status is not ServiceStatus.RUNNING, record.restart
    assert record.health is None


async def test_an_adoption_skipped_for_a_step_taken_meanwhile_asks_for_the_next_pass(
    tmp_path: Path,
) -> None:
    """Seen in CI (a daemon SIGKILLed right after it started the server, before it saved
    that): the new daemon's worker carried out the recorded start while the startup pass
    ran. The container was running already, so no start event came; the pass skipped its
    adoption (a step changed the service since its plan) and the service showed `backoff`
    until the periodic pass 60 s later. The skipped adoption now asks for the next pass,
    which adopts the running server as started."""
    engine = FakeEngine()
    await startup_pass(daemon_on(engine, tmp_path))
    second = daemon_on(engine, tmp_path)
    server = second.workers[Role.SERVER]
    record = second.sup.services[Role.SERVER]
    # What the killed daemon's step left: issued (nothing pending), its start never seen.
    record.restart = replace(record.restart, status=ServiceStatus.BACKOFF, pending=None)

    def a_step_meanwhile() -> None:
        server.generation += 2  # what _acting does around a step

    async def next_pass() -> None:
        assert record.restart.status is ServiceStatus.BACKOFF  # skipped, as planned
        assert second.passes.wanted()  # ... and the next pass asked for
        engine.after_listing = None
        await second.passes.once(startup=False)

    engine.after_listing = a_step_meanwhile
    await startup_pass(second, next_pass)
    assert record.restart.status is ServiceStatus.RUNNING, record.restart
