"""Plan: desired specs + observed containers -> keep, create, start, remove."""

from __future__ import annotations

from datetime import datetime

from entrypoint.contract import LABEL_SPEC_HASH
from supervisor.dockertypes import Observed
from supervisor.plan import (
    Desired,
    ServicePlan,
    plan_service,
    plan_stack,
    strays,
)


def desired(role: str = "server", spec_hash: str = "h1") -> Desired:
    body = {"Image": "x:1", "Labels": {LABEL_SPEC_HASH: spec_hash}}
    return Desired(role, f"hyos-{role}", body, "x:1", spec_hash)


def observed(
    cid: str,
    role: str = "server",
    spec_hash: str = "h1",
    state: str = "running",
    created: str = "2024-01-01T00:00:00Z",
    health: str | None = None,
) -> Observed:
    when = datetime.fromisoformat(created)
    return Observed(cid, f"hyos-{role}", role, spec_hash, state, health, when)


def test_desired_spec_hash_from_labels() -> None:
    assert desired(spec_hash="abc").spec_hash == "abc"


def test_missing_creates_and_starts() -> None:
    plan = plan_service(desired(), [])
    assert plan.keep is None
    assert plan.create and plan.start
    assert plan.remove == ()
    assert not plan.changes_nothing
    assert "missing" in plan.reason


def test_other_roles_are_ignored() -> None:
    plan = plan_service(desired("server"), [observed("m1", role="manager")])
    assert plan.create and plan.remove == ()


def test_matching_running_is_kept() -> None:
    running = observed("a")
    plan = plan_service(desired(), [running])
    assert plan.keep is running
    assert not plan.create and not plan.start
    assert plan.remove == ()
    assert plan.changes_nothing
    assert plan.reason == "up to date"


def test_matching_exited_is_started_only() -> None:
    exited = observed("a", state="exited")
    plan = plan_service(desired(), [exited])
    assert plan.keep is exited
    assert not plan.create
    assert plan.start
    assert plan.remove == ()
    assert not plan.changes_nothing
    assert "exited" in plan.reason


def test_matching_created_is_started() -> None:
    plan = plan_service(desired(), [observed("a", state="created")])
    assert plan.keep is not None and not plan.create and plan.start


def test_drifted_is_removed_and_recreated() -> None:
    old = observed("a", spec_hash="old")
    plan = plan_service(desired(spec_hash="new"), [old])
    assert plan.keep is None
    assert plan.remove == (old,)
    assert plan.create and plan.start
    assert not plan.changes_nothing
    assert "drift" in plan.reason


def test_drifted_exited_is_also_removed() -> None:
    old = observed("a", spec_hash="old", state="exited")
    plan = plan_service(desired(spec_hash="new"), [old])
    assert plan.remove == (old,) and plan.create


def test_duplicates_keep_the_running_match() -> None:
    exited_newer = observed("new", state="exited", created="2024-06-01T00:00:00Z")
    running_older = observed("old", state="running", created="2024-01-01T00:00:00Z")
    plan = plan_service(desired(), [exited_newer, running_older])
    assert plan.keep is running_older
    assert plan.remove == (exited_newer,)
    assert not plan.create and not plan.start
    assert not plan.changes_nothing
    assert "duplicate" in plan.reason


def test_duplicates_keep_the_newest_when_none_runs() -> None:
    older = observed("a", state="exited", created="2024-01-01T00:00:00Z")
    newest = observed("b", state="exited", created="2024-03-01T00:00:00Z")
    middle = observed("c", state="created", created="2024-02-01T00:00:00Z")
    plan = plan_service(desired(), [older, newest, middle])
    assert plan.keep is newest
    assert set(plan.remove) == {older, middle}
    assert plan.start and not plan.create


def test_duplicates_keep_the_newest_running() -> None:
    older = observed("a", created="2024-01-01T00:00:00Z")
    newest = observed("b", created="2024-03-01T00:00:00Z")
    plan = plan_service(desired(), [newest, older])
    assert plan.keep is newest
    assert plan.remove == (older,)


def test_match_kept_and_drifted_removed() -> None:
    match = observed("a")
    drifted = observed("b", spec_hash="old")
    plan = plan_service(desired(), [drifted, match])
    assert plan.keep is match
    assert plan.remove == (drifted,)
    assert not plan.create and not plan.start


def test_remove_keeps_observation_order() -> None:
    drifted = [observed(str(i), spec_hash=f"old{i}", state="exited") for i in range(4)]
    plan = plan_service(desired(), drifted)
    assert plan.remove == tuple(drifted)


def test_running_property() -> None:
    for state in ("running", "restarting", "paused"):
        assert observed("a", state=state).running
    for state in ("created", "exited", "dead", "removing", ""):
        assert not observed("a", state=state).running


def test_plan_stack_keeps_start_order() -> None:
    wanted = {"server": desired("server", "s"), "manager": desired("manager", "m")}
    seen = [observed("m1", "manager", "m"), observed("s1", "server", "old")]
    plans = plan_stack(wanted, seen)
    assert [p.role for p in plans] == ["server", "manager"]
    server, manager = plans
    assert server.create and server.remove == (seen[1],)
    assert manager.changes_nothing and manager.keep is seen[0]


def test_plan_stack_manager_first_when_asked() -> None:
    wanted = {"manager": desired("manager"), "server": desired("server")}
    assert [p.role for p in plan_stack(wanted, [])] == ["manager", "server"]


def test_plan_stack_accepts_a_generator() -> None:
    wanted = {"server": desired("server", "s"), "manager": desired("manager", "m")}
    seen = [observed("s1", "server", "s"), observed("m1", "manager", "m")]
    plans = plan_stack(wanted, (o for o in seen))
    assert all(p.changes_nothing for p in plans)


def test_second_up_changes_nothing() -> None:
    wanted = {"server": desired("server", "s"), "manager": desired("manager", "m")}
    first = plan_stack(wanted, [])
    assert all(p.create and p.start for p in first)
    after = [observed("s1", "server", "s"), observed("m1", "manager", "m")]
    assert all(p.changes_nothing for p in plan_stack(wanted, after))


def test_strays() -> None:
    wanted = {"server": desired("server")}
    prepare = observed("p1", role="prepare")
    unlabelled_role = observed("x1", role="")
    manager = observed("m1", role="manager")
    server = observed("s1")
    assert strays(wanted, [server, prepare, manager, unlabelled_role]) == [
        prepare,
        manager,
        unlabelled_role,
    ]
    assert strays(wanted, [server]) == []


def test_service_plan_is_data() -> None:
    plan = ServicePlan("server", desired(), None)
    assert plan.create and plan.start and plan.remove == () and plan.reason == ""


def test_a_running_game_log_helper_is_no_stray_and_a_finished_one_is() -> None:
    """A stack pass during a crash report's reads or a prune must not remove the helper."""
    wanted = {"server": desired("server")}
    running = observed("l1", role="logs")
    exited = observed("l2", role="logs", state="exited")
    assert strays(wanted, [running, exited]) == [exited]
