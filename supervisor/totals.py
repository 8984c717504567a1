"""Pure: what has happened to one service, as totals that only grow.

The restart state machine's `restart_count` is the current backoff count: it starts over
after a healthy stretch and at the operator's `restart`. These totals never do: they
count for the life of the state file (kept with it, through daemon restarts and the
operator's `restart`), so a scrape can read rates from them.

- `restarts`: the steps the worker carried out that started the service again, by the
  pending step's cause (`restarts.Pending.cause`): an exit's kind (crash, oom, signalled,
  update, update_button, login_ended), `unhealthy`, or who asked (operator, rotation,
  server_restarted, guard_socket, dashboard_settings, resumed, requested);
- `crashes`: exits judged failures (a crash, an OOM kill, a kill nobody asked for);
- `unhealthy_restarts`: restarts decided because the health check failed;
- `crash_loops`: entries into crash_loop (from an exit or an unhealthy check);
- `oom_kills`: exits the kernel's OOM killer caused (whatever was decided after them);
- `dashboard_stops`: the server's stops and restarts the dashboard asked for (through
  the guard) and Docker carried out.

A state file from before the totals has none: they start at zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from supervisor.restarts import (
    Action,
    Decision,
    ExitJudgement,
    Pending,
    ServiceRestartState,
    ServiceStatus,
)

__all__ = [
    "Totals",
    "after_dashboard_stop",
    "after_exit",
    "after_issue",
    "after_unhealthy",
]

_COUNTS = ("crashes", "unhealthy_restarts", "crash_loops", "dashboard_stops", "oom_kills")
# A pending step from a state file written before causes were kept.
UNKNOWN_CAUSE = "unknown"


@dataclass(frozen=True, slots=True)
class Totals:
    restarts: Mapping[str, int] = field(default_factory=dict)  # by cause
    crashes: int = 0
    unhealthy_restarts: int = 0
    crash_loops: int = 0
    dashboard_stops: int = 0
    oom_kills: int = 0

    @property
    def restarts_total(self) -> int:
        return sum(self.restarts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "restarts": dict(sorted(self.restarts.items())),
            "restarts_total": self.restarts_total,
            **{name: getattr(self, name) for name in _COUNTS},
        }

    @classmethod
    def from_json(cls, data: Any) -> Totals:
        """Inverse of to_json; None (a state file from before the totals) is all zero.
        Raises ValueError on anything malformed."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError("totals must be an object")
        restarts = data.get("restarts", {})
        if not isinstance(restarts, Mapping):
            raise ValueError("totals.restarts must be an object")
        by_cause = {
            str(cause): _count(n, f"totals.restarts.{cause}") for cause, n in restarts.items()
        }
        counts = {name: _count(data.get(name, 0), f"totals.{name}") for name in _COUNTS}
        return cls(restarts=by_cause, **counts)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _entered_crash_loop(before: ServiceRestartState, after: ServiceRestartState) -> int:
    """1 when this transition went into crash_loop (another failure while held is none)."""
    held = ServiceStatus.CRASH_LOOP
    return 1 if after.status is held and before.status is not held else 0


def after_exit(
    totals: Totals,
    judged: ExitJudgement,
    before: ServiceRestartState,
    after: ServiceRestartState,
) -> Totals:
    """An exit was judged and the state machine went from `before` to `after`."""
    return replace(
        totals,
        crashes=totals.crashes + (1 if judged.failure else 0),
        oom_kills=totals.oom_kills + (1 if judged.oom_killed else 0),
        crash_loops=totals.crash_loops + _entered_crash_loop(before, after),
    )


def after_unhealthy(
    totals: Totals, decision: Decision, before: ServiceRestartState, after: ServiceRestartState
) -> Totals:
    """An unhealthy check was decided on (restart, crash loop, or nothing)."""
    return replace(
        totals,
        unhealthy_restarts=totals.unhealthy_restarts
        + (1 if decision.action is Action.RESTART else 0),
        crash_loops=totals.crash_loops + _entered_crash_loop(before, after),
    )


def after_issue(totals: Totals, pending: Pending) -> Totals:
    """The worker carries a pending step out: the service starts again."""
    cause = pending.cause or UNKNOWN_CAUSE
    return replace(totals, restarts={**totals.restarts, cause: totals.restarts.get(cause, 0) + 1})


def after_dashboard_stop(totals: Totals) -> Totals:
    """Docker carried out a stop or restart of the server that the dashboard asked for."""
    return replace(totals, dashboard_stops=totals.dashboard_stops + 1)
