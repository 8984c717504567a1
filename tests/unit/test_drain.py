"""The drain planner, driven by the fake clock: examples, then a property over random
join/leave traces (the promises in supervisor/drain.py's docstring)."""

from __future__ import annotations

import bisect
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import drain
from supervisor.drain import Decision, DrainPolicy, DrainState, Kind
from tests.fakeclock import T0, FakeClock

POLICY = DrainPolicy()


@dataclass
class Trace:
    """Players online over time: `start` at T0, then +1/-1 at the given seconds after T0."""

    start: int
    changes: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changes.sort()
        self._times = [t for t, _ in self.changes]

    def players(self, now: float) -> int:
        count = self.start
        for _, delta in self.changes[: bisect.bisect_right(self._times, now - T0)]:
            count += delta
        return count

    def last_leave(self) -> float | None:
        """When the server last became empty and stayed so (None: it never does)."""
        count, empty_since = self.start, T0 if self.start == 0 else None
        for time, delta in self.changes:
            count += delta
            empty_since = T0 + time if count == 0 and delta < 0 else empty_since
            if count > 0:
                empty_since = None
        return empty_since


@dataclass
class Run:
    """What the shell did, with every REST call (kind, time)."""

    end: Decision
    end_time: float
    calls: list[tuple[Kind, float]]
    warnings: list[tuple[float, float]]  # (offset, sent at)
    state: DrainState


def run(
    policy: DrainPolicy,
    trace: Trace,
    clock: FakeClock,
    failing: tuple[float, float] | None = None,
    horizon: float = 7200.0,
) -> Run:
    """The shell's loop (supervisor/drain.py's docstring) against a trace; REST calls
    take no time; the API fails during `failing` (from, to)."""
    state = drain.start("restart", clock.now, policy)
    calls: list[tuple[Kind, float]] = []
    warnings: list[tuple[float, float]] = []
    for _ in range(100_000):
        decision = drain.decide(policy, state, clock.now)
        if decision.at > clock.now:
            clock.advance(decision.at - clock.now)
            continue
        now = clock.now
        if decision.kind is Kind.POLL:
            calls.append((Kind.POLL, now))
            if failing is not None and failing[0] <= now - T0 < failing[1]:
                state = drain.poll_failed(state, now)
            else:
                state = drain.polled(state, now, trace.players(now))
        elif decision.kind is Kind.WARN:
            assert decision.offset is not None
            calls.append((Kind.WARN, now))
            warnings.append((decision.offset, now))
            state = drain.warned(state, decision.offset)
        elif decision.kind is Kind.MISSED:
            assert decision.offset is not None
            state = drain.warned(state, decision.offset)
        elif decision.kind is Kind.POSTPONE:
            calls.append((Kind.POSTPONE, now))
            state = drain.postponed(state)
        else:
            return Run(decision, now, calls, warnings, state)
        if now - T0 > horizon:
            return Run(Decision(Kind.POLL, now, reason="horizon"), now, calls, warnings, state)
    raise AssertionError("the planner made no progress")


# --- examples -------------------------------------------------------------------------


def test_no_players_acts_at_once_after_one_status_call() -> None:
    clock = FakeClock()
    result = run(POLICY, Trace(0), clock)
    assert result.end.kind is Kind.ACT
    assert result.end_time == T0
    assert result.calls == [(Kind.POLL, T0)]


def test_players_get_every_warning_then_the_action_at_the_deadline() -> None:
    clock = FakeClock()
    result = run(POLICY, Trace(2), clock)
    assert result.end.kind is Kind.ACT
    assert result.end_time == T0 + 900
    assert [(o, t - T0) for o, t in result.warnings] == [
        (900, 0),
        (300, 600),
        (60, 840),
        (30, 870),
        (10, 890),
    ]


def test_the_action_follows_the_last_leave_within_one_poll() -> None:
    clock = FakeClock()
    result = run(POLICY, Trace(2, [(95.0, -1), (123.0, -1)]), clock)
    assert result.end.kind is Kind.ACT
    assert result.end_time - T0 == 130  # polls at 0, 10, ..., 130
    assert [o for o, _ in result.warnings] == [900]


def test_postpone_waits_for_empty_past_the_deadline_and_says_so_once() -> None:
    clock = FakeClock()
    policy = DrainPolicy(on_deadline="postpone", max_wait=120, warn_at=(60, 10))
    result = run(policy, Trace(1, [(300.0, -1)]), clock)
    assert result.end.kind is Kind.ACT
    # The last poll before the deadline at 118 (2 s apart), then every 10 s: 128 ... 308.
    assert result.end_time - T0 == 308
    assert [k for k, _ in result.calls].count(Kind.POSTPONE) == 1
    assert [o for o, _ in result.warnings] == [60, 10]


def test_skip_when_players_stay() -> None:
    clock = FakeClock()
    result = run(DrainPolicy(on_deadline="skip", max_wait=60), Trace(1), clock)
    assert result.end.kind is Kind.SKIP
    assert result.end_time == T0 + 60


def test_polls_every_two_seconds_in_the_last_minute() -> None:
    clock = FakeClock()
    result = run(DrainPolicy(warn_at=()), Trace(1), clock)
    polls = [t - T0 for k, t in result.calls if k is Kind.POLL]
    assert polls[:3] == [0, 10, 20]
    assert [p for p in polls if p >= 830] == [830, *range(840, 900, 2)]


def test_offsets_beyond_max_wait_are_never_due() -> None:
    clock = FakeClock()
    result = run(DrainPolicy(max_wait=120), Trace(1), clock)
    assert [(o, t - T0) for o, t in result.warnings] == [(60, 60), (30, 90), (10, 110)]


def test_an_unanswered_api_waits_until_the_deadline_then_acts_even_if_postponing() -> None:
    clock = FakeClock()
    policy = DrainPolicy(on_deadline="postpone", max_wait=120)
    result = run(policy, Trace(0), clock, failing=(0, 10_000))
    assert result.end.kind is Kind.ACT
    assert result.end_time == T0 + 120
    assert "unknown" in result.end.reason
    assert result.warnings == []  # nothing to broadcast with


def test_warnings_whose_moment_passed_are_dropped_not_sent_late() -> None:
    """The API answered again after 5 minutes: the 15m warning is not sent at 10m."""
    clock = FakeClock()
    result = run(DrainPolicy(), Trace(1), clock, failing=(0, 300))
    assert [(o, t - T0) for o, t in result.warnings] == [
        (300, 600),
        (60, 840),
        (30, 870),
        (10, 890),
    ]


def test_a_warning_due_during_a_slow_poll_is_sent_when_it_returns_with_the_true_time() -> None:
    """CI: a poll that took 3 s on a loaded machine made the 20 s warning look passed."""
    policy = DrainPolicy(warn_at=(20.0, 10.0, 5.0), max_wait=30, poll_s=1)
    # The poll began before the 20 s moment (T0 + 10) ...
    state = drain.polled(drain.start("restart", T0, policy), T0 + 9.5, 2)
    decision = drain.decide(policy, state, T0 + 12.5)  # ... and returned 2.5 s after it
    assert (decision.kind, decision.offset, decision.at) == (Kind.WARN, 20.0, T0 + 12.5)
    assert drain.message(policy, state, decision.at).startswith(
        "The server will restart in 18 seconds."
    )
    # Two moments passed during one poll: only the later warning is said.
    decision = drain.decide(policy, state, T0 + 21)
    assert (decision.kind, decision.offset) == (Kind.MISSED, 20.0)
    decision = drain.decide(policy, drain.warned(state, 20.0), T0 + 21)
    assert (decision.kind, decision.offset) == (Kind.WARN, 10.0)
    # A moment that passed before the poll began (the API was silent) stays dropped.
    quiet = drain.polled(state, T0 + 12, 2)
    assert drain.decide(policy, quiet, T0 + 12).kind is Kind.MISSED


def test_cancel_ends_the_drain() -> None:
    state = drain.polled(drain.start("restart", T0, POLICY), T0, 3)
    assert drain.decide(POLICY, drain.cancel(state), T0 + 1).kind is Kind.CANCELLED


def test_a_drain_resumed_from_its_json_keeps_its_deadline_and_warnings() -> None:
    state = drain.warned(drain.polled(drain.start("restart", T0, POLICY), T0, 3), 900.0)
    back = DrainState.from_json(json.loads(json.dumps(state.to_json())))
    assert back == state
    assert drain.next_warning(POLICY, back) == T0 + 600
    assert DrainState.from_json({"action": "x"}) is None
    assert DrainState.from_json([]) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("30s", 30), ("1h", 3600), ("1m30s", 90), ("90", 90), ("0", 0), (45, 45)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert drain.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "5 minutes", "m", "1d", "1.5.0s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        drain.parse_duration(text)


def test_messages() -> None:
    assert drain.format_duration(900) == "15 minutes"
    assert drain.format_duration(60) == "1 minute"
    assert drain.format_duration(90) == "1 minute 30 seconds"
    assert drain.format_duration(10) == "10 seconds"
    assert drain.render(drain.DEFAULT_MESSAGE, "restart", 300).startswith(
        "The server will restart in 5 minutes."
    )
    assert drain.validate_template("{action} in {time_left}") == "{action} in {time_left}"
    with pytest.raises(ValueError, match="unknown field"):
        drain.validate_template("{action} at {when}")
    with pytest.raises(ValueError):
        drain.validate_template("{action")


# --- the property ---------------------------------------------------------------------

COUNTS: Counter[str] = Counter()

policies = st.builds(
    DrainPolicy,
    warn_at=st.lists(
        st.sampled_from([900.0, 600.0, 300.0, 120.0, 60.0, 30.0, 10.0, 5.0]), max_size=6
    ).map(tuple),
    max_wait=st.sampled_from([0.0, 30.0, 60.0, 90.0, 300.0, 900.0]),
    on_deadline=st.sampled_from(["act", "postpone", "skip"]),
)


def _trace(start: int, changes: list[tuple[float, int]], empties: float | None) -> Trace:
    """A leave when nobody is online becomes a join: counts never go below 0. From
    `empties` on, whoever is left leaves one by one (half the traces end empty)."""
    count, valid = start, []
    for time, delta in sorted(changes):
        delta = 1 if count == 0 else delta
        count += delta
        valid.append((time, delta))
    if empties is not None:
        end = max([empties, *(t for t, _ in valid)])
        valid += [(end + 3.0 * (i + 1), -1) for i in range(count)]
    return Trace(start, valid)


traces = st.builds(
    _trace,
    st.integers(min_value=0, max_value=3),
    st.lists(
        # Centiseconds: a time that vanishes beside T0 in a float is not a trace.
        st.tuples(st.integers(0, 120_000).map(lambda cs: cs / 100), st.sampled_from([1, -1])),
        max_size=12,
    ),
    st.none() | st.integers(0, 120_000).map(lambda cs: cs / 100),
)


@settings(max_examples=10_000, deadline=None, database=None)
@given(
    policy=policies,
    trace=traces,
    failing=st.none() | st.tuples(st.floats(0, 600), st.floats(0, 300)),
)
def _property(policy: DrainPolicy, trace: Trace, failing: tuple[float, float] | None) -> None:
    window = None if failing is None else (failing[0], failing[0] + failing[1])
    clock = FakeClock()
    result = run(policy, trace, clock, failing=window, horizon=2 * 3600)
    deadline = T0 + policy.max_wait
    COUNTS["traces"] += 1
    end = result.end.kind.value if result.end.reason != "horizon" else "still postponed at 2 h"
    COUNTS[f"end {end}"] += 1
    COUNTS["warnings"] += len(result.warnings)
    COUNTS["with api failures"] += failing is not None

    def answered(at: float) -> bool:
        return window is None or not window[0] <= at - T0 < window[1]

    # 1. No action while players are online, before the deadline.
    if result.end.kind is Kind.ACT and result.end_time < deadline:
        assert trace.players(result.end_time) == 0, result
    # 2. The action at the first answered poll after the last leave, and polls never
    # more than poll_s apart: so within one poll (10 s) of the leave when the API answers.
    polls = [t for k, t in result.calls if k is Kind.POLL]
    assert all(b - a <= policy.poll_s for a, b in itertools.pairwise(polls))
    leave = trace.last_leave()
    if leave is not None and result.end.kind is Kind.ACT:
        first = next((t for t in polls if t >= leave and answered(t)), None)
        if first is not None and (result.state.postponed or first < deadline):
            assert result.end_time == first, (leave, result)
            if window is None:
                delay = result.end_time - leave
                assert delay <= policy.poll_s
                COUNTS["acted within a poll of the last leave"] += 1
                COUNTS["max s from last leave to action"] = max(
                    COUNTS["max s from last leave to action"], int(delay)
                )
    # 3. Warnings: each within 1 s of its moment, before the deadline, in order, once.
    offsets = [o for o, _ in result.warnings]
    assert offsets == sorted(offsets, reverse=True)
    assert len(set(offsets)) == len(offsets)
    for offset, sent in result.warnings:
        assert abs(sent - (deadline - offset)) <= drain.WARN_SLACK_S
        assert offset in policy.offsets()
    # 4. Waiting (before the last minute, or postponed past the deadline): at most 6
    # status polls in any 60 s (10 s apart).
    final = deadline - policy.final_window_s
    polls = [t for k, t in result.calls if k is Kind.POLL and not final <= t < deadline]
    for i, t in enumerate(polls):
        in_minute = bisect.bisect_left(polls, t + 60) - i
        assert in_minute <= 6, (t, polls)
        COUNTS["max polls/min while waiting"] = max(
            COUNTS["max polls/min while waiting"], in_minute
        )
    # And every REST call: never near the plugin's limits (120/min on /admin/*).
    times = sorted(t for _, t in result.calls)
    for i, t in enumerate(times):
        in_minute = bisect.bisect_left(times, t + 60) - i
        COUNTS["max REST calls/min overall"] = max(COUNTS["max REST calls/min overall"], in_minute)
        assert in_minute <= 40


def test_property_over_random_join_leave_traces() -> None:
    COUNTS.clear()
    _property()
    print(dict(sorted(COUNTS.items())))
    assert COUNTS["traces"] >= 10_000
