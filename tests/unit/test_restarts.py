"""Restart state machine, driven by a fake wall clock."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.hyos import ServerExit
from supervisor.restarts import (
    Action,
    ExitKind,
    Pending,
    RestartPolicy,
    ServiceRestartState,
    ServiceStatus,
    Step,
    backoff_for,
    cancel_pending,
    classify_exit,
    describe_exit,
    issue,
    on_exit,
    on_healthy,
    on_started,
    on_unhealthy,
    request,
    reset,
)
from tests.fakeclock import T0, FakeClock

POLICY = RestartPolicy()


def running(now: float = T0) -> ServiceRestartState:
    return on_started(ServiceRestartState(), now)


def crash_and_restart(
    state: ServiceRestartState, clock: FakeClock, policy: RestartPolicy = POLICY
) -> tuple[ServiceRestartState, float]:
    """One crash; if restarted, wait out the backoff and start again."""
    state, decision = on_exit(state, ExitKind.CRASH, clock.now, policy)
    if decision.action is Action.RESTART:
        clock.advance(decision.backoff_s)
        state = on_started(state, clock.now)
    return state, decision.backoff_s


# --- classification -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "code", "oom", "requested", "kind"),
    [
        ("server", 0, False, False, ExitKind.CLEAN),
        ("server", 1, False, False, ExitKind.CRASH),
        ("server", 2, False, False, ExitKind.NEEDS_AUTH),
        ("server", 3, False, False, ExitKind.CRASH),
        ("server", 7, False, False, ExitKind.CRASH),
        ("server", 8, False, False, ExitKind.UPDATE),
        ("server", 137, False, False, ExitKind.SIGNALLED),
        ("server", 143, False, False, ExitKind.SIGNALLED),
        ("server", 143, False, True, ExitKind.CLEAN),  # our own SIGTERM
        ("server", 137, False, True, ExitKind.CLEAN),  # our stop, after the grace period
        ("server", 137, True, False, ExitKind.OOM),
        ("server", 1, True, False, ExitKind.OOM),
        ("server", 139, False, False, ExitKind.CRASH),  # segfault is a crash, not a kill
        # Hytale's codes mean nothing for the manager.
        ("manager", 2, False, False, ExitKind.CRASH),
        ("manager", 8, False, False, ExitKind.CRASH),
        ("manager", 0, False, False, ExitKind.CLEAN),
        ("manager", 143, False, False, ExitKind.SIGNALLED),
    ],
)
def test_classify_exit(role: str, code: int, oom: bool, requested: bool, kind: ExitKind) -> None:
    assert classify_exit(role, code, oom, requested) is kind


def test_describe_exit_reasons() -> None:
    assert "world generation" in describe_exit("server", 3, False, False)
    assert "(exit 3)" in describe_exit("server", 3, False, False)
    assert "authentication" in describe_exit("server", 2, False, False)
    assert "update" in describe_exit("server", 8, False, False)
    assert "out-of-memory" in describe_exit("server", 137, True, False)
    assert "SIGTERM" in describe_exit("server", 143, False, False)
    assert "did not send" in describe_exit("manager", 137, False, False)
    assert "stopped by the supervisor" in describe_exit("server", 143, False, True)
    assert describe_exit("manager", 2, False, False).startswith("crash")
    assert "SIGSEGV" in describe_exit("manager", 139, False, False)


# --- backoff ------------------------------------------------------------------------


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_for(n, POLICY) for n in range(1, 12)] == [
        1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300,
    ]  # fmt: skip
    assert backoff_for(0, POLICY) == 0
    assert backoff_for(10_000, POLICY) == 300


def test_crashes_restart_with_growing_backoff() -> None:
    # A generous crash-loop limit so only the backoff is under test.
    policy = RestartPolicy(crash_loop_limit=100)
    clock = FakeClock()
    state = running(clock.now)
    waits = []
    for _ in range(11):
        state, wait = crash_and_restart(state, clock, policy)
        waits.append(wait)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert state.restart_count == 11
    assert state.last_backoff_s == 300


def test_crash_sets_backoff_status() -> None:
    state, decision = on_exit(running(), ExitKind.CRASH, T0 + 5, POLICY, reason="crash (exit 1)")
    assert decision.action is Action.RESTART
    assert decision.backoff_s == 1
    assert decision.reason == "crash (exit 1)"
    assert state.status is ServiceStatus.BACKOFF
    assert state.crash_times == (T0 + 5,)
    assert on_started(state, T0 + 6).status is ServiceStatus.RUNNING


def test_backoff_resets_after_healthy_uptime() -> None:
    clock = FakeClock()
    state = running(clock.now)
    for _ in range(3):
        state, _ = crash_and_restart(state, clock)
    assert state.last_backoff_s == 4
    state = on_healthy(state, clock.now)
    clock.advance(POLICY.reset_after_s)  # healthy for exactly the reset period
    state, decision = on_exit(state, ExitKind.CRASH, clock.now, POLICY)
    assert decision.backoff_s == POLICY.backoff_base_s
    assert state.restart_count == 1


def test_backoff_not_reset_by_short_healthy_uptime() -> None:
    clock = FakeClock()
    state = running(clock.now)
    for _ in range(3):
        state, _ = crash_and_restart(state, clock)
    state = on_healthy(state, clock.now)
    clock.advance(POLICY.reset_after_s - 1)
    _, decision = on_exit(state, ExitKind.CRASH, clock.now, POLICY)
    assert decision.backoff_s == 8


def test_running_without_healthy_does_not_reset_backoff() -> None:
    # Uptime alone is not health: a container that never turned healthy keeps its count.
    clock = FakeClock()
    state = running(clock.now)
    for _ in range(3):
        state, _ = crash_and_restart(state, clock)
    clock.advance(POLICY.reset_after_s * 2)
    _, decision = on_exit(state, ExitKind.CRASH, clock.now, POLICY)
    assert decision.backoff_s == 8


def test_repeated_healthy_keeps_first_timestamp() -> None:
    state = on_healthy(running(), T0 + 10)
    state = on_healthy(state, T0 + 40)
    assert state.healthy_since == T0 + 10


# --- crash loop ---------------------------------------------------------------------


def test_crash_loop_on_nth_crash_in_window() -> None:
    clock = FakeClock()
    state = running(clock.now)
    for _ in range(POLICY.crash_loop_limit - 1):
        state, decision = on_exit(state, ExitKind.CRASH, clock.now, POLICY)
        assert decision.action is Action.RESTART
        clock.advance(decision.backoff_s)
        state = on_started(state, clock.now)
    state, decision = on_exit(state, ExitKind.CRASH, clock.now, POLICY, reason="crash (exit 1)")
    assert decision.action is Action.STOP_CRASH_LOOP
    assert decision.backoff_s == 0
    assert decision.reason == "crash (exit 1)"
    assert "restart" in decision.message
    assert state.status is ServiceStatus.CRASH_LOOP
    # No restart while in crash_loop, even for a further exit.
    state, decision = on_exit(state, ExitKind.CLEAN, clock.now + 1, POLICY)
    assert decision.action is Action.NONE
    assert state.status is ServiceStatus.CRASH_LOOP


def test_oom_signalled_and_unhealthy_all_count_toward_crash_loop() -> None:
    policy = RestartPolicy(crash_loop_limit=4)
    clock = FakeClock()
    state = running(clock.now)
    for kind in (ExitKind.OOM, ExitKind.SIGNALLED, ExitKind.CRASH):
        state, decision = on_exit(state, kind, clock.now, policy)
        assert decision.action is Action.RESTART
        clock.advance(decision.backoff_s)
        state = on_started(state, clock.now)
    clock.advance(1000)
    state, decision = on_unhealthy(state, clock.now, T0, 180, False, policy)
    # Window is 600 s: the three earlier crashes (first at T0) have expired by now...
    assert decision.action is Action.RESTART
    # ...so pack four failures tightly instead.
    clock = FakeClock()
    state = running(clock.now)
    for kind in (ExitKind.OOM, ExitKind.SIGNALLED, ExitKind.CRASH):
        state, decision = on_exit(state, kind, clock.now, policy)
        clock.advance(decision.backoff_s)
        state = on_started(state, clock.now)
    clock.advance(200)
    state, decision = on_unhealthy(state, clock.now, clock.now - 200, 180, False, policy)
    assert decision.action is Action.STOP_CRASH_LOOP
    assert state.status is ServiceStatus.CRASH_LOOP


def test_crashes_spaced_outside_window_never_loop() -> None:
    clock = FakeClock()
    state = running(clock.now)
    for _ in range(POLICY.crash_loop_limit * 3):
        state, decision = on_exit(state, ExitKind.CRASH, clock.now, POLICY)
        assert decision.action is Action.RESTART
        state = on_started(state, clock.advance(decision.backoff_s))
        clock.advance(POLICY.crash_loop_window_s / (POLICY.crash_loop_limit - 1) + 1)
    assert state.status is ServiceStatus.RUNNING
    assert len(state.crash_times) < POLICY.crash_loop_limit


def test_old_crashes_are_pruned() -> None:
    state = running()
    state, _ = on_exit(state, ExitKind.CRASH, T0, POLICY)
    state = on_started(state, T0 + 1)
    state, _ = on_exit(state, ExitKind.CRASH, T0 + POLICY.crash_loop_window_s, POLICY)
    assert state.crash_times == (T0 + POLICY.crash_loop_window_s,)


def test_wall_clock_stepping_back_does_not_pin_crashes_forever() -> None:
    # Crash stamps "in the future" (clock stepped back) are clamped and expire normally.
    state = ServiceRestartState(status=ServiceStatus.RUNNING, crash_times=(T0 + 3600,) * 3)
    state, decision = on_exit(state, ExitKind.CRASH, T0, POLICY)
    assert decision.action is Action.RESTART
    assert state.crash_times == (T0, T0, T0, T0)
    state = on_started(state, T0 + 10)
    state, decision = on_exit(state, ExitKind.CRASH, T0 + POLICY.crash_loop_window_s, POLICY)
    assert decision.action is Action.RESTART
    assert state.crash_times == (T0 + POLICY.crash_loop_window_s,)


def test_start_during_crash_loop_then_crash_loops_again() -> None:
    # The dashboard may start a crash-looping server by hand; a crash soon after must
    # not buy a fresh budget.
    policy = RestartPolicy(crash_loop_limit=2)
    state, _ = on_exit(running(), ExitKind.CRASH, T0, policy)
    state, decision = on_exit(on_started(state, T0 + 1), ExitKind.CRASH, T0 + 2, policy)
    assert decision.action is Action.STOP_CRASH_LOOP
    state = on_started(state, T0 + 10)
    assert state.status is ServiceStatus.RUNNING
    state, decision = on_exit(state, ExitKind.CRASH, T0 + 11, policy)
    assert decision.action is Action.STOP_CRASH_LOOP


def test_reset_clears_crash_loop() -> None:
    policy = RestartPolicy(crash_loop_limit=2)
    state, _ = on_exit(running(), ExitKind.CRASH, T0, policy)
    state, _ = on_exit(on_started(state, T0 + 1), ExitKind.CRASH, T0 + 2, policy)
    assert state.status is ServiceStatus.CRASH_LOOP
    state = reset(state)
    assert state.status is ServiceStatus.STOPPED
    assert state.crash_times == ()
    assert state.restart_count == 0
    state = on_started(state, T0 + 3)
    assert state.status is ServiceStatus.RUNNING
    # A fresh budget: the next crash inside the same window is restarted again.
    state, decision = on_exit(state, ExitKind.CRASH, T0 + 4, policy)
    assert decision.action is Action.RESTART
    assert decision.backoff_s == policy.backoff_base_s
    assert state.crash_times == (T0 + 4,)


def test_reset_keeps_running_status_and_resets_backoff() -> None:
    clock = FakeClock()
    state = running(clock.now)
    for _ in range(3):
        state, _ = crash_and_restart(state, clock)
    state = reset(state)
    assert state.status is ServiceStatus.RUNNING
    _, decision = on_exit(state, ExitKind.CRASH, clock.now, POLICY)
    assert decision.backoff_s == 1


# --- server-specific exits ----------------------------------------------------------


def test_exit_2_needs_auth_without_restart() -> None:
    kind = classify_exit("server", 2, False, False)
    state, decision = on_exit(running(), kind, T0, POLICY, container="hyos-server-1")
    assert decision.action is Action.NEEDS_AUTH
    assert state.status is ServiceStatus.NEEDS_AUTH
    assert decision.message.startswith("hyos-server-1: ")
    assert "hyos-supervisor restart server" in decision.message
    assert "hyos-supervisor auth" in decision.message
    assert "docker attach" not in decision.message  # the container has no stdin
    assert state.crash_times == ()  # not a crash
    assert reset(state).status is ServiceStatus.STOPPED


def test_exit_8_recreates() -> None:
    kind = classify_exit("server", 8, False, False)
    state, decision = on_exit(running(), kind, T0, POLICY)
    assert decision.action is Action.RECREATE
    assert state.status is ServiceStatus.UPDATING
    assert state.crash_times == ()
    assert on_started(state, T0 + 30).status is ServiceStatus.RUNNING


def test_exit_0_does_not_restart() -> None:
    state, decision = on_exit(running(), classify_exit("server", 0, False, False), T0, POLICY)
    assert decision.action is Action.NONE
    assert state.status is ServiceStatus.STOPPED


def test_requested_stop_is_clean() -> None:
    kind = classify_exit("server", 143, False, True)
    state, decision = on_exit(running(), kind, T0, POLICY)
    assert kind is ExitKind.CLEAN
    assert decision.action is Action.NONE
    assert state.status is ServiceStatus.STOPPED
    assert state.crash_times == ()


def test_cancel_pending() -> None:
    state, _ = on_exit(running(), ExitKind.CRASH, T0, POLICY)
    assert cancel_pending(state).status is ServiceStatus.STOPPED
    looped = ServiceRestartState(status=ServiceStatus.CRASH_LOOP)
    assert cancel_pending(looped) is looped


# --- unhealthy ----------------------------------------------------------------------


def test_unhealthy_during_start_period_ignored() -> None:
    state = running(T0)
    new, decision = on_unhealthy(state, T0 + 179, T0, 180, False, POLICY)
    assert decision.action is Action.NONE
    assert new == state


def test_unhealthy_after_start_period_restarts_immediately() -> None:
    state = running(T0)
    state, decision = on_unhealthy(state, T0 + 180, T0, 180, False, POLICY)
    assert decision.action is Action.RESTART
    assert decision.backoff_s == 0
    assert state.status is ServiceStatus.BACKOFF
    assert state.crash_times == (T0 + 180,)
    assert state.restart_count == 1


def test_unhealthy_while_busy_ignored() -> None:
    state = running(T0)
    new, decision = on_unhealthy(state, T0 + 500, T0, 180, True, POLICY)
    assert decision.action is Action.NONE
    assert new == state


def test_unhealthy_when_not_running_ignored() -> None:
    for status in (ServiceStatus.STOPPED, ServiceStatus.CRASH_LOOP, ServiceStatus.UPDATING):
        state = ServiceRestartState(status=status)
        _, decision = on_unhealthy(state, T0 + 500, T0, 180, False, POLICY)
        assert decision.action is Action.NONE


def test_one_restart_per_unhealthy_episode() -> None:
    state = running(T0)
    state, first = on_unhealthy(state, T0 + 200, T0, 180, False, POLICY)
    assert first.action is Action.RESTART
    # Same episode seen again (event + periodic reconcile): nothing more.
    state, again = on_unhealthy(state, T0 + 201, T0, 180, False, POLICY)
    assert again.action is Action.NONE
    # Even if the daemon's bookkeeping put the status back to running.
    stuck = ServiceRestartState(status=ServiceStatus.RUNNING, unhealthy_handled=True)
    _, again = on_unhealthy(stuck, T0 + 202, T0, 180, False, POLICY)
    assert again.action is Action.NONE
    # Our own stop as part of that restart: a clean exit that keeps the restart pending.
    state, decision = on_exit(state, ExitKind.CLEAN, T0 + 205, POLICY)
    assert decision.action is Action.NONE
    assert state.status is ServiceStatus.BACKOFF
    # The restarted container is a new episode once past its start period.
    state = on_started(state, T0 + 206)
    _, decision = on_unhealthy(state, T0 + 300, T0 + 206, 180, False, POLICY)
    assert decision.action is Action.NONE  # still starting
    state, decision = on_unhealthy(state, T0 + 400, T0 + 206, 180, False, POLICY)
    assert decision.action is Action.RESTART
    assert len(state.crash_times) == 2


def test_healthy_ends_unhealthy_episode() -> None:
    stuck = ServiceRestartState(status=ServiceStatus.RUNNING, unhealthy_handled=True)
    state = on_healthy(stuck, T0 + 10)
    assert not state.unhealthy_handled
    _, decision = on_unhealthy(state, T0 + 500, T0, 180, False, POLICY)
    assert decision.action is Action.RESTART


def test_unhealthy_restart_raises_later_crash_backoff() -> None:
    state = running(T0)
    state, _ = on_unhealthy(state, T0 + 200, T0, 180, False, POLICY)
    state = on_started(state, T0 + 210)
    _, decision = on_exit(state, ExitKind.CRASH, T0 + 220, POLICY)
    assert decision.backoff_s == 2


# --- persistence --------------------------------------------------------------------


def test_json_round_trip() -> None:
    clock = FakeClock()
    state = running(clock.now)
    state, _ = crash_and_restart(state, clock)
    state = on_healthy(state, clock.advance(5))
    state, _ = on_unhealthy(state, clock.advance(300), T0, 180, False, POLICY)
    data = json.loads(json.dumps(state.to_json()))
    assert ServiceRestartState.from_json(data) == state
    fresh = ServiceRestartState()
    assert ServiceRestartState.from_json(json.loads(json.dumps(fresh.to_json()))) == fresh


def test_resume_crash_accounting_after_daemon_restart() -> None:
    policy = RestartPolicy(crash_loop_limit=3)
    state, _ = on_exit(running(), ExitKind.CRASH, T0, policy)
    state, _ = on_exit(on_started(state, T0 + 1), ExitKind.CRASH, T0 + 2, policy)
    saved = json.dumps(state.to_json())
    resumed = on_started(ServiceRestartState.from_json(json.loads(saved)), T0 + 10)
    _, decision = on_exit(resumed, ExitKind.CRASH, T0 + 11, policy)
    assert decision.action is Action.STOP_CRASH_LOOP


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 99, "status": "running"},
        {"version": 1, "status": "dancing"},
        {"version": 1, "status": "running", "crash_times": "x"},
        {"version": 1, "status": "running", "crash_times": [None]},
        {"version": 1, "status": "running", "crash_times": [float("nan")]},
        {"version": 1, "status": "running", "restart_count": -1},
        {"version": 1, "status": "running", "restart_count": True},
        {"version": 1, "status": "running", "healthy_since": "yesterday"},
        {"version": 1, "status": "running", "unhealthy_handled": 1},
    ],
)
def test_from_json_rejects_malformed(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ServiceRestartState.from_json(data)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backoff_factor": 0.5},
        {"backoff_base_s": -1},
        {"backoff_cap_s": 0.5},
        {"crash_loop_limit": 0},
        {"crash_loop_window_s": float("inf")},
    ],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(0.001, 60),
    factor=st.floats(1, 10),
    cap_extra=st.floats(0, 1000),
    gaps=st.lists(st.floats(0, 5000), min_size=1, max_size=40),
    healthy=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_backoff_bounded_and_monotonic_without_healthy_reset(
    base: float, factor: float, cap_extra: float, gaps: list[float], healthy: list[bool]
) -> None:
    policy = RestartPolicy(
        backoff_base_s=base,
        backoff_factor=factor,
        backoff_cap_s=base + cap_extra,
        crash_loop_limit=10_000,
        reset_after_s=600,
    )
    clock = FakeClock()
    state = running(clock.now)
    previous = 0.0
    for gap, turned_healthy in zip(gaps, healthy, strict=False):
        if turned_healthy:
            state = on_healthy(state, clock.now)
        clock.advance(gap)
        was_reset = state.healthy_since is not None and (
            clock.now - state.healthy_since >= policy.reset_after_s
        )
        state, decision = on_exit(state, ExitKind.CRASH, clock.now, policy)
        assert decision.action is Action.RESTART
        assert 0 < decision.backoff_s <= policy.backoff_cap_s
        if was_reset:
            assert decision.backoff_s == policy.backoff_base_s
        else:
            assert decision.backoff_s >= previous
        previous = decision.backoff_s
        clock.advance(decision.backoff_s)
        state = on_started(state, clock.now)


# --- what HyOS's state files add ------------------------------------------------------


def test_a_login_that_ran_out_is_not_a_crash_and_retries_after_auth_retry_s() -> None:
    kind = classify_exit("server", 1, False, False, ServerExit.LOGIN_ENDED)
    assert kind is ExitKind.LOGIN_ENDED
    policy = RestartPolicy(auth_retry_s=45)
    state, decision = on_exit(running(), kind, T0, policy, container="s-server")
    assert decision.action is Action.RETRY_LOGIN and decision.backoff_s == 45
    assert state.status is ServiceStatus.NEEDS_AUTH
    assert state.crash_times == () and state.restart_count == 0  # not counted
    assert "45 s" in decision.message and "hyos-supervisor auth" in decision.message
    # Even many in a row never make a crash loop.
    for n in range(10):
        state, decision = on_exit(on_started(state, T0 + n), kind, T0 + n, policy)
        assert decision.action is Action.RETRY_LOGIN
    assert state.status is ServiceStatus.NEEDS_AUTH
    # ...while exit 1 without that explanation is a crash like any other.
    assert classify_exit("server", 1, False, False) is ExitKind.CRASH
    assert classify_exit("manager", 1, False, False, ServerExit.LOGIN_ENDED) is ExitKind.CRASH


def test_the_update_buttons_exit_installs_the_update_without_counting() -> None:
    kind = classify_exit("server", 143, False, False, ServerExit.UPDATE)
    assert kind is ExitKind.UPDATE_BUTTON
    state, decision = on_exit(running(), kind, T0, POLICY)
    assert decision.action is Action.INSTALL_UPDATE
    assert state.status is ServiceStatus.UPDATING and state.crash_times == ()
    assert "update" in describe_exit("server", 143, False, False, ServerExit.UPDATE)
    # An unexplained 143 stays a signal nobody asked for.
    assert classify_exit("server", 143, False, False) is ExitKind.SIGNALLED
    # A stop we asked for stays clean, whatever the state files say.
    assert classify_exit("server", 143, False, True, ServerExit.UPDATE) is ExitKind.CLEAN


# --- pending steps: every decision still to carry out lives in the state -------------


@pytest.mark.parametrize(
    ("kind", "step", "delay"),
    [
        (ExitKind.CRASH, Step.START, POLICY.backoff_base_s),
        (ExitKind.OOM, Step.START, POLICY.backoff_base_s),
        (ExitKind.SIGNALLED, Step.START, POLICY.backoff_base_s),
        (ExitKind.LOGIN_ENDED, Step.START, POLICY.auth_retry_s),
        (ExitKind.UPDATE, Step.RECREATE, 0.0),
        (ExitKind.UPDATE_BUTTON, Step.INSTALL_UPDATE, 0.0),
    ],
)
def test_an_exit_leaves_its_step_pending_until_due(
    kind: ExitKind, step: Step, delay: float
) -> None:
    state, decision = on_exit(running(), kind, T0 + 5, POLICY, reason="why")
    assert state.pending == Pending(step, T0 + 5 + delay, decision.reason, delay, kind.value)
    assert decision.backoff_s == delay


@pytest.mark.parametrize("kind", [ExitKind.CLEAN, ExitKind.NEEDS_AUTH])
def test_an_exit_that_needs_nothing_or_the_operator_leaves_nothing_pending(kind: ExitKind) -> None:
    state, _ = on_exit(running(), kind, T0, POLICY)
    assert state.pending is None


def test_the_exit_of_our_own_stop_keeps_the_restart_going() -> None:
    """Mid-restart (unhealthy: stop, then start) the stop's clean exit changes nothing."""
    state, _ = on_exit(running(), ExitKind.CRASH, T0, POLICY)
    after, decision = on_exit(state, ExitKind.CLEAN, T0 + 0.5, POLICY)
    assert decision.action is Action.NONE
    assert after.pending == state.pending


def test_a_crash_loop_drops_the_pending_start() -> None:
    policy = RestartPolicy(crash_loop_limit=2)
    state, _ = on_exit(running(), ExitKind.CRASH, T0, policy)
    assert state.pending is not None
    state = on_started(issue(state), T0 + 1)
    state, decision = on_exit(state, ExitKind.CRASH, T0 + 2, policy)
    assert decision.action is Action.STOP_CRASH_LOOP
    assert state.pending is None


def test_unhealthy_leaves_a_restart_due_now_and_no_second_one() -> None:
    state = running()
    state, decision = on_unhealthy(state, T0 + 100, T0, 10.0, False, POLICY)
    assert decision.action is Action.RESTART
    assert state.pending == Pending(Step.RESTART, T0 + 100, "unhealthy", 0.0, "unhealthy")
    again, second = on_unhealthy(replace_unhandled(state), T0 + 101, T0, 10.0, False, POLICY)
    assert second.action is Action.NONE  # a step is already pending: it is busy
    assert again == replace_unhandled(state)


def replace_unhandled(state: ServiceRestartState) -> ServiceRestartState:
    return replace(state, unhealthy_handled=False)


def test_issue_start_request_reset_and_cancel_clear_or_set_the_pending_step() -> None:
    crashed, _ = on_exit(running(), ExitKind.CRASH, T0, POLICY)
    assert issue(crashed).pending is None
    assert on_started(crashed, T0 + 1).pending is None  # started by anyone: nothing owed
    assert reset(crashed).pending is None
    assert cancel_pending(crashed).pending is None
    asked = request(ServiceRestartState(), Step.RESTART, T0, "operator")
    assert asked.pending == Pending(Step.RESTART, T0, "operator", cause="requested")
    told = request(ServiceRestartState(), Step.RESTART, T0, "operator", "operator")
    assert told.pending == Pending(Step.RESTART, T0, "operator", cause="operator")
    assert asked.status is ServiceStatus.STOPPED  # asking changes no status


def test_a_pending_step_survives_the_state_file() -> None:
    state, _ = on_exit(running(), ExitKind.CRASH, T0, POLICY)
    loaded = ServiceRestartState.from_json(json.loads(json.dumps(state.to_json())))
    assert loaded == state
    assert loaded.pending is not None and loaded.pending.step is Step.START


@pytest.mark.parametrize(
    "pending",
    [
        {"step": "explode", "due_at": 1.0},
        {"step": "start"},
        {"step": "start", "due_at": "soon"},
        {"step": "start", "due_at": 1.0, "reason": 3},
        ["start", 1.0],
    ],
)
def test_a_malformed_pending_step_is_refused(pending: object) -> None:
    data = ServiceRestartState().to_json() | {"pending": pending}
    with pytest.raises(ValueError, match="pending"):
        ServiceRestartState.from_json(data)
