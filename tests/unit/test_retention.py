"""The retention planner (supervisor/retention.py): restic's GFS rules, pins outside the
rotation, the newest always kept; Hypothesis properties and 400 simulated days."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.retention import (
    RULES,
    KeepPolicy,
    Snapshot,
    bucket,
    pin_tag,
    plan,
)
from tests.fakeclock import FakeClock

HOUR = 3600.0
DAY = 24 * HOUR


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _ids(snapshots: tuple[Snapshot, ...]) -> list[str]:
    return [s.id for s in snapshots]


def oracle(snapshots: list[Snapshot], policy: KeepPolicy) -> set[str]:
    """What each rule asks, written the other way round from the planner: per rule, group
    the rotated snapshots by bucket, take the newest of the n most recent buckets."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)
    keep = {s.id for s in ordered if s.pinned}
    if ordered:
        keep.add(ordered[0].id)
    if policy.empty:
        return {s.id for s in ordered}
    rotated = [s for s in ordered if not s.pinned]
    keep |= {s.id for s in rotated[: policy.last]}
    for rule in RULES[1:]:
        groups: dict[int, list[Snapshot]] = defaultdict(list)
        for s in rotated:
            groups[bucket(rule, s.time)].append(s)
        for key in sorted(groups, reverse=True)[: getattr(policy, rule)]:
            keep.add(max(groups[key], key=lambda s: (s.time, s.id)).id)
    return keep


# --- examples ------------------------------------------------------------------------


def test_restic_daily_semantics_days_without_a_backup_use_no_count() -> None:
    snaps = [
        Snapshot("a", _at("2026-12-07T10:00")),
        Snapshot("b", _at("2026-12-07T09:00")),
        Snapshot("c", _at("2026-12-05T23:00")),  # no backup on the 6th
        Snapshot("d", _at("2026-12-05T01:00")),
        Snapshot("e", _at("2026-12-01T12:00")),
    ]
    result = plan(snaps, KeepPolicy(daily=3))
    assert _ids(result.keep) == ["a", "c", "e"]
    assert _ids(result.forget) == ["b", "d"]
    assert result.reasons["a"] == ("newest", "daily")


def test_a_snapshot_kept_by_several_rules_counts_against_each() -> None:
    snaps = [Snapshot(str(i), _at("2026-12-07T10:00") - i * HOUR) for i in range(5)]
    result = plan(snaps, KeepPolicy(last=1, hourly=2))
    # "0" is last and the first hourly; "1" the second hourly: 2 kept, as restic keeps.
    assert _ids(result.keep) == ["0", "1"]
    assert result.reasons["0"] == ("newest", "last", "hourly")


def test_weekly_uses_iso_weeks_and_monthly_calendar_months() -> None:
    # Sunday 2026-01-04 is ISO week 1 of 2026; Monday 2025-12-29 too.
    assert bucket("weekly", _at("2026-01-04T12:00")) == 202601
    assert bucket("weekly", _at("2025-12-29T00:00")) == 202601
    assert bucket("weekly", _at("2025-12-28T23:59")) == 202552
    assert bucket("monthly", _at("2026-02-28T23:00")) == 202602
    assert bucket("hourly", _at("2026-12-07T04:59")) == 2026120704
    with pytest.raises(ValueError, match="unknown rule"):
        bucket("yearly", 0)


def test_pinned_snapshots_are_kept_and_use_no_count() -> None:
    snaps = [
        Snapshot("new", _at("2026-12-07T10:00")),
        Snapshot("pin", _at("2026-12-06T10:00"), frozenset({pin_tag("pre-restore")})),
        Snapshot("old", _at("2026-12-05T10:00")),
        Snapshot("older", _at("2026-12-04T10:00")),
    ]
    result = plan(snaps, KeepPolicy(daily=2))
    assert _ids(result.keep) == ["new", "pin", "old"]
    assert result.reasons["pin"] == ("pinned",)
    # Released (the tag removed), it is a regular snapshot again.
    released = [Snapshot(s.id, s.time) for s in snaps]
    assert _ids(plan(released, KeepPolicy(daily=2)).keep) == ["new", "pin"]


def test_the_newest_is_kept_even_when_pinned_ones_are_newer_and_no_rule_keeps_it() -> None:
    snaps = [
        Snapshot("p", _at("2026-12-07T10:00"), frozenset({pin_tag("pre-update")})),
        Snapshot("n", _at("2026-12-07T09:00")),
        Snapshot("o", _at("2026-12-07T08:00")),
    ]
    result = plan(snaps, KeepPolicy(monthly=0, last=1))
    assert _ids(result.keep) == ["p", "n"]  # "p" is the newest, "n" keep_last
    assert _ids(plan(snaps[1:], KeepPolicy(daily=0, weekly=1)).keep) == ["n"]


def test_an_empty_policy_keeps_everything_and_an_empty_repository_plans_nothing() -> None:
    snaps = [Snapshot(str(i), i * HOUR) for i in range(4)]
    assert len(plan(snaps, KeepPolicy()).keep) == 4
    assert plan([], KeepPolicy(last=3)).keep == ()
    with pytest.raises(ValueError, match="keep_daily must not be negative"):
        KeepPolicy(daily=-1)


def test_ties_on_time_are_broken_by_id_not_by_the_listings_order() -> None:
    snaps = [Snapshot("b", 100.0), Snapshot("a", 100.0), Snapshot("c", 50.0)]
    assert plan(snaps, KeepPolicy(last=1)) == plan(list(reversed(snaps)), KeepPolicy(last=1))
    assert _ids(plan(snaps, KeepPolicy(last=1)).keep) == ["b"]


def test_buckets_are_read_in_the_zone_given() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    # 23:30 UTC on the 6th is 00:30 on the 7th in Berlin: two days in UTC, one in Berlin.
    snaps = [Snapshot("x", _at("2026-12-07T00:10")), Snapshot("y", _at("2026-12-06T23:30"))]
    assert len(plan(snaps, KeepPolicy(daily=2)).keep) == 2
    assert len(plan(snaps, KeepPolicy(daily=2), berlin).keep) == 1


# --- properties ----------------------------------------------------------------------

_T0 = _at("2026-01-01T00:00")
snapshot_lists = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=120 * DAY, allow_nan=False),
        st.booleans(),
    ),
    max_size=60,
).map(
    lambda items: [
        Snapshot(f"s{i:03}", _T0 + t, frozenset({pin_tag("pre-update")}) if pinned else frozenset())
        for i, (t, pinned) in enumerate(items)
    ]
)
policies = st.builds(
    KeepPolicy,
    last=st.integers(0, 5),
    hourly=st.integers(0, 30),
    daily=st.integers(0, 14),
    weekly=st.integers(0, 8),
    monthly=st.integers(0, 6),
)


@settings(max_examples=400, deadline=None)
@given(snapshot_lists, policies)
def test_property_never_forgets_a_pinned_or_the_newest_and_keeps_exactly_what_the_rules_ask(
    snaps: list[Snapshot], policy: KeepPolicy
) -> None:
    result = plan(snaps, policy)
    kept = {s.id for s in result.keep}
    forgotten = {s.id for s in result.forget}
    assert kept | forgotten == {s.id for s in snaps} and not kept & forgotten
    assert all(s.id in kept for s in snaps if s.pinned)
    if snaps:
        assert max(snaps, key=lambda s: (s.time, s.id)).id in kept
    assert kept == oracle(snaps, policy)
    # Each rule keeps no more than its count (pins and "newest" aside).
    for rule in RULES:
        holders = [i for i, why in result.reasons.items() if rule in why]
        assert len(holders) <= getattr(policy, rule)


@settings(max_examples=300, deadline=None)
@given(snapshot_lists, policies)
def test_property_planning_again_over_what_was_kept_forgets_nothing(
    snaps: list[Snapshot], policy: KeepPolicy
) -> None:
    first = plan(snaps, policy)
    again = plan(first.keep, policy)
    assert again.forget == ()
    assert again.keep == first.keep


# --- 400 simulated days --------------------------------------------------------------

SIMULATED_DAYS = 420
POLICY = KeepPolicy(last=3, hourly=24, daily=7, weekly=5, monthly=12)


def test_hourly_backups_pruned_after_each_over_420_simulated_days() -> None:
    """The daemon's loop on a fake clock: a backup every hour (a pre-update pin every 30
    days, released a day later), the plan applied after each. Checked at every step:
    nothing pinned or newest is lost; once a week: the repository holds exactly what one
    plan over the whole history would keep (pruning as we go loses nothing the rules
    ask for). The counts are printed for the issue's closing note."""
    clock = FakeClock(_T0)
    held: dict[str, Snapshot] = {}
    history: list[Snapshot] = []
    created = forgotten = most_held = 0
    pins: dict[str, float] = {}
    for step in range(SIMULATED_DAYS * 24):
        now = clock.advance(HOUR)
        tags = frozenset({pin_tag("pre-update")}) if step % (30 * 24) == 5 else frozenset()
        snap = Snapshot(f"h{step:06}", now, tags)
        if tags:
            pins[snap.id] = now + DAY
        created += 1
        # Pins whose action was confirmed are released (the tag removed).
        for pid, until in list(pins.items()):
            if now >= until and pid in held:
                held[pid] = Snapshot(pid, held[pid].time)
                history = [Snapshot(pid, s.time) if s.id == pid else s for s in history]
                del pins[pid]
        held[snap.id] = snap
        history.append(snap)
        result = plan(held.values(), POLICY)
        for gone in result.forget:
            assert not gone.pinned and gone.id != snap.id
            del held[gone.id]
            forgotten += 1
        most_held = max(most_held, len(held))
        if step % (7 * 24) == 23:
            assert set(held) == {s.id for s in plan(history, POLICY).keep}
    days = (clock.now - _T0) / DAY
    assert days >= 400
    final = plan(held.values(), POLICY)
    by_rule = {rule: sum(rule in why for why in final.reasons.values()) for rule in RULES}
    # At steady state every rule holds its full count.
    assert by_rule == {"last": 3, "hourly": 24, "daily": 7, "weekly": 5, "monthly": 12}
    # Overlaps (the newest is last, hourly, daily, weekly and monthly at once) make the
    # repository hold fewer than the sum of the counts.
    assert len(held) < sum(by_rule.values())
    print(
        f"\nretention over {days:.0f} simulated days: {created} backups, {forgotten} "
        f"forgotten, {len(held)} held at the end (at most {most_held}), by rule {by_rule}"
    )
    assert created - forgotten == len(held)
    # Never more than the counts' sum, the one pin and the new backup before its prune.
    assert most_held <= sum(by_rule.values()) + 2


def test_a_daily_schedule_over_400_days_keeps_the_gfs_shape() -> None:
    clock = FakeClock(_T0)
    held: list[Snapshot] = []
    for step in range(400):
        held.append(Snapshot(f"d{step:04}", clock.advance(DAY)))
        held = list(plan(held, KeepPolicy(daily=7, weekly=4, monthly=6)).keep)
    ages = sorted(round((clock.now - s.time) / DAY) for s in held)
    # 7 dailies, then one per week back to 4 weeks, then one per month back to 6 months.
    assert ages[:7] == [0, 1, 2, 3, 4, 5, 6]
    assert max(ages) < 200 and len(held) <= 7 + 4 + 6
    assert timedelta(days=max(ages)) > timedelta(days=120)
