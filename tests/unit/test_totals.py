"""Totals that only grow: restarts by cause, crashes, unhealthy restarts, crash-loop
entries and the dashboard's stops, per service, beside the backoff count that starts
over. Driven through a ServiceWorker with the fake engine and the fake clock; kept in the
state file (old files without them load at zero) and shown in `status --json`'s view."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import pytest

from supervisor import cli, restarts, totals
from supervisor.dashboard import Dashboard
from supervisor.guard_rules import Allow
from supervisor.logs import bind
from supervisor.restarts import Action, Decision, ExitKind, ServiceStatus, Step
from supervisor.store import Service, StateStore, live_view
from supervisor.totals import Totals
from supervisor.worker import ServiceWorker
from tests.fakeclock import FakeClock
from tests.fakeengine import FakeEngine
from tests.unitkit import engine_with_server, fake_supervision, lone_worker, server_event

CID = "c1"
LOG = bind(logging.getLogger("test.totals"), stack="t")
# After the fake engine's own clock began (its containers' StartedAt): an unhealthy
# check compares the two.
NOW = 1_714_557_600.0 + 3600


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def engine() -> FakeEngine:
    return engine_with_server(CID)


@pytest.fixture
def worker(tmp_path: Path, engine: FakeEngine, clock: FakeClock) -> ServiceWorker:
    return lone_worker(fake_supervision(tmp_path, engine, clock), container_id=CID)


event = server_event


async def started(worker: ServiceWorker, engine: FakeEngine, clock: FakeClock) -> None:
    await engine.start(CID)
    await worker._on_event(event("start", clock.now))


async def crash(worker: ServiceWorker, clock: FakeClock, code: int = 1) -> restarts.Pending | None:
    """The server dies by itself; the worker carries out what was decided, once due."""
    clock.advance(5)
    await worker._on_event(event("die", clock.now, code))
    pending = worker.service.restart.pending
    if pending is not None:
        clock.advance(pending.due_at - clock.now)
        assert await worker.step_if_due() is None
    return pending


# --- the values ------------------------------------------------------------------------


def test_totals_only_grow_and_count_by_what_happened() -> None:
    running = restarts.on_started(restarts.ServiceRestartState(), 0.0)
    held = restarts.ServiceRestartState(status=ServiceStatus.CRASH_LOOP)
    judged = restarts.judge_exit("server", 1, False, False)
    asked = restarts.judge_exit("server", 143, False, True)
    counted = totals.after_exit(Totals(), judged, running, running)
    counted = totals.after_exit(counted, asked, running, running)
    counted = totals.after_exit(counted, judged, running, held)  # into the loop
    counted = totals.after_exit(counted, judged, held, held)  # already held: no entry
    counted = totals.after_unhealthy(counted, Decision(Action.RESTART), running, running)
    counted = totals.after_unhealthy(counted, Decision(Action.STOP_CRASH_LOOP), running, held)
    counted = totals.after_unhealthy(counted, Decision(Action.NONE), running, running)
    counted = totals.after_issue(counted, restarts.Pending(Step.START, 0, cause="crash"))
    counted = totals.after_issue(counted, restarts.Pending(Step.START, 0))  # an old file's
    counted = totals.after_dashboard_stop(counted)
    assert counted == Totals(
        restarts={"crash": 1, "unknown": 1},
        crashes=3,
        unhealthy_restarts=1,
        crash_loops=2,
        dashboard_stops=1,
    )
    assert counted.to_json()["restarts_total"] == 2


def test_totals_round_trip_through_json_and_refuse_what_is_malformed() -> None:
    counted = Totals({"crash": 3, "operator": 1}, 3, 1, 1, 2)
    assert Totals.from_json(json.loads(json.dumps(counted.to_json()))) == counted
    assert Totals.from_json(None) == Totals()  # a state file from before the totals
    assert Totals.from_json({}) == Totals()
    bad: object
    for bad in (
        [],
        {"crashes": -1},
        {"crashes": True},
        {"restarts": {"crash": 1.5}},
        {"restarts": []},
    ):
        with pytest.raises(ValueError):
            Totals.from_json(bad)


def test_a_pending_cause_round_trips_and_old_pendings_load_without_one() -> None:
    pending = restarts.Pending(Step.START, 5.0, "crash (exit 1)", 1.0, "crash")
    assert restarts.Pending.from_json(pending.to_json()) == pending
    old = {"step": "start", "due_at": 5.0, "reason": "crash (exit 1)", "backoff_s": 1.0}
    assert restarts.Pending.from_json(old) == restarts.Pending(
        Step.START, 5.0, "crash (exit 1)", 1.0
    )
    with pytest.raises(ValueError):
        restarts.Pending.from_json({**old, "cause": 3})


# --- counted by the worker -------------------------------------------------------------


@pytest.mark.anyio
async def test_crashes_an_unhealthy_restart_and_a_crash_loop_are_counted_for_good(
    tmp_path: Path, worker: ServiceWorker, engine: FakeEngine, clock: FakeClock
) -> None:
    service = worker.service
    await started(worker, engine, clock)
    await crash(worker, clock)
    await crash(worker, clock, 139)
    assert service.restart.restart_count == 2
    # Healthy long enough: the backoff count starts over; the totals do not.
    await worker._on_event(event("start", clock.now))
    await worker._on_event(event("health_status: healthy", clock.now))
    clock.advance(worker.sup.policy.reset_after_s + worker.sup.policy.crash_loop_window_s)
    await crash(worker, clock)
    assert service.restart.restart_count == 1
    assert service.totals == Totals(restarts={"crash": 3}, crashes=3)

    # Unhealthy while running: one restart, at once (stop as ours, then start).
    await worker._on_event(event("start", clock.now))
    clock.advance(60)
    engine.calls.clear()
    await worker._on_event(event("health_status: unhealthy", clock.now))
    assert await worker.step_if_due() is None
    assert engine.calls == [("stop", CID), ("start", CID)]
    assert service.totals.unhealthy_restarts == 1
    assert service.totals.restarts == {"crash": 3, "unhealthy": 1}

    # Crash until the loop: five failures inside the window (the unhealthy one counts).
    await worker._on_event(event("start", clock.now))
    decided = [await crash(worker, clock) for _ in range(3)]
    assert service.restart.status is ServiceStatus.CRASH_LOOP
    assert decided[-1] is None  # held: nothing pending, nothing restarted
    # Another failure while held (an exit a pass accounts late) is a crash, no new entry.
    await crash(worker, clock)
    assert service.totals == Totals(
        restarts={"crash": 5, "unhealthy": 1}, crashes=7, unhealthy_restarts=1, crash_loops=1
    )

    # The operator's restart clears the state machine, not the totals.
    service.restart = restarts.reset(service.restart)
    worker.request(Step.START, "operator", cause="operator")
    assert await worker.step_if_due() is None
    assert service.restart.restart_count == 0
    assert service.totals.restarts == {"crash": 5, "unhealthy": 1, "operator": 1}
    assert service.totals.crash_loops == 1

    # Kept with the state file: a fresh daemon reads them back, and status shows them.
    loaded = {"server": Service("server"), "manager": Service("manager")}
    StateStore(tmp_path / "state.json").load(loaded, LOG)
    assert loaded["server"].totals == service.totals
    view = live_view("t", loaded, clock.now, stopping=False, heartbeat_age_s=0, reconciles=0)
    shown = view["services"]["server"]["totals"]
    assert shown["restarts"] == {"crash": 5, "operator": 1, "unhealthy": 1}
    assert (shown["restarts_total"], shown["crashes"], shown["crash_loops"]) == (7, 7, 1)
    assert shown == json.loads(json.dumps(shown))


@pytest.mark.anyio
async def test_a_stop_of_ours_or_the_update_button_is_no_crash(
    worker: ServiceWorker, engine: FakeEngine, clock: FakeClock
) -> None:
    await started(worker, engine, clock)
    worker.request(Step.RESTART, "secrets rotated", cause="rotation")
    assert await worker.step_if_due() is None
    clock.advance(1)
    await worker._on_event(event("die", clock.now, 143))  # the stop it sent
    assert worker.service.last_exit is not None
    assert worker.service.last_exit.kind is ExitKind.CLEAN
    assert worker.service.totals == Totals(restarts={"rotation": 1})


@pytest.mark.anyio
async def test_the_dashboards_stops_are_counted_in_the_servers_worker(
    worker: ServiceWorker, engine: FakeEngine, clock: FakeClock
) -> None:
    await started(worker, engine, clock)
    dashboard = Dashboard(worker.sup, {"server": worker})
    allowed = {
        rule: Allow(rule, f"/containers/{CID}/{rule.split('-')[1]}", container_id=CID)
        for rule in ("container-stop", "container-restart")
    }
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        for rule, status in (("container-stop", 204), ("container-restart", 204),
                             ("container-stop", 304), ("container-stop", 500)):  # fmt: skip
            answered = await dashboard.on_allowed(allowed[rule])
            assert answered is not None
            answered(status)
        with anyio.fail_after(5):
            while worker.service.totals.dashboard_stops < 2:
                await anyio.sleep(0.01)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert worker.service.totals.dashboard_stops == 2  # 304 and 500 stopped nothing
    assert worker.service.totals.crashes == 0


# --- the state file --------------------------------------------------------------------


def test_a_state_file_from_before_the_totals_still_loads(tmp_path: Path) -> None:
    """Written by the previous release: no totals, a pending step without a cause."""
    path = tmp_path / "t.json"
    restart = {
        "version": 1,
        "status": "backoff",
        "crash_times": [1.0, 2.0],
        "restart_count": 2,
        "last_backoff_s": 2.0,
        "started_at": None,
        "healthy_since": None,
        "unhealthy_handled": False,
        "last_reason": "crash: crash (exit 1)",
        "pending": {
            "step": "start",
            "due_at": 9.0,
            "reason": "crash: crash (exit 1)",
            "backoff_s": 2.0,
        },
    }
    saved = {"restart": restart, "container_id": CID, "last_finished_at": ""}
    path.write_text(json.dumps({"stack": "t", "services": {"server": saved}}))
    services = {"server": Service("server"), "manager": Service("manager")}
    StateStore(path).load(services, LOG)
    server = services["server"]
    assert server.totals == Totals()
    assert server.restart.restart_count == 2
    assert server.restart.pending == restarts.Pending(Step.START, 9.0, "crash: crash (exit 1)", 2.0)
    assert server.container_id == CID
    # Issued later, it counts as a restart of unknown cause.
    assert totals.after_issue(server.totals, server.restart.pending).restarts == {"unknown": 1}


def test_unreadable_totals_cost_only_the_totals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.json"
    fresh = Service("server")
    fresh.restart = restarts.on_started(fresh.restart, 5.0)
    StateStore(path).save({"server": fresh}, False, 5.0)
    data = json.loads(path.read_text())
    data["services"]["server"]["totals"] = {"crashes": "many"}
    path.write_text(json.dumps(data))
    services = {"server": Service("server")}
    with caplog.at_level(logging.WARNING, logger="test.totals"):
        StateStore(path).load(services, LOG)
    assert services["server"].totals == Totals()
    assert services["server"].restart.status is ServiceStatus.RUNNING
    assert any(r.getMessage() == "ignoring unreadable saved totals" for r in caplog.records)


def test_an_operator_restart_without_a_daemon_keeps_the_totals_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    server = Service("server", totals=Totals({"crash": 2}, crashes=2))
    server.restart = restarts.on_started(server.restart, 5.0)
    StateStore(path).save({"server": server}, False, 5.0)
    StateStore(path).forget("server")
    services = {"server": Service("server")}
    StateStore(path).load(services, LOG)
    assert services["server"].totals == Totals({"crash": 2, "operator": 1}, crashes=2)
    assert services["server"].restart == restarts.ServiceRestartState()  # a clean slate


@pytest.mark.anyio
async def test_status_json_shows_the_totals_beside_the_backoff_count(
    tmp_path: Path, engine: FakeEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    sup = fake_supervision(tmp_path, engine, clock)
    server = sup.services["server"]
    server.totals = Totals({"crash": 4, "unhealthy": 1}, crashes=4, unhealthy_restarts=1)
    server.restart = restarts.ServiceRestartState(status=ServiceStatus.RUNNING, restart_count=0)
    view = live_view("t", sup.services, clock.now, stopping=False, heartbeat_age_s=0, reconciles=3)
    monkeypatch.setattr(cli, "_daemon_view", lambda settings: view)
    args = cli._parser().parse_args(["status", "--json"])
    assert await cli._status(args, sup.settings, engine) == cli.EX_OK
    shown = json.loads(capsys.readouterr().out)
    [row] = [r for r in shown["services"] if r["service"] == "server"]
    assert row["restart_count"] == 0  # the backoff count: it started over
    assert row["supervisor"]["totals"]["restarts"] == {"crash": 4, "unhealthy": 1}
    assert row["supervisor"]["totals"]["restarts_total"] == 5
    assert row["supervisor"]["totals"]["crashes"] == 4
