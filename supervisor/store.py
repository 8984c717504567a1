"""What the daemon knows of each service, how it survives a restart of the daemon (the
state file), and the live view `status` shows. The daemon and an operator's `restart`
without a daemon both keep the file through here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from supervisor import hyos, restarts, totals
from supervisor.dockertypes import parse_time
from supervisor.logs import BoundLogger
from supervisor.restarts import ServiceRestartState, ServiceStatus
from supervisor.settings import Settings
from supervisor.statefile import default_state_dir, read_json, write_json_atomic
from supervisor.totals import Totals


@dataclass
class Service:
    """The daemon's live view of one service."""

    role: str
    restart: ServiceRestartState = field(default_factory=ServiceRestartState)
    container_id: str | None = None
    health: str | None = None
    busy: bool = False  # the service's worker is carrying out a step (restart, recreate)
    last_finished_at: datetime | None = None  # the exit already accounted for
    # Stops asked for, by container: the moments they were marked (supervisor.stopmarks).
    stop_requested: dict[str, tuple[float, ...]] = field(default_factory=dict)
    oom_seen: bool = False  # an `oom` event arrived; the next `die` is an OOM kill
    login: hyos.Login | None = None  # HyOS's auth.json as last read (server only)
    login_watch: tuple[str, float | None] | None = None  # (container, start) being followed
    last_exit: restarts.ExitJudgement | None = None  # the last exit, as judged (accounting)
    totals: Totals = field(default_factory=Totals)  # they only grow (supervisor.totals)
    # Events the engine stamped before this (ns) are an update transaction's own, already
    # accounted for by it (supervisor/updates.py): the worker drops them.
    quiet_before_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "restart": self.restart.to_json(),
            "container_id": self.container_id,
            "last_finished_at": _rfc3339(self.last_finished_at),
            "totals": self.totals.to_json(),
            "last_exit": None if self.last_exit is None else self.last_exit.to_json(),
        }


def service_status(service: Service) -> ServiceStatus:
    """The state machine's status, except that a running server waiting for its Hytale
    login needs the operator just as much as one whose tokens were refused."""
    if service.login is not None and service.login.waiting:
        return ServiceStatus.NEEDS_AUTH
    return service.restart.status


def _rfc3339(moment: datetime | None) -> str:
    """For the state file: the form Docker writes, so parse_time reads old and new alike."""
    return "" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def state_dir_for(settings: Settings) -> Path:
    return settings.state_dir or default_state_dir()


def state_path(settings: Settings) -> Path:
    return state_dir_for(settings) / f"{settings.stack}.json"


class StateStore:
    """The daemon's state file: restart accounting per service, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, services: Mapping[str, Service], log: BoundLogger) -> bool:
        """Restore the saved accounting into `services`; returns manager_after_server."""
        data = read_json(self.path) or {}
        for role, saved in (data.get("services") or {}).items():
            service = services.get(role)
            if service is None:
                continue
            try:
                # Before the rest: the totals outlive accounting that cannot be read.
                service.totals = Totals.from_json(saved.get("totals"))
            except ValueError as err:
                log.warning(
                    "ignoring unreadable saved totals", extra={"service": role, "error": str(err)}
                )
            if "restart" not in saved and "totals" in saved:
                continue  # only totals: the operator restarted it without a daemon (forget)
            try:
                service.restart = ServiceRestartState.from_json(saved.get("restart") or {})
            except ValueError as err:
                log.warning(
                    "ignoring unreadable saved state", extra={"service": role, "error": str(err)}
                )
                continue
            service.container_id = saved.get("container_id")
            service.last_finished_at = parse_time(saved.get("last_finished_at"))
            try:
                service.last_exit = restarts.ExitJudgement.from_json(saved.get("last_exit"))
            except ValueError as err:
                log.warning(
                    "ignoring unreadable saved state", extra={"service": role, "error": str(err)}
                )
            service.restart = _resume_legacy_due(service.restart, saved.get("restart_due"))
        return bool(data.get("manager_after_server"))

    def save(
        self,
        services: Mapping[str, Service],
        manager_after_server: bool,
        now: float,
        drain: Mapping[str, Any] | None = None,
    ) -> None:
        """Raises OSError when the file cannot be written (the caller logs it). `drain`:
        the pending drain (supervisor/drains.py), kept so a new daemon resumes it."""
        data: dict[str, Any] = {
            "stack": self.path.stem,
            "pid_saved_at": now,
            "manager_after_server": manager_after_server,
            "services": {role: s.to_json() for role, s in services.items()},
        }
        if drain is not None:
            data["drain"] = dict(drain)
        write_json_atomic(self.path, data)

    def saved_drain(self) -> Any:
        """The pending drain a previous daemon left (unchecked: drains.py reads it)."""
        return (read_json(self.path) or {}).get("drain")

    def forget(self, role: str) -> None:
        """Drop a service's saved accounting (an operator restart without a daemon): its
        totals stay, and count that restart."""
        data = read_json(self.path)
        if data and role in (data.get("services") or {}):
            saved = data["services"][role]
            try:
                kept = Totals.from_json(saved.get("totals"))
            except (AttributeError, ValueError):
                kept = Totals()
            counted = totals.after_issue(
                kept, restarts.Pending(restarts.Step.RESTART, 0.0, cause="operator")
            )
            data["services"][role] = {"totals": counted.to_json()}
            write_json_atomic(self.path, data)


def _resume_legacy_due(state: ServiceRestartState, due: Any) -> ServiceRestartState:
    """State files before pending steps moved into the state machine kept the due time
    beside it: a daemon upgraded mid-backoff still restarts the service then."""
    waiting = state.status in (ServiceStatus.BACKOFF, ServiceStatus.NEEDS_AUTH)
    if isinstance(due, int | float) and state.pending is None and waiting:
        return restarts.request(state, restarts.Step.START, float(due), "resumed", "resumed")
    return state


def status_line(services: Mapping[str, Service]) -> str:
    """One line for systemd's STATUS= and the logs."""
    parts = []
    for role, s in services.items():
        health = f"({s.health})" if s.health else ""
        parts.append(f"{role}={service_status(s).value}{health}")
        if s.login is not None and s.login.waiting:
            parts.append(f"login code {s.login.code} at {s.login.url}")
    return " ".join(parts)


def _due_in(service: Service, now: float) -> float | None:
    pending = service.restart.pending
    return None if pending is None else max(0.0, pending.due_at - now)


def live_view(
    stack: str,
    services: Mapping[str, Service],
    now: float,
    *,
    stopping: bool,
    heartbeat_age_s: float,
    reconciles: int,
) -> dict[str, Any]:
    """The live view `status` shows (over the control socket)."""
    rows = {}
    for role, s in services.items():
        status = service_status(s)
        rows[role] = {
            "status": status.value,
            "login": s.login.to_json() if s.login is not None else None,
            "container_id": (s.container_id or "")[:12] or None,
            "health": s.health,
            "busy": s.busy,
            "restart_count": s.restart.restart_count,
            "recent_failures": len(s.restart.crash_times),
            "backoff_s": s.restart.last_backoff_s,
            "restart_in_s": _due_in(s, now),
            "crash_loop": s.restart.status is ServiceStatus.CRASH_LOOP,
            "needs_auth": status is ServiceStatus.NEEDS_AUTH,
            "last_reason": s.restart.last_reason,
            "last_exit": None if s.last_exit is None else s.last_exit.to_json(),
            "totals": s.totals.to_json(),
        }
    return {
        "stack": stack,
        "stopping": stopping,
        "heartbeat_age_s": round(heartbeat_age_s, 3),
        "reconciles": reconciles,
        "services": rows,
    }
