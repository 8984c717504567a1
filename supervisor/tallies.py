"""Pure: what the daemon counts and times as things happen, for `/metrics` to read.

Everything `/metrics` shows is either held already (the services' records, the drain,
the backups' records) or tallied here the moment it happens: a scrape only reads. These
are in-memory (a daemon restart starts them over, as Prometheus expects of counters and
histograms); what must outlive the daemon is in the state file's totals instead
(supervisor/totals.py).

- `Histogram`: fixed buckets, `observe` only; read as cumulative buckets.
- `GuardTally`: the guard's requests by verdict and the latency it adds.
- `UpdateFacts`: the update code's facts (issue 26 feeds them; zero/absent until then).
- `Tallies`: the daemon's set of them (held by `Supervision`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

__all__ = [
    "GUARD_LATENCY_BUCKETS",
    "READY_BUCKETS",
    "STOP_BUCKETS",
    "GuardTally",
    "Histogram",
    "PlayerCount",
    "Tallies",
    "UpdateFacts",
]

# Seconds from a server's start to its first `healthy` (HyOS's start period is 180 s).
READY_BUCKETS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
# Seconds a graceful stop of the server takes (the world save, up to its stop_timeout).
STOP_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Seconds the guard holds a request before forwarding it (decision, lookups, the mark).
GUARD_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(eq=False)
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)  # per bucket, not cumulative; the last is +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(set(self.bounds)) or not all(
            math.isfinite(b) for b in self.bounds
        ):
            raise ValueError("histogram bounds must be finite, distinct and increasing")
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            return
        value = max(0.0, value)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus's buckets: (`le`, observations <= le), +Inf last."""
        running, out = 0, []
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == math.inf else _le(bound), float(running)))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


class Verdict:
    ALLOW = "allow"
    DENY = "deny"


@dataclass(eq=False)
class GuardTally:
    """The dashboard's guard: each request's verdict, and for an allowed one the time
    from its head being read to its being sent on (what the guard adds)."""

    requests: dict[str, int] = field(default_factory=lambda: {Verdict.ALLOW: 0, Verdict.DENY: 0})
    refused_connections: int = 0  # over max_connections: answered 503
    added_latency: Histogram = field(default_factory=lambda: Histogram(GUARD_LATENCY_BUCKETS))

    def decided(self, allowed: bool) -> None:
        verdict = Verdict.ALLOW if allowed else Verdict.DENY
        self.requests[verdict] = self.requests.get(verdict, 0) + 1

    def forwarded(self, seconds: float) -> None:
        self.added_latency.observe(seconds)

    def refused(self) -> None:
        self.refused_connections += 1


class UpdateResult:
    """How an update ended (issue 26's words; a closed set, so the series are bounded)."""

    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    ALL = (APPLIED, ROLLED_BACK, FAILED)


@dataclass(eq=False)
class UpdateFacts:
    """What the update code (issue 26) knows: it sets these as it learns them and calls
    `ended` once per update. Until it does, the metrics show zeros and no version."""

    game_version: str | None = None  # the installed game version (HyOS's version.json)
    latest_version: str | None = None  # the newest one known
    available: bool = False
    last_check: float | None = None  # wall clock of the last check for an update
    results: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UpdateResult.ALL, 0))

    def ended(self, result: str) -> None:
        if result not in UpdateResult.ALL:
            raise ValueError(f"unknown update result {result!r}; one of {UpdateResult.ALL}")
        self.results[result] += 1


@dataclass(frozen=True, slots=True)
class PlayerCount:
    """The server's last answer to `GET /server/status`, as a drain asked it."""

    online: int
    max: int
    at: float  # wall clock


@dataclass(eq=False)
class Tallies:
    server_ready: Histogram = field(default_factory=lambda: Histogram(READY_BUCKETS))
    server_stop: Histogram = field(default_factory=lambda: Histogram(STOP_BUCKETS))
    guard: GuardTally = field(default_factory=GuardTally)
    update: UpdateFacts = field(default_factory=UpdateFacts)
    players: PlayerCount | None = None
    drains: dict[str, int] = field(default_factory=dict)  # ended drains, by outcome
    crash_reports: dict[str, int] = field(default_factory=dict)  # written, by service

    def stopped(self, game: bool, seconds: float) -> None:
        """A graceful stop returned after `seconds` (only the game's is kept)."""
        if game:
            self.server_stop.observe(seconds)

    def drain_ended(self, outcome: str) -> None:
        self.drains[outcome] = self.drains.get(outcome, 0) + 1

    def crash_report_written(self, role: str) -> None:
        self.crash_reports[role] = self.crash_reports.get(role, 0) + 1
