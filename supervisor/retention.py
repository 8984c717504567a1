"""Pure: which backups to keep (issue 25, retention). The supervisor decides; restic only
forgets the snapshots this planner names (`restic forget ID...`), so what is kept is
tested here, with a fake clock, and never left to a flag we did not test.

The rules are restic's `forget --keep-*` (GFS), with restic's exact semantics:

- `keep_last` n: the n newest snapshots.
- `keep_hourly` / `keep_daily` / `keep_weekly` / `keep_monthly` n: walking the snapshots
  newest first, the newest snapshot of each of the n most recent hours / days / ISO weeks /
  months *that hold a snapshot* (a day with no backup uses up no count). The buckets are
  read in the time zone given (restic reads them in the zone each snapshot was taken in).
- A snapshot kept by several rules counts against each of them (as in restic).

Where we differ from `restic forget`, on purpose:

- **Pinned snapshots** (a `pin:<reason>` tag: pre-update, pre-restore) are kept until
  their pin is released (the tag removed), and they are *outside* the rotation: they use
  up no rule's count. A pre-restore copy of a world about to be replaced must not push a
  regular daily backup out (with restic's `--keep-tag` it would).
- **The newest snapshot is always kept**, whatever the rules say, and a policy of all
  zeros keeps everything (restic refuses to run with no policy; we never delete
  everything because a table was left empty).

What it promises (tests/unit/test_retention.py checks it with Hypothesis and over 400
simulated days of hourly backups): never forgets a pinned or the newest snapshot; keeps
exactly the union of what each rule asks (nothing more); planning again over what it kept
forgets nothing (idempotent); pruning after every backup keeps the same set as one plan
over the whole history would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import partial
from types import MappingProxyType

__all__ = [
    "PIN_PREFIX",
    "RULES",
    "KeepPolicy",
    "RetentionPlan",
    "Snapshot",
    "bucket",
    "pin_tag",
    "plan",
]

# A snapshot tagged `pin:<reason>` is kept until the tag is removed.
PIN_PREFIX = "pin:"
# The rules, in the order restic applies them (and reports them).
RULES = ("last", "hourly", "daily", "weekly", "monthly")


def pin_tag(reason: str) -> str:
    """The tag that pins a snapshot: `pin:pre-update`, `pin:pre-restore`."""
    return PIN_PREFIX + reason


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the planner needs of one snapshot: its id, when it was taken (wall-clock
    seconds), its tags."""

    id: str
    time: float
    tags: frozenset[str] = frozenset()

    @property
    def pinned(self) -> bool:
        return any(tag.startswith(PIN_PREFIX) for tag in self.tags)


@dataclass(frozen=True, slots=True)
class KeepPolicy:
    """How many of each: the `[backup] keep_*` settings."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self) -> None:
        for rule in RULES:
            if getattr(self, rule) < 0:
                raise ValueError(f"keep_{rule} must not be negative")

    @property
    def empty(self) -> bool:
        return all(getattr(self, rule) == 0 for rule in RULES)


def bucket(rule: str, time: float, zone: tzinfo = UTC) -> int:
    """The bucket of a time for a rule, as restic numbers them (hourly 2026120704,
    daily 20261207, weekly ISO 202649, monthly 202612)."""
    moment = datetime.fromtimestamp(time, zone)
    if rule == "hourly":
        return moment.year * 1_000_000 + moment.month * 10_000 + moment.day * 100 + moment.hour
    if rule == "daily":
        return moment.year * 10_000 + moment.month * 100 + moment.day
    if rule == "weekly":
        year, week, _ = moment.isocalendar()
        return year * 100 + week
    if rule == "monthly":
        return moment.year * 100 + moment.month
    raise ValueError(f"unknown rule {rule!r}")


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """What to keep and what to forget, each newest first; `reasons` says why each kept
    snapshot stays (`last`, `daily`, ..., `pinned`, `newest`, `no policy`)."""

    keep: tuple[Snapshot, ...]
    forget: tuple[Snapshot, ...]
    reasons: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))


def _newest_first(snapshots: Iterable[Snapshot]) -> list[Snapshot]:
    # Ties on time are broken by id so the plan never depends on the listing's order.
    return sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)


def plan(snapshots: Iterable[Snapshot], policy: KeepPolicy, zone: tzinfo = UTC) -> RetentionPlan:
    """Decide, over every snapshot of the repository's world, what to keep."""
    ordered = _newest_first(snapshots)
    reasons: dict[str, list[str]] = {s.id: [] for s in ordered}
    if ordered:
        reasons[ordered[0].id].append("newest")
    for snapshot in ordered:
        if snapshot.pinned:
            reasons[snapshot.id].append("pinned")
    if policy.empty:
        for snapshot in ordered:
            reasons[snapshot.id].append("no policy")
    else:
        rotated = [s for s in ordered if not s.pinned]
        for snapshot in rotated[: policy.last]:
            reasons[snapshot.id].append("last")
        for rule in RULES[1:]:
            for snapshot in _bucket_rule(
                rotated, getattr(policy, rule), partial(bucket, rule, zone=zone)
            ):
                reasons[snapshot.id].append(rule)
    keep = tuple(s for s in ordered if reasons[s.id])
    forget = tuple(s for s in ordered if not reasons[s.id])
    return RetentionPlan(keep, forget, MappingProxyType({s.id: tuple(reasons[s.id]) for s in keep}))


def _bucket_rule(
    ordered: list[Snapshot], count: int, bucket_of: Callable[[float], int]
) -> list[Snapshot]:
    """restic's loop for one rule: newest first, keep a snapshot whenever its bucket
    differs from the last one this rule kept, while the rule has count left."""
    kept: list[Snapshot] = []
    last: int | None = None
    for snapshot in ordered:
        if len(kept) >= count:
            break
        value = bucket_of(snapshot.time)
        if value != last:
            kept.append(snapshot)
            last = value
    return kept
