"""Pure: what the Docker engine reports, as frozen values, and the parsers that make them.

Docker's JSON is read here and only here: each answer is parsed once into the values
below, so the rest of the supervisor never sees Docker's shapes (nor its timestamp
format). The errors a Docker call ends in, and the labels that mark what the stack owns,
belong to the same boundary. Nothing here does I/O; `engine` (aiodocker) and any other
`ports.EnginePort` (a fake in tests) return these values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from entrypoint.contract import LABEL_MANAGED, LABEL_ROLE, LABEL_SPEC_HASH, LABEL_STACK

# --- what the stack owns: its labels, built here and nowhere else ------------------------


def ownership_labels(stack: str) -> dict[str, str]:
    """The labels on everything the stack creates: ours, so `down` may remove it."""
    return {LABEL_MANAGED: "true", LABEL_STACK: stack}


def ownership_filter(stack: str) -> list[str]:
    """The engine's `label` filter for what `ownership_labels` marks."""
    return [f"{key}={value}" for key, value in ownership_labels(stack).items()]


def owned_by(labels: Mapping[str, str], stack: str) -> bool:
    """Whether these labels mark an object of this stack."""
    return all(labels.get(key) == value for key, value in ownership_labels(stack).items())


# --- what the engine reports, parsed once -----------------------------------------------


@dataclass(frozen=True)
class Observed:
    """A container of the stack as the engine reports it."""

    id: str
    name: str
    role: str
    spec_hash: str
    state: str  # created | running | paused | restarting | exited | dead | removing
    health: str | None = None  # None when the container has no health check
    created: datetime | None = None

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting", "paused")


@dataclass(frozen=True, slots=True)
class Health:
    """A container's health check result (State.Health)."""

    status: str  # starting | healthy | unhealthy
    failing_streak: int = 0
    last_output: str = ""  # the latest probe's output, as Docker keeps it


@dataclass(frozen=True, slots=True)
class ContainerState:
    """State of an inspect result; times are None where Docker says "never"."""

    status: str = ""  # created | running | paused | restarting | exited | dead | removing
    running: bool = False
    restarting: bool = False
    exit_code: int = 0
    oom_killed: bool = False
    pid: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    health: Health | None = None  # None when the container has no health check

    @property
    def health_status(self) -> str | None:
        return None if self.health is None else self.health.status


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """The facts of one inspect result that the supervisor acts on."""

    id: str
    name: str  # without Docker's leading "/"
    state: ContainerState = field(default_factory=ContainerState)
    image: str = ""  # as configured (Config.Image), not the resolved digest
    labels: Mapping[str, str] = field(default_factory=dict)
    restart_count: int = 0
    health_start_period_s: float = 0.0  # the health check's grace period after a start


@dataclass(frozen=True, slots=True)
class ExecInfo:
    """An exec instance (GET /exec/{id}/json): whose it is and as whom it runs."""

    id: str
    container_id: str
    user: str
    privileged: bool


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One container event of the engine's event stream."""

    action: str  # start | die | oom | health_status: healthy | ...
    container_id: str
    time_nano: int = 0  # the engine's clock; orders events and resumes a stream
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # the container's labels
    exit_code: int | None = None  # on `die`, when the engine reports it

    @property
    def time(self) -> datetime:
        seconds, nanos = divmod(self.time_nano, 10**9)
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)


@dataclass(frozen=True, slots=True)
class ContainerExit:
    """One container's exit, as the engine told it: its `die` event (quick: an inspect
    right after `die` waits for the engine's exit cleanup) or an inspect of the stopped
    container (an exit nobody saw the event of)."""

    container_id: str
    name: str
    exit_code: int
    oom_killed: bool
    finished_at: datetime | None  # the event's time stands in until FinishedAt is read

    @classmethod
    def of_event(cls, event: EngineEvent, oom_killed: bool) -> ContainerExit | None:
        """A `die` event's exit (`oom` comes before `die`, so the caller knows of one);
        None when the engine gave no exit code."""
        if event.exit_code is None:
            return None
        return cls(event.container_id, event.name, event.exit_code, oom_killed, event.time)

    @classmethod
    def of_info(cls, info: ContainerInfo) -> ContainerExit:
        state = info.state
        return cls(info.id, info.name, state.exit_code, state.oom_killed, state.finished_at)


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    name: str
    mountpoint: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MountFact:
    kind: str  # bind | volume | tmpfs | ...
    source: str  # the host path (bind) or the volume's path/name
    read_only: bool


@dataclass(frozen=True, slots=True)
class PortBinding:
    port: str  # "5520/udp"
    host_ip: str  # "" means every interface


@dataclass(frozen=True, slots=True)
class ContainerHardening:
    """A live container's isolation and limits, as `audit` judges them."""

    id: str = ""
    name: str = ""  # without Docker's leading "/"
    user: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    health_test: tuple[str, ...] = ()
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    # SecurityOpt as (key, value): the engine accepts both `key=value` and `key:value`.
    security_options: tuple[tuple[str, str], ...] = ()
    # Every mount, from the live list and from the configuration (Mounts and Binds).
    mounts: tuple[MountFact, ...] = ()
    # Namespace modes by namespace (network, PID, IPC, UTS, user); "host" shares the host's.
    namespaces: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = ""
    memory: int = 0
    nano_cpus: int = 0
    cpu_quota: int = 0
    pids_limit: int = 0
    read_only_root: bool = False
    port_bindings: tuple[PortBinding, ...] = ()
    cgroup_parent: str = ""
    devices: tuple[str, ...] = ()  # host paths of mapped devices
    restart_policy: str = "no"
    log_driver: str | None = None
    log_max_size: str = ""
    init: bool = False
    tmpfs: Mapping[str, str] = field(default_factory=dict)  # path -> mount options


# Docker's RFC 3339 with up to nine fraction digits, e.g. 2024-05-01T10:00:00.123456789Z.
_RFC3339 = re.compile(
    r"(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)?"
)


def parse_time(text: object) -> datetime | None:
    """Docker's timestamps -> an aware UTC datetime (microseconds: Python keeps no more).

    None for Go's zero time ("0001-01-01T00:00:00Z": never started or finished), for an
    empty value and for anything else that is not a timestamp."""
    found = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if found is None or found["base"].startswith("0001-"):
        return None
    fraction = (found["fraction"] or "")[:6].ljust(6, "0")
    zone = found["zone"] or "Z"
    offset = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{found['base']}.{fraction}{offset}").astimezone(UTC)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _labels(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(value).items()}


def _int(value: object, default: int = 0) -> int:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return default


def health_from_json(obj: object) -> Health | None:
    health = _mapping(obj)
    if not health.get("Status"):
        return None
    log = health.get("Log") or []
    last = _mapping(log[-1]) if isinstance(log, list) and log else {}
    return Health(
        status=str(health["Status"]),
        failing_streak=_int(health.get("FailingStreak")),
        last_output=str(last.get("Output") or ""),
    )


def state_from_json(obj: object) -> ContainerState:
    state = _mapping(obj)
    return ContainerState(
        status=str(state.get("Status") or ""),
        running=bool(state.get("Running")),
        restarting=bool(state.get("Restarting")),
        exit_code=_int(state.get("ExitCode")),
        oom_killed=bool(state.get("OOMKilled")),
        pid=_int(state.get("Pid")),
        started_at=parse_time(state.get("StartedAt")),
        finished_at=parse_time(state.get("FinishedAt")),
        health=health_from_json(state.get("Health")),
    )


def container_from_json(obj: Mapping[str, Any]) -> ContainerInfo:
    """An inspect result (GET /containers/{id}/json) -> ContainerInfo."""
    config = _mapping(obj.get("Config"))
    healthcheck = _mapping(config.get("Healthcheck"))
    return ContainerInfo(
        id=str(obj.get("Id") or ""),
        name=str(obj.get("Name") or "").lstrip("/"),
        state=state_from_json(obj.get("State")),
        image=str(config.get("Image") or ""),
        labels=_labels(config.get("Labels")),
        restart_count=_int(obj.get("RestartCount")),
        health_start_period_s=_int(healthcheck.get("StartPeriod")) / 1e9,  # nanoseconds
    )


def exec_from_json(obj: object) -> ExecInfo | None:
    """An exec inspect -> ExecInfo; None for an answer without its ids. Unsure means
    privileged (a missing flag), and a user that is not a string is no user anyone has."""
    if not isinstance(obj, dict):
        return None
    eid, cid, proc = obj.get("ID"), obj.get("ContainerID"), obj.get("ProcessConfig")
    if not isinstance(eid, str) or not isinstance(cid, str) or not isinstance(proc, dict):
        return None
    user = proc.get("user", "")
    return ExecInfo(
        eid, cid, user if isinstance(user, str) else "<?>", proc.get("privileged") is not False
    )


def observed_from_json(obj: Mapping[str, Any]) -> Observed:
    """A list entry (GET /containers/json) or an inspect result -> what planning needs."""
    config = _mapping(obj.get("Config"))
    labels = _labels(config.get("Labels") or obj.get("Labels"))
    state = obj.get("State")
    if isinstance(state, Mapping):
        status, health = str(state.get("Status", "")), state_from_json(state).health_status
    else:
        # A list entry: health only appears in the human Status text, e.g. "Up 3s (healthy)".
        status, health = str(state or ""), _health_from_status(str(obj.get("Status", "")))
    names = obj.get("Names") or [obj.get("Name", "")]
    created = obj.get("Created")
    return Observed(
        id=str(obj.get("Id", "")),
        name=str(names[0]).lstrip("/"),
        role=labels.get(LABEL_ROLE, ""),
        spec_hash=labels.get(LABEL_SPEC_HASH, ""),
        state=status,
        health=health,
        # A list entry has Unix seconds, an inspect result RFC 3339.
        created=datetime.fromtimestamp(created, UTC)
        if isinstance(created, int | float) and not isinstance(created, bool)
        else parse_time(created),
    )


def _health_from_status(text: str) -> str | None:
    for marker, health in (("(healthy)", "healthy"), ("(unhealthy)", "unhealthy"),
                           ("(health: starting)", "starting")):  # fmt: skip
        if marker in text:
            return health
    return None


def event_from_json(obj: Mapping[str, Any]) -> EngineEvent:
    """One line of GET /events (API >= 1.22 fields, with the legacy ones as fallback)."""
    actor = _mapping(obj.get("Actor"))
    attributes = _labels(actor.get("Attributes"))
    code = attributes.get("exitCode", "")
    return EngineEvent(
        action=str(obj.get("Action") or obj.get("status") or ""),
        container_id=str(obj.get("id") or actor.get("ID") or ""),
        time_nano=_int(obj.get("timeNano")),
        name=attributes.get("name", ""),
        # Attributes mix the labels with name, image and exitCode; labels are ours to read.
        labels=attributes,
        exit_code=int(code) if re.fullmatch(r"-?\d+", code) else None,
    )


_NAMESPACE_KEYS = {
    "network": "NetworkMode",
    "PID": "PidMode",
    "IPC": "IpcMode",
    "UTS": "UTSMode",
    "user": "UsernsMode",
}


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _mapping_list(value: object) -> list[Mapping[str, Any]]:
    return [_mapping(v) for v in value] if isinstance(value, list) else []


def hardening_from_json(obj: Mapping[str, Any]) -> ContainerHardening:
    """An inspect result -> the hardening facts `policy.audit` checks."""
    host = _mapping(obj.get("HostConfig"))
    config = _mapping(obj.get("Config"))
    log = _mapping(host.get("LogConfig"))
    mounts = [
        MountFact(str(m.get("Type", "")), str(m.get("Source", "")), m.get("RW") is False)
        for m in _mapping_list(obj.get("Mounts"))
    ]
    mounts += [
        MountFact(str(m.get("Type", "")), str(m.get("Source", "")), bool(m.get("ReadOnly")))
        for m in _mapping_list(host.get("Mounts"))
    ]
    mounts += [
        MountFact("bind", b.split(":")[0], ":ro" in b or b.endswith(",ro"))
        for b in _strings(host.get("Binds"))
    ]
    options = []
    for option in _strings(host.get("SecurityOpt")):
        key, _, value = option.replace("=", ":", 1).partition(":")
        options.append((key, value))
    ports = [
        PortBinding(str(port), str(binding.get("HostIp") or ""))
        for port, bindings in _mapping(host.get("PortBindings")).items()
        for binding in _mapping_list(bindings)
    ]
    return ContainerHardening(
        id=str(obj.get("Id") or ""),
        name=str(obj.get("Name") or "").lstrip("/"),
        user=str(config.get("User") or ""),
        labels=_labels(config.get("Labels")),
        health_test=_strings(_mapping(config.get("Healthcheck")).get("Test")),
        privileged=bool(host.get("Privileged")),
        cap_add=_strings(host.get("CapAdd")),
        cap_drop=_strings(host.get("CapDrop")),
        security_options=tuple(options),
        mounts=tuple(mounts),
        namespaces={what: str(host.get(key) or "") for what, key in _NAMESPACE_KEYS.items()},
        network_mode=str(host.get("NetworkMode") or "default"),
        memory=_int(host.get("Memory")),
        nano_cpus=_int(host.get("NanoCpus")),
        cpu_quota=_int(host.get("CpuQuota")),
        pids_limit=_int(host.get("PidsLimit")),
        read_only_root=bool(host.get("ReadonlyRootfs")),
        port_bindings=tuple(ports),
        cgroup_parent=str(host.get("CgroupParent") or ""),
        devices=tuple(str(d.get("PathOnHost") or d) for d in _mapping_list(host.get("Devices"))),
        restart_policy=str(_mapping(host.get("RestartPolicy")).get("Name") or "no"),
        log_driver=None if log.get("Type") is None else str(log["Type"]),
        log_max_size=str(_mapping(log.get("Config")).get("max-size") or ""),
        init=bool(host.get("Init")),
        tmpfs={str(k): str(v) for k, v in _mapping(host.get("Tmpfs")).items()},
    )


def volume_from_json(obj: Mapping[str, Any]) -> VolumeInfo:
    return VolumeInfo(
        name=str(obj.get("Name") or ""),
        mountpoint=str(obj.get("Mountpoint") or ""),
        labels=_labels(obj.get("Labels")),
    )


def readiness(info: ContainerInfo) -> str:
    """'ready', 'waiting', or why it will never be ready (`Engine.wait_ready`)."""
    state = info.state
    if state.status in ("exited", "dead"):
        return f"exited with code {state.exit_code}" + (" (OOM killed)" if state.oom_killed else "")
    health = state.health_status
    if health == "unhealthy":
        return "turned unhealthy"
    if state.running and health in (None, "healthy"):
        return "ready"
    return "waiting"


# --- how a call to the engine fails -----------------------------------------------------


class EngineError(Exception):
    """A Docker call failed for a reason worth one clear line to the operator.

    ``str(err)`` is what Docker said; ``what`` names the operation that failed
    ("create container hyos-manager"), empty when unknown."""

    def __init__(self, message: str, what: str = "") -> None:
        super().__init__(message)
        self.what = what


class DockerUnreachable(EngineError):
    pass


class NotFound(EngineError):
    pass


def memory_peak_from_stats(stats: Any) -> int | None:
    """A one-shot stats answer's peak memory use (cgroup v1 `max_usage`); None when it
    reports none (a stopped container has empty memory_stats; cgroup v2 keeps no peak)."""
    memory = stats.get("memory_stats") if isinstance(stats, dict) else None
    peak = memory.get("max_usage") if isinstance(memory, dict) else None
    return peak if isinstance(peak, int) and not isinstance(peak, bool) and peak > 0 else None
