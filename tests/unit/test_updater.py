"""The update transaction's shell (supervisor/updater.py) against the typed fake engine,
a fake backup engine and the fake clock: what it asks of the engine and of restic, in
which order, and what it leaves in the journal, the metrics' facts and the outbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from supervisor import hyos
from supervisor.alerts import Alert, AlertKind
from supervisor.alertsender import NoAlerts
from supervisor.backup import BackupError, Backups
from supervisor.backupjob import JobAnswer
from supervisor.dockertypes import ContainerState
from supervisor.serverapi import ApiError, Failure
from supervisor.settings import Settings
from supervisor.tallies import UpdateFacts
from supervisor.update import Phase, Source, Transaction
from supervisor.updater import (
    SERVER_STATE_FILE,
    VERSION_STATE_FILE,
    Updater,
    UpdateRefused,
    journal_path,
    update_view,
)
from supervisor.updatesettings import UpdateSettings
from tests.fakeclock import FakeClock
from tests.fakeengine import FakeEngine

OLD, NEW = "2026.01.01-old", "2026.02.01-new"
LABELS = {"io.hyos.managed": "true", "io.hyos.stack": "t", "io.hyos.role": "server"}


class HyosEngine(FakeEngine):
    """Starting the server does what HyOS's entrypoint does with `.update-on-restart`:
    installs the latest version (unless `install_fails`), then writes server.json."""

    def __init__(self, install_fails: bool = False) -> None:
        super().__init__()
        self.install_fails = install_fails

    async def start(self, container_id: str) -> None:
        await super().start(container_id)
        flag = self.files.pop((container_id, hyos.UPDATE_ON_RESTART_FILE), None)
        if flag is not None and not self.install_fails:
            self.files[(container_id, hyos.GAME_VERSION_FILE)] = f"{NEW}\n".encode()
        self.files[(container_id, SERVER_STATE_FILE)] = b'{"status": "running"}'


@dataclass
class Made:
    id: str


@dataclass
class FakeBackups:
    """What the updater asks of supervisor/backup.py."""

    fail_create: bool = False
    fail_create_times: int = 0  # the first creates that fail
    fail_op: str | None = None  # the first job with a step of this op fails
    created: list[str | None] = field(default_factory=list)
    jobs: list[list[str]] = field(default_factory=list)
    name: str = "t-backup"
    on_swap: Callable[[], None] = lambda: None  # the snapshot's files put back

    async def create(self, tag: str | None = None, prune: bool = True) -> Made:
        if self.fail_create or self.fail_create_times > 0:
            self.fail_create_times -= 1
            raise BackupError("backup failed: restic exited 1")
        self.created.append(tag)
        assert prune is False  # a pinned pre-update snapshot is never pruned by it
        return Made("snap0001")

    async def run_job(self, steps: list[dict[str, Any]], writable: bool = False) -> JobAnswer:
        ops = [str(s["op"]) for s in steps]
        self.jobs.append(ops)
        if self.fail_op is not None and self.fail_op in ops:
            return JobAnswer(1, (), "no space left on device")
        if "swap" in ops:
            self.on_swap()
        return JobAnswer(0, ())


class FakeApi:
    def __init__(self, answers: Callable[[], bool]) -> None:
        self.answers = answers

    async def health(self) -> None:
        if not self.answers():
            raise ApiError(Failure.UNREACHABLE, "connection refused")


class Told(NoAlerts):
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def emit(self, alert: Alert) -> None:
        self.sent.append(alert)


@dataclass
class World:
    engine: HyosEngine
    backups: FakeBackups
    clock: FakeClock
    updater: Updater
    told: Told
    facts: UpdateFacts
    server: str
    # Things that happen at a moment (the clock is moved only by the updater's sleeps).
    at: dict[float, Callable[[], None]] = field(default_factory=dict)


def _world(
    tmp_path: Path,
    *,
    install_fails: bool = False,
    backups: FakeBackups | None = None,
    api_up: Callable[[], bool] = lambda: True,
) -> World:
    engine = HyosEngine(install_fails)
    server = engine.add_container(
        "t-server",
        labels=LABELS,
        state=ContainerState(status="running", running=True),
    ).id
    engine.files[(server, hyos.GAME_VERSION_FILE)] = f"{OLD}\n".encode()
    engine.files[(server, VERSION_STATE_FILE)] = json.dumps({"latest": NEW}).encode()
    engine.files[(server, SERVER_STATE_FILE)] = b'{"status": "running"}'
    settings = Settings(stack="t", state_dir=tmp_path, update=UpdateSettings(gate_s=10, ready_s=30))
    clock, told, facts = FakeClock(), Told(), UpdateFacts()
    fake = backups or FakeBackups()

    def restored() -> None:
        engine.files[(server, hyos.GAME_VERSION_FILE)] = f"{OLD}\n".encode()

    fake.on_swap = restored
    at: dict[float, Callable[[], None]] = {}

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        for moment in sorted(m for m in at if m <= clock()):
            at.pop(moment)()
        await anyio.lowlevel.checkpoint()

    updater = Updater(
        engine,
        settings,
        cast(Backups, fake),
        clock=clock,
        monotonic=clock,
        sleep=sleep,
        tell=told,
        facts=facts,
        api=lambda container_id: cast(Any, FakeApi(api_up)),
    )
    return World(engine, fake, clock, updater, told, facts, server, at)


def _run(world: World, source: Source = Source.CLI, version: str | None = None) -> Transaction:
    async def go() -> Transaction:
        tx = await world.updater.prepare(source, version)
        return await world.updater.run(tx)

    return anyio.run(go)


def _kinds(world: World) -> list[AlertKind]:
    return [a.kind for a in world.told.sent]


def test_a_good_update_goes_through_hyos_and_holds_the_gate(tmp_path: Path) -> None:
    world = _world(tmp_path)
    began = world.clock()
    tx = _run(world)
    assert tx.phase is Phase.DONE and tx.target == NEW and tx.previous == OLD
    verbs = [v for v, _ in world.engine.calls]
    assert verbs == ["stop", "write_file", "start"]  # stop, HyOS's flag, start
    assert world.backups.created == ["pin:pre-update"] and world.backups.jobs == []
    assert world.clock() - began >= 10  # held for gate_s
    assert world.facts.results["applied"] == 1 and world.facts.game_version == NEW
    assert _kinds(world) == [AlertKind.UPDATE_AVAILABLE, AlertKind.UPDATE_APPLIED]
    view = update_view(world.updater.settings, world.clock())
    assert view["current"] == NEW and view["last"]["result"] == "applied"
    assert view["pinned"][0]["snapshot"] == "snap0001" and view["transaction"] is None


def test_a_failed_install_rolls_back_binaries_and_world_from_the_snapshot(
    tmp_path: Path,
) -> None:
    world = _world(tmp_path, install_fails=True)
    tx = _run(world)
    assert tx.phase is Phase.ROLLED_BACK
    assert tx.reason == f"the install failed: {OLD} runs, not {NEW}"
    # Restore whole, beside the world, then swap; start the old; its gate; clean up.
    assert world.backups.jobs == [["discard", "clean", "restic"], ["swap"], ["commit"]]
    assert [v for v, _ in world.engine.calls].count("start") == 2
    record = world.updater.load()[1]
    assert record.bad == (NEW,)
    assert record.last is not None and record.last["rollback_s"] is not None
    assert world.facts.results["rolled_back"] == 1
    assert _kinds(world)[-1] is AlertKind.UPDATE_ROLLED_BACK
    # An automatic source no longer tries it; the operator's explicit version may.
    with pytest.raises(UpdateRefused, match="marked bad"):
        anyio.run(world.updater.prepare, Source.AUTO, None)
    assert anyio.run(world.updater.prepare, Source.CLI, NEW).target == NEW


def test_a_crash_inside_the_gate_rolls_back(tmp_path: Path) -> None:
    world = _world(tmp_path)
    world.at[world.clock() + 6] = lambda: world.engine.exit(world.server, 1)
    tx = _run(world)
    assert tx.phase is Phase.ROLLED_BACK
    assert tx.reason is not None and "exited with code 1" in tx.reason
    assert "into the gate" in tx.reason


def test_a_version_whose_api_never_answers_is_not_ready_and_rolls_back(tmp_path: Path) -> None:
    # The new version's REST /health never answers; the old one's does.
    state = {"version": ""}

    world = _world(tmp_path, api_up=lambda: state["version"] == OLD)

    async def go() -> Transaction:
        tx = await world.updater.prepare(Source.CLI, None)
        original = world.engine.read_file

        async def read(container_id: str, path: str, limit: int = 1 << 20) -> bytes | None:
            data = await original(container_id, path, limit)
            if path == hyos.GAME_VERSION_FILE and data is not None:
                state["version"] = data.decode().strip()
            return data

        world.engine.read_file = read  # type: ignore[method-assign]
        return await world.updater.run(tx)

    tx = anyio.run(go)
    assert tx.phase is Phase.ROLLED_BACK
    assert tx.reason == "not ready within 30 s (REST /health: unreachable)"


def test_a_failed_rollback_leaves_the_server_stopped_and_says_how_to_restore(
    tmp_path: Path,
) -> None:
    world = _world(tmp_path, install_fails=True, backups=FakeBackups(fail_op="discard"))
    tx = _run(world)
    assert tx.phase is Phase.NEEDS_ATTENTION and tx.snapshot == "snap0001"
    info = anyio.run(world.engine.inspect, world.server)
    assert info is not None and not info.state.running  # never a crash loop on broken files
    assert _kinds(world)[-1] is AlertKind.UPDATE_NEEDS_ATTENTION
    view = update_view(world.updater.settings, world.clock())
    assert view["needs_attention"]["restore"] == "hyos-supervisor backup restore snap0001 --now"
    assert world.facts.results["failed"] == 1
    with pytest.raises(UpdateRefused, match="needs attention"):
        anyio.run(world.updater.prepare, Source.CLI, None)
    assert world.updater.resolve() and not world.updater.resolve()


def test_a_failed_snapshot_changes_nothing_and_starts_the_server_again(tmp_path: Path) -> None:
    world = _world(tmp_path, backups=FakeBackups(fail_create=True))
    tx = _run(world)
    assert tx.phase is Phase.ABORTED and tx.reason == "backup failed: restic exited 1"
    assert [v for v, _ in world.engine.calls] == ["stop", "start"]  # no flag was written
    assert world.updater.load()[1].bad == ()


def test_nothing_to_update_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    world = _world(tmp_path)
    world.engine.files[(world.server, VERSION_STATE_FILE)] = json.dumps({"latest": OLD}).encode()
    with pytest.raises(UpdateRefused, match="up to date"):
        anyio.run(world.updater.prepare, Source.CLI, None)
    assert (world.engine.calls == [] and not journal_path(world.updater.settings).exists()) or (
        json.loads(journal_path(world.updater.settings).read_text())["tx"] is None
    )


@pytest.mark.parametrize(
    ("phase", "running", "ends"),
    [
        (Phase.SNAPSHOT, False, Phase.DONE),  # started over from the stop
        (Phase.INSTALL, False, Phase.DONE),  # HyOS asked again, started
        (Phase.GATE, True, Phase.DONE),  # the gate resumed
        (Phase.START, False, Phase.ROLLED_BACK),  # never start a half-installed server
        (Phase.ROLLBACK, False, Phase.ROLLED_BACK),  # the rollback again, from the start
    ],
)
def test_a_killed_supervisor_resumes_or_rolls_back(
    tmp_path: Path, phase: Phase, running: bool, ends: Phase
) -> None:
    world = _world(tmp_path)
    if phase is Phase.GATE:
        world.engine.files[(world.server, hyos.GAME_VERSION_FILE)] = f"{NEW}\n".encode()
    if not running:
        world.engine.exit(world.server, 143)
    tx = Transaction(
        id="cli-1",
        source=Source.CLI,
        previous=OLD,
        target=NEW,
        phase=phase,
        began=world.clock(),
        container=world.server,
        snapshot=None if phase is Phase.SNAPSHOT else "snap0001",
        reason="crashed" if phase is Phase.ROLLBACK else None,
    )
    world.updater._persist(tx)
    ended = anyio.run(world.updater.recover)
    assert ended is not None and ended.phase is ends, ended
    info = anyio.run(world.engine.inspect, world.server)
    assert info is not None and info.state.running
    version = world.engine.files[(world.server, hyos.GAME_VERSION_FILE)].decode().strip()
    if ends is Phase.ROLLED_BACK:
        assert world.backups.jobs[0] == ["discard", "clean", "restic"]
    else:
        assert version == NEW
    assert anyio.run(world.updater.recover) is None  # nothing left to do


def test_a_server_container_removed_meanwhile_needs_attention(tmp_path: Path) -> None:
    world = _world(tmp_path)
    tx = Transaction(
        id="cli-1",
        source=Source.CLI,
        previous=OLD,
        target=NEW,
        phase=Phase.GATE,
        began=world.clock(),
        container=world.server,
        snapshot="snap0001",
    )
    world.updater._persist(tx)
    anyio.run(world.engine.remove, world.server)
    ended = anyio.run(world.updater.recover)
    assert ended is not None and ended.phase is Phase.NEEDS_ATTENTION
    assert ended.reason is not None and "container is gone" in ended.reason


def test_an_unexpected_error_after_the_stop_rolls_back_too(tmp_path: Path) -> None:
    world = _world(tmp_path)

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("a bug")

    world.engine.write_file = broken  # type: ignore[method-assign]
    tx = _run(world)
    assert tx.phase is Phase.ROLLED_BACK and tx.reason == "'a bug'"
    info = anyio.run(world.engine.inspect, world.server)
    assert info is not None and info.state.running


def test_a_snapshot_that_fails_once_is_tried_again(tmp_path: Path) -> None:
    world = _world(tmp_path, backups=FakeBackups(fail_create_times=2))
    tx = _run(world)
    assert tx.phase is Phase.DONE and world.backups.created == ["pin:pre-update"]
