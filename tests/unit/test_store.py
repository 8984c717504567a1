"""The daemon's per-service record, its state file and the live view, without a daemon."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor import hyos
from supervisor.logs import bind
from supervisor.restarts import Pending, ServiceRestartState, ServiceStatus, Step
from supervisor.store import Service, StateStore, live_view, service_status, status_line

LOG = bind(logging.getLogger("test"), stack="s")


def services() -> dict[str, Service]:
    return {"server": Service("server"), "manager": Service("manager")}


def test_save_then_load_restores_the_accounting(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.json")
    saved = services()
    saved["server"].restart = ServiceRestartState(
        status=ServiceStatus.BACKOFF,
        restart_count=3,
        crash_times=(1.0, 2.0),
        pending=Pending(Step.START, 42.5, "crash"),
    )
    saved["server"].container_id = "abc"
    saved["server"].last_finished_at = datetime(2026, 12, 5, 12, 0, 0, 123456, tzinfo=UTC)
    store.save(saved, manager_after_server=True, now=7.0)
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o600
    assert json.loads((tmp_path / "s.json").read_text())["stack"] == "s"

    loaded = services()
    assert store.load(loaded, LOG) is True
    server = loaded["server"]
    assert server.restart == saved["server"].restart
    assert server.container_id == "abc"
    assert server.restart.pending == Pending(Step.START, 42.5, "crash")
    assert server.last_finished_at == saved["server"].last_finished_at
    assert loaded["manager"].restart == ServiceRestartState()


def test_a_file_from_before_pending_steps_resumes_its_restart(tmp_path: Path) -> None:
    """State files written before the pending step moved into the state machine kept the
    due time beside it: a daemon upgraded mid-backoff still restarts the service then."""
    path = tmp_path / "s.json"
    backoff = ServiceRestartState(status=ServiceStatus.BACKOFF, restart_count=1)
    stopped = ServiceRestartState(status=ServiceStatus.STOPPED)
    row = {"container_id": "abc", "last_finished_at": "", "restart_due": 99.0}
    path.write_text(
        json.dumps(
            {
                "services": {
                    "server": {**row, "restart": backoff.to_json() | {"pending": None}},
                    "manager": {**row, "restart": stopped.to_json() | {"pending": None}},
                }
            }
        )
    )
    loaded = services()
    StateStore(path).load(loaded, LOG)
    assert loaded["server"].restart.pending == Pending(Step.START, 99.0, "resumed", cause="resumed")
    assert loaded["manager"].restart.pending is None  # nothing was pending for a stopped one


def test_forget_drops_one_services_accounting_and_keeps_the_other(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.json")
    saved = services()
    saved["manager"].container_id = "m"
    store.save(saved, manager_after_server=False, now=0.0)
    store.forget("server")
    loaded = services()
    store.load(loaded, LOG)
    assert loaded["manager"].container_id == "m"
    assert loaded["server"].restart == ServiceRestartState()
    kept = json.loads((tmp_path / "s.json").read_text())["services"]
    assert kept["server"].keys() == {"totals"}  # its totals stay (supervisor.totals)
    assert kept["manager"]["container_id"] == "m"


def test_an_unreadable_record_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "s.json").write_text(
        json.dumps({"services": {"server": {"restart": {"status": "??"}}}})
    )
    loaded = services()
    with caplog.at_level(logging.WARNING):
        assert StateStore(tmp_path / "s.json").load(loaded, LOG) is False
    assert loaded["server"].restart == ServiceRestartState()
    assert "ignoring unreadable saved state" in caplog.text


def test_a_waiting_login_is_needs_auth_in_the_view_and_the_status_line() -> None:
    running = services()
    running["server"].login = hyos.Login(status="pending", url="https://x/device", code="ABCD")
    running["server"].health = "starting"
    assert service_status(running["server"]) is ServiceStatus.NEEDS_AUTH
    view = live_view("s", running, 100.0, stopping=False, heartbeat_age_s=0.1234, reconciles=2)
    assert view["services"]["server"]["needs_auth"] is True
    assert view["heartbeat_age_s"] == 0.123 and view["reconciles"] == 2
    assert "login code ABCD at https://x/device" in status_line(running)
    assert status_line(running).startswith("server=needs_auth(starting)")
