"""One exit judgement: each exit is judged once into one value (code, signal, OOM kill,
whether it was asked for, what HyOS's state files add) that the restart decision, the
`exited` log line and `status` all read. Driven through a ServiceWorker with the fake
engine and the fake clock; no Docker."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor import hyos, restarts
from supervisor.dockertypes import ContainerExit, ContainerInfo, ContainerState, EngineEvent
from supervisor.hyos import ServerExit
from supervisor.restarts import ExitKind, Step
from supervisor.store import Service, StateStore, live_view
from supervisor.worker import ServiceWorker
from tests.fakeclock import FakeClock
from tests.fakeengine import FakeEngine
from tests.unitkit import engine_with_server, fake_supervision, lone_worker, server_event

pytestmark = pytest.mark.anyio

CID = "c1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine() -> FakeEngine:
    return engine_with_server(CID)


@pytest.fixture
def worker(tmp_path: Path, engine: FakeEngine, clock: FakeClock) -> ServiceWorker:
    return lone_worker(fake_supervision(tmp_path, engine, clock), container_id=CID)


event = server_event


async def run_then_die(
    worker: ServiceWorker, clock: FakeClock, code: int | None, *, oom: bool = False
) -> None:
    await worker._on_event(event("start", clock.now))
    clock.advance(30)
    if oom:
        await worker._on_event(event("oom", clock.now))
    await worker._on_event(event("die", clock.now, code))


def view_row(worker: ServiceWorker) -> dict[str, object]:
    sup = worker.sup
    view = live_view(
        "t", sup.services, sup.clock(), stopping=False, heartbeat_age_s=0, reconciles=0
    )
    row: dict[str, object] = view["services"]["server"]
    return row


def test_judge_exit_is_one_value_with_the_code_the_signal_and_the_reason() -> None:
    judged = restarts.judge_exit("server", 137, True, False)
    assert (judged.kind, judged.signal, judged.oom_killed, judged.failure) == (
        ExitKind.OOM,
        "SIGKILL",
        True,
        True,
    )
    assert judged.reason == restarts.describe_exit("server", 137, True, False)
    assert judged.to_json()["kind"] == "oom"
    asked = restarts.judge_exit("server", 143, False, True)
    assert (asked.kind, asked.signal, asked.asked, asked.failure) == (
        ExitKind.CLEAN,
        "SIGTERM",
        True,
        False,
    )
    button = restarts.judge_exit("server", 143, False, False, ServerExit.UPDATE)
    assert button.kind is ExitKind.UPDATE_BUTTON
    assert button.to_json()["explained"] == "update"
    assert restarts.judge_exit("manager", 1, False, False).signal is None


def test_an_exit_is_read_from_an_event_or_an_inspect_never_made_up() -> None:
    die = EngineEvent("die", CID, 5 * 10**9, name="t-server", exit_code=3)
    exited = ContainerExit.of_event(die, oom_killed=False)
    assert exited == ContainerExit(CID, "t-server", 3, False, die.time)
    assert ContainerExit.of_event(EngineEvent("die", CID, 1), oom_killed=False) is None
    state = ContainerState(status="exited", exit_code=137, oom_killed=True)
    info = ContainerInfo(id=CID, name="t-server", state=state)
    assert ContainerExit.of_info(info) == ContainerExit(CID, "t-server", 137, True, None)


async def test_the_decision_the_log_line_and_the_status_read_one_judgement(
    worker: ServiceWorker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="test.exits"):
        await run_then_die(worker, clock, 137, oom=True)
    judged = worker.service.last_exit
    assert judged is not None and judged.kind is ExitKind.OOM
    assert worker.service.restart.last_reason == judged.reason
    pending = worker.service.restart.pending
    assert pending is not None and pending.step is Step.START and pending.reason == judged.reason
    [line] = [r for r in caplog.records if r.getMessage() == "exited"]
    said = {key: line.__dict__[key] for key in ("exit_code", "oom_killed", "exit_kind", "signal")}
    assert said == {"exit_code": 137, "oom_killed": True, "exit_kind": "oom", "signal": "SIGKILL"}
    assert line.__dict__["reason"] == judged.reason
    assert view_row(worker)["last_exit"] == judged.to_json()


async def test_a_die_without_a_code_is_judged_from_the_inspect(
    worker: ServiceWorker, engine: FakeEngine, clock: FakeClock
) -> None:
    await engine.start(CID)
    engine.exit(CID, 139)  # the container's own state now says 139
    await run_then_die(worker, clock, None)
    judged = worker.service.last_exit
    assert judged is not None
    assert (judged.kind, judged.exit_code, judged.signal) == (ExitKind.CRASH, 139, "SIGSEGV")


async def test_the_update_button_is_judged_from_hyos_state_once(
    worker: ServiceWorker, engine: FakeEngine, clock: FakeClock
) -> None:
    """HyOS's update.json, written during this run, turns a 143 into the update button:
    installed on the next start, not a crash."""
    await worker._on_event(event("start", clock.now))
    written = clock.advance(10)
    engine.files[(CID, hyos.UPDATE_FILE)] = (
        b'{"status": "downloading", "updated_at": "'
        + datetime.fromtimestamp(written, UTC).isoformat().encode()
        + b'"}'
    )
    clock.advance(10)
    await worker._on_event(event("die", clock.now, 143))
    judged = worker.service.last_exit
    assert judged is not None
    assert (judged.kind, judged.explained, judged.failure) == (
        ExitKind.UPDATE_BUTTON,
        ServerExit.UPDATE,
        False,
    )
    pending = worker.service.restart.pending
    assert pending is not None and pending.step is Step.INSTALL_UPDATE


def test_the_code_judges_exits_and_reads_grace_periods_in_one_place() -> None:
    """scripts/code_shape.py's figures for issue 23's item 4, held: one judge_exit call
    outside restarts.py, no engine value built from an event, one grace-period reader."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(root / "scripts" / "code_shape.py"), str(root / "supervisor")],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    judged = lines.index("exit judgements or engine values built outside their modules: 1")
    assert lines[judged + 1].strip().startswith("accounting.py:")
    grace = lines.index("grace period reads: 2")
    assert all(line.strip().startswith("settings.py:") for line in lines[grace + 1 : grace + 3])


def test_a_judgement_round_trips_and_refuses_what_is_malformed() -> None:
    for judged in (
        restarts.judge_exit("server", 137, True, False),
        restarts.judge_exit("server", 1, False, False, ServerExit.LOGIN_ENDED),
    ):
        assert restarts.ExitJudgement.from_json(json.loads(json.dumps(judged.to_json()))) == judged
    assert restarts.ExitJudgement.from_json(None) is None
    good = restarts.judge_exit("manager", 1, False, False).to_json()
    bad: object
    for bad in ([], {**good, "kind": "?"}, {**good, "exit_code": "1"}, {**good, "asked": None},
                {**good, "explained": "?"}, {**good, "reason": 3}):  # fmt: skip
        with pytest.raises(ValueError):
            restarts.ExitJudgement.from_json(bad)


async def test_the_last_exit_outlives_the_daemon_and_old_files_have_none(
    worker: ServiceWorker, clock: FakeClock, tmp_path: Path
) -> None:
    await run_then_die(worker, clock, 3)
    judged = worker.service.last_exit
    assert judged is not None and judged.kind is ExitKind.CRASH
    loaded = {"server": Service("server"), "manager": Service("manager")}
    StateStore(tmp_path / "state.json").load(loaded, worker.log)
    assert loaded["server"].last_exit == judged
    data = json.loads((tmp_path / "state.json").read_text())
    del data["services"]["server"]["last_exit"]  # as the previous release wrote it
    (tmp_path / "state.json").write_text(json.dumps(data))
    older = {"server": Service("server")}
    StateStore(tmp_path / "state.json").load(older, worker.log)
    assert older["server"].last_exit is None
    assert older["server"].restart == worker.service.restart
