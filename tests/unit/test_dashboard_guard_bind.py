"""The manager's Docker socket is a file mount: it holds the guard socket that existed when
the manager started. When the guard binds a new one, a manager running since before is
restarted once; one started after, or not running, is left alone (stack.GUARD_SOCKET_TARGET,
dashboard.Dashboard.restart_manager_started_before). The fake engine stands in for Docker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from entrypoint.contract import LABEL_MANAGED, LABEL_ROLE, LABEL_STACK
from supervisor.dashboard import Dashboard
from supervisor.dockertypes import ContainerState
from supervisor.restarts import Step
from tests.fakeengine import FakeEngine
from tests.unitkit import fake_supervision, lone_worker

pytestmark = pytest.mark.anyio

BOUND_AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def dashboard_with_manager(tmp_path: Path, state: ContainerState) -> tuple[Dashboard, FakeEngine]:
    engine = FakeEngine()
    labels = {LABEL_MANAGED: "true", LABEL_STACK: "hyos", LABEL_ROLE: "manager"}
    engine.add_container("hyos-manager", container_id="m1", labels=labels, state=state)
    sup = fake_supervision(tmp_path, engine, stack="hyos")
    workers = {role: lone_worker(sup, role) for role in sup.services}
    return Dashboard(sup, workers), engine


def pending_step(dashboard: Dashboard) -> Step | None:
    pending = dashboard.workers["manager"].service.restart.pending
    return None if pending is None else pending.step


@pytest.mark.parametrize(
    ("state", "restarted"),
    [
        (ContainerState("running", True, started_at=BOUND_AT - timedelta(seconds=5)), True),
        (ContainerState("running", True, started_at=BOUND_AT + timedelta(seconds=1)), False),
        (ContainerState("running", True, started_at=BOUND_AT), False),
        (ContainerState("exited", False, started_at=BOUND_AT - timedelta(seconds=5)), False),
        (ContainerState("created", False), False),
    ],
    ids=["started-before", "started-after", "started-at", "exited", "never-started"],
)
async def test_only_a_manager_running_since_before_the_bind_is_restarted(
    tmp_path: Path, state: ContainerState, restarted: bool
) -> None:
    dashboard, _ = dashboard_with_manager(tmp_path, state)
    await dashboard.restart_manager_started_before(BOUND_AT)
    assert pending_step(dashboard) == (Step.RESTART if restarted else None)


async def test_nothing_is_restarted_while_the_daemon_stops(tmp_path: Path) -> None:
    started = ContainerState("running", True, started_at=BOUND_AT - timedelta(seconds=5))
    dashboard, _ = dashboard_with_manager(tmp_path, started)
    dashboard.sup.stopping = True
    await dashboard.restart_manager_started_before(BOUND_AT)
    assert pending_step(dashboard) is None


async def test_a_foreign_container_is_never_restarted(tmp_path: Path) -> None:
    started = ContainerState("running", True, started_at=BOUND_AT - timedelta(seconds=5))
    dashboard, engine = dashboard_with_manager(tmp_path, started)
    engine.containers["m1"].body = {"Labels": {LABEL_ROLE: "manager"}}  # not the stack's
    await dashboard.restart_manager_started_before(BOUND_AT)
    assert pending_step(dashboard) is None
