"""Pure: desired specs + observed containers -> what to do, per service, in start order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from supervisor.dockertypes import Observed
from supervisor.roles import Role


@dataclass(frozen=True)
class Desired:
    """A container the settings describe: its create body and what it is known by."""

    role: str
    name: str
    body: Mapping[str, Any]  # the Engine API create body (policy.build_create_body)
    image: str
    spec_hash: str  # also in the body's labels, so the engine reports it back


@dataclass(frozen=True)
class ServicePlan:
    """What `up` does for one service: remove, then create, then start."""

    role: str
    desired: Desired
    keep: Observed | None
    remove: tuple[Observed, ...] = field(default=())
    reason: str = ""

    @property
    def create(self) -> bool:
        return self.keep is None

    @property
    def start(self) -> bool:
        return self.keep is None or not self.keep.running

    @property
    def keeps_exited(self) -> bool:
        """The kept container has exited: after startup the daemon leaves it to its
        restart decisions instead of starting it here."""
        return self.keep is not None and self.keep.state in ("exited", "dead")

    @property
    def changes_nothing(self) -> bool:
        return not self.remove and not self.create and not self.start


_LONG_AGO = datetime.min.replace(tzinfo=UTC)


def plan_service(desired: Desired, observed: Iterable[Observed]) -> ServicePlan:
    """Keep one container whose hash matches; remove drifted ones and duplicates."""
    mine = [o for o in observed if o.role == desired.role]
    # Prefer a running match, then the newest: duplicates can only come from a crash mid-create.
    matches = sorted(
        (o for o in mine if o.spec_hash == desired.spec_hash),
        key=lambda o: (o.running, o.created or _LONG_AGO),
        reverse=True,
    )
    keep = matches[0] if matches else None
    remove = tuple(o for o in mine if o is not keep)
    if keep is None and remove:
        reason = "spec changed (drift): recreate"
    elif keep is None:
        reason = "missing: create"
    elif remove:
        reason = "duplicates: remove extras"
    elif not keep.running:
        reason = f"{keep.state}: start"
    else:
        reason = "up to date"
    return ServicePlan(desired.role, desired, keep, remove, reason)


def plan_stack(desired: Mapping[str, Desired], observed: Iterable[Observed]) -> list[ServicePlan]:
    """One plan per desired service, in the order given (the start order)."""
    seen = list(observed)
    return [plan_service(d, seen) for d in desired.values()]


def strays(desired: Mapping[str, Desired], observed: Iterable[Observed]) -> list[Observed]:
    """Containers of the stack whose role is no longer desired. A running backup helper
    is not one: `up` during a backup must not cut the snapshot short (it removes its own
    leftovers, and refuses to start beside a running one); nor is a running game-log
    helper (a crash report's reads, a prune: run_once removes it when it is done)."""
    return [
        o for o in observed if o.role not in desired and not (o.role in _KEPT_RUNNING and o.running)
    ]


_KEPT_RUNNING = (Role.BACKUP, Role.LOGS)
