"""The daemon's drains (supervisor/drains.py) on the fake engine and the fake clock: the
operator's restart, rotation and `down` wait for the players, the action goes to the
server's worker, `cancel`, `--now`, one drain at a time, a crash during a drain, the API
down, the state file (resumed by the next daemon), the schedule's windows, the credentials."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import secretspec
from supervisor.cli import _drain_lines
from supervisor.commands import Commands
from supervisor.dockertypes import ContainerState
from supervisor.drainer import CANCELLED_MESSAGE
from supervisor.drains import Disruption, DrainRequest, Drains, Pending
from supervisor.logs import bind
from supervisor.notify import Notifier
from supervisor.restarts import ServiceStatus
from supervisor.serverapi import ApiError, Failure
from supervisor.settings import load_settings
from supervisor.store import StateStore
from supervisor.supervision import Supervision
from supervisor.worker import ServiceWorker
from tests.fakeclock import T0, FakeClock
from tests.fakeengine import FakeEngine
from tests.unit.test_drainer import FakeApi
from tests.unitkit import lone_worker, server_event

pytestmark = pytest.mark.anyio

CID = "c1"
WARNING_15 = "The server will restart in 15 minutes. Your progress will be saved."


@dataclass
class Rig:
    clock: FakeClock
    engine: FakeEngine
    sup: Supervision
    worker: ServiceWorker
    api: FakeApi
    drains: Drains
    frozen: bool = False  # the drainer's waits block until woken instead of passing

    def commands(self) -> Commands:
        return Commands(self.sup, {"server": self.worker}, self.drains)

    def steps(self) -> list[tuple[str, str]]:
        return [c for c in self.engine.calls if c[0] in ("stop", "start")]

    def said(self, what: str) -> list[tuple[float, str, str]]:
        return [c for c in self.api.calls if c[1] == what]

    async def until(self, check: Callable[[], bool]) -> None:
        with anyio.fail_after(5):
            while not check():
                await anyio.sleep(0.005)


@asynccontextmanager
async def rig(
    tmp_path: Path,
    leaves: list[float],
    *,
    down: tuple[float, float] = (0, 0),
    frozen: bool = False,
    sleep: Callable[[float], Any] | None = None,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> AsyncIterator[Rig]:
    """A running, healthy server with its worker and the drains running; players leave at
    `leaves` (seconds after T0)."""
    clock = clock or FakeClock()
    engine = FakeEngine()
    engine.add_container("t-server", container_id=CID, state=ContainerState("running", True))
    sup = Supervision(
        load_settings(state_dir=str(tmp_path), **overrides),
        engine,
        Notifier(environ={}),
        StateStore(tmp_path / "state.json"),
        bind(logging.getLogger("test"), stack="t"),
        clock,
    )
    worker = lone_worker(sup, container_id=CID)
    worker.service.restart = replace(worker.service.restart, status=ServiceStatus.RUNNING)
    worker.service.health = "healthy"
    api = FakeApi(clock, leaves, down)
    holder: list[Rig] = []

    async def wait(seconds: float, woken: anyio.Event) -> None:
        if holder[0].frozen:
            await woken.wait()
        else:
            clock.advance(seconds)
            await anyio.sleep(0)

    async def never(seconds: float) -> None:
        await anyio.sleep_forever()

    drains = Drains(sup, {"server": worker}, wait=wait, sleep=sleep or never, api=api)
    worker.went_down = drains.server_exited
    made = Rig(clock, engine, sup, worker, api, drains, frozen)
    holder.append(made)
    drains.load()
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await tg.start(drains.run)
        yield made
        tg.cancel_scope.cancel()


async def test_a_restart_with_two_players_warns_saves_and_restarts_after_they_leave(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, leaves=[120.0, 200.0]) as r:
        reply = await r.commands().answer({"command": "restart", "service": "server"})
        await r.until(lambda: r.drains.last is not None and len(r.steps()) == 2)
        assert r.said("broadcast") == [(0, "broadcast", WARNING_15)]
        assert r.api.calls[-1] == (200, "save", "")  # the first poll that finds it empty
        assert r.steps() == [("stop", CID), ("start", CID)]  # after the save: the worker's
        assert r.drains.last is not None and r.drains.last["outcome"] == "act"
        assert r.sup.drain_record is None and "drain" not in (r.sup.store.saved_drain() or {})
    assert reply["ok"] is True and reply.get("pending") is True
    assert "players online: 2" in reply["message"]


async def test_an_empty_server_is_restarted_at_once_with_one_status_call(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[]) as r:
        reply = await r.commands().answer({"command": "restart", "service": "server"})
        assert reply == {"ok": True, "message": "server: state cleared, restarting"}
        assert [c[1] for c in r.api.calls] == ["status", "save"]
        await r.until(lambda: len(r.steps()) == 2)


async def test_now_skips_the_drain(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[10_000.0]) as r:
        request = {"command": "restart", "service": "server", "now": True}
        reply = await r.commands().answer(request)
        assert reply == {"ok": True, "message": "server: state cleared, restarting"}
        assert r.api.calls == [(0, "save", "")]  # no count, no warning
        await r.until(lambda: len(r.steps()) == 2)


async def test_the_manager_is_never_drained(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        manager = lone_worker(r.sup, "manager")
        commands = Commands(r.sup, {"server": r.worker, "manager": manager}, r.drains)
        async with anyio.create_task_group() as tg:
            await tg.start(manager.run)
            reply = await commands.answer({"command": "restart", "service": "manager"})
            tg.cancel_scope.cancel()
        assert reply["ok"] is True and r.api.calls == [] and r.drains.pending is None


async def test_cancel_broadcasts_and_nothing_is_restarted(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        commands = r.commands()
        reply = await commands.answer({"command": "restart", "service": "server"})
        assert reply.get("pending") is True
        assert r.sup.store.saved_drain()["request"]["what"] == "restart"
        cancelled = await commands.answer({"command": "cancel"})
        assert cancelled["ok"] is True and "cancelled" in cancelled["message"]
        assert r.said("broadcast")[-1][2] == CANCELLED_MESSAGE.format(action="restart")
        assert r.drains.pending is None and r.sup.store.saved_drain() is None
        assert r.steps() == []
        assert r.drains.last is not None and r.drains.last["outcome"] == "cancelled"
        assert (await commands.answer({"command": "cancel"}))["ok"] is False


async def test_one_drain_at_a_time_the_same_joins_another_is_refused(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        commands = r.commands()
        await commands.answer({"command": "restart", "service": "server"})
        joined = await commands.answer({"command": "restart", "service": "server"})
        assert joined["ok"] is True and joined["message"].startswith("joined the pending restart")
        refused = await commands.answer({"command": "drain", "action": "stop"})
        assert refused["ok"] is False
        assert "`hyos-supervisor cancel` first" in refused["error"]
        # --now on the pending one: it acts at once (saved, then restarted).
        hurried = await commands.answer({"command": "restart", "service": "server", "now": True})
        assert hurried == {"ok": True, "message": "server: state cleared, restarting"}
        assert r.api.calls[-1][1] == "save"
        await r.until(lambda: len(r.steps()) == 2)


async def test_a_crash_during_a_drain_is_restarted_at_once_and_ends_the_drain(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        await r.commands().answer({"command": "restart", "service": "server"})
        assert r.drains.pending is not None
        r.engine.exit(CID, 1)
        r.worker.observe(server_event("die", r.clock.now, exit_code=1))
        await r.until(lambda: r.drains.pending is None and ("start", CID) in r.engine.calls)
        assert r.clock.now == T0  # not a second of the drain's waiting
        assert r.drains.last is not None and r.drains.last["outcome"] == "act"
        assert [c[1] for c in r.api.calls] == ["status", "broadcast"]  # no save of a dead one


async def test_the_api_down_waits_until_the_deadline_then_acts(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[], down=(0, 10_000), drain={"max_wait": "2m"}) as r:
        await r.commands().answer({"command": "restart", "service": "server"})
        await r.until(lambda: len(r.steps()) == 2)
        assert r.clock.now == T0 + 120
        assert r.said("broadcast") == []  # the warnings could not be sent either


async def test_down_is_drained_and_the_cli_is_told_when_it_may_stop(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[30.0]) as r:
        reply = await r.commands().answer({"command": "drain", "action": "stop"})
        assert reply.get("pending") is True
        await r.until(lambda: r.drains.pending is None)
        assert r.drains.last is not None and r.drains.last["outcome"] == "act"
        assert r.api.calls[-1] == (30, "save", "")
        assert r.steps() == []  # the CLI's `down` stops and removes the stack
        warning = r.said("broadcast")[0][2]
        assert warning.startswith("The server will stop in 15 minutes")


async def test_a_rotation_writes_the_values_only_when_the_drain_acts(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[50.0]) as r:
        rotated: list[tuple[float, tuple[str, ...]]] = []

        async def rotate(names: tuple[str, ...]) -> None:
            rotated.append((r.clock.now - T0, names))

        r.sup.ops.rotate = rotate  # type: ignore[method-assign]
        await r.commands().answer({"command": "rotate", "names": ["api"]})
        await r.until(lambda: len(r.steps()) == 2)
        assert rotated == [(50, ("api",))]
        assert r.sup.manager_after_server


async def test_the_status_view_shows_the_pending_drain(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[10_000.0], frozen=True, drain={"max_wait": "10m"}) as r:
        await r.commands().answer({"command": "restart", "service": "server"})
        view = (await r.commands().answer({"command": "status"}))["drain"]
        assert view["action"] == "restart" and view["players"] == 2 - 1
        assert view["deadline_in_s"] == 600 and view["next_warning_in_s"] == 300
        lines = _drain_lines({"drain": view})
        assert lines[0].startswith("drain: restart of the server pending, deadline ")
        assert "players online: 1; next warning" in lines[0]
        await r.drains.cancel()


async def test_a_pending_drain_is_kept_and_the_next_daemon_resumes_it(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        await r.commands().answer({"command": "restart", "service": "server"})
        saved = Pending.from_json(r.sup.store.saved_drain())
        assert saved is not None and saved.request.what is Disruption.RESTART
        deadline = saved.state.deadline
        r.drains.forget_for_shutdown()  # what a daemon that stops the stack does
        assert r.sup.drain_record is None
        r.sup.drain_record = saved.to_json()  # ...and one that leaves it running does not
        r.sup.save()
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as again:
        pending = again.drains.pending
        assert pending is not None and pending.state.deadline == deadline
        assert pending.state.warned == saved.state.warned  # the 15-minute one is not repeated
        await again.drains.cancel()


def _one_window(clock: FakeClock) -> Callable[[float], Any]:
    """The schedule's sleep: the first passes on the fake clock, the next never ends."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        if slept:
            await anyio.sleep_forever()
        slept.append(seconds)
        clock.advance(seconds)

    return sleep


async def test_a_scheduled_window_restarts_through_the_drain(tmp_path: Path) -> None:
    clock = FakeClock()
    schedule = {"restart": "daily 04:30"}
    async with rig(tmp_path, [], sleep=_one_window(clock), clock=clock, schedule=schedule) as r:
        await r.until(lambda: len(r.steps()) == 2 and r.drains.last is not None)
        assert r.drains.last is not None and r.drains.last["action"] == "scheduled"
        assert r.drains.view()["next_window"].endswith("04:30:00+00:00")


async def test_only_if_empty_skips_the_window_when_players_stay(tmp_path: Path) -> None:
    clock = FakeClock()
    async with rig(
        tmp_path,
        [10.0**9],
        sleep=_one_window(clock),
        clock=clock,
        schedule={"restart": "daily 04:30", "only_if_empty": True},
        drain={"max_wait": "1m"},
    ) as r:
        await r.until(lambda: r.drains.last is not None)
        assert r.drains.last is not None and r.drains.last["outcome"] == "skip"
        assert r.steps() == []


async def test_the_credentials_are_the_server_containers_secret_files(tmp_path: Path) -> None:
    async with rig(tmp_path, leaves=[]) as r:
        with pytest.raises(ApiError) as missing:
            await r.drains._credentials()
        assert missing.value.failure is Failure.NO_CREDENTIALS
        for name, value in (("api_client_id", b"hyos-manager\n"), ("api_client_secret", b"s3\n")):
            r.engine.files[(CID, secretspec.BY_NAME[name].path)] = value
        assert await r.drains._credentials() == ("hyos-manager", "s3")


async def test_a_request_of_each_kind_round_trips_the_state_file() -> None:
    for what in Disruption:
        request = DrainRequest(what, ("api",) if what is Disruption.ROTATE else ())
        assert DrainRequest.from_json(request.to_json()) == request
    assert Pending.from_json({"request": {"what": "nope"}, "state": {}}) is None


async def test_a_saved_drain_outlives_the_state_files_writes_before_it_resumes(
    tmp_path: Path,
) -> None:
    """The next daemon's first stack pass saves the state file before the drains run."""
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        await r.commands().answer({"command": "restart", "service": "server"})
        kept = r.sup.store.saved_drain()
        r.sup.stopping = True  # (the rig's end cancels the drain, as a shutdown does)
    engine = FakeEngine()
    sup = Supervision(
        load_settings(state_dir=str(tmp_path)),
        engine,
        Notifier(environ={}),
        StateStore(tmp_path / "state.json"),
        bind(logging.getLogger("test"), stack="t"),
        FakeClock(),
    )
    sup.load()
    Drains(sup, {}).load()
    sup.save()  # what the first stack pass does
    assert sup.store.saved_drain() == kept


async def test_a_dashboard_stop_during_a_drained_restart_cancels_it(tmp_path: Path) -> None:
    """Never drained, and never undone: the person who pressed Stop keeps it stopped."""
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        await r.commands().answer({"command": "restart", "service": "server"})
        assert await r.worker.call(partial(r.worker.mark_stop, CID)) is not None
        r.engine.exit(CID, 143)
        r.worker.observe(server_event("die", r.clock.now, exit_code=143))
        await r.until(lambda: r.drains.pending is None)
        assert r.drains.last is not None and r.drains.last["outcome"] == "cancelled"
        assert r.steps() == [] and r.worker.service.restart.status is ServiceStatus.STOPPED


async def test_a_dashboard_stop_during_a_drained_update_cancels_it(tmp_path: Path) -> None:
    """Issue 26: an update waiting for its players is a restart too: a person's Stop wins."""
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        acted: list[tuple[str | None, str]] = []

        async def act(version: str | None, source: str) -> dict[str, Any]:
            acted.append((version, source))
            return {"ok": True}

        r.drains.on_update = act
        request = DrainRequest(Disruption.UPDATE, version="v2", source="window")
        await r.drains.begin(request)
        assert r.sup.store.saved_drain()["request"]["version"] == "v2"
        assert await r.worker.call(partial(r.worker.mark_stop, CID)) is not None
        r.engine.exit(CID, 143)
        r.worker.observe(server_event("die", r.clock.now, exit_code=143))
        await r.until(lambda: r.drains.pending is None)
        assert r.drains.last is not None and r.drains.last["outcome"] == "cancelled"
        assert acted == []  # no update began behind the person's Stop


async def test_a_drain_for_down_is_not_resumed_by_the_next_daemon(tmp_path: Path) -> None:
    """The `down` that asked waited on the old daemon; the next one must not hold for it."""
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as r:
        await r.commands().answer({"command": "drain", "action": "stop"})
        assert r.sup.store.saved_drain()["request"]["what"] == "stop"
        r.sup.stopping = True
    async with rig(tmp_path, leaves=[10_000.0], frozen=True) as again:
        assert again.drains.pending is None and again.sup.store.saved_drain() is None


async def test_a_server_image_without_curl_is_not_waited_for(tmp_path: Path) -> None:
    """The stand-in images have no curl: `restart server` acts at once, as before drains."""
    async with rig(tmp_path, leaves=[]) as r:
        r.drains.gate.api = r.drains.api  # the real client, through the fake engine's exec
        r.engine.exec_code = 127
        for name in ("api_client_id", "api_client_secret"):
            r.engine.files[(CID, secretspec.BY_NAME[name].path)] = b"x" * 20
        reply = await r.commands().answer({"command": "restart", "service": "server"})
        assert reply == {"ok": True, "message": "server: state cleared, restarting"}
        await r.until(lambda: len(r.steps()) == 2)
