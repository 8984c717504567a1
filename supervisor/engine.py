"""The only module that talks to Docker: thin async calls over the Engine API.

Everything here is I/O with no decisions beyond retrying transient failures; what to
do is decided by the pure modules (stack, policy, plan, restarts). Docker's JSON is
read here and only here: it is parsed once into the frozen values below, so the rest
of the supervisor never sees Docker's shapes (nor its timestamp format).
"""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import aiodocker
import aiohttp
import anyio
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from entrypoint.contract import LABEL_MANAGED, LABEL_ROLE, LABEL_SPEC_HASH, LABEL_STACK
from supervisor.plan import Observed

log = logging.getLogger("supervisor.engine")

# aiodocker reports a refused or broken connection as status 900.
_UNREACHABLE = 900


# --- what the engine reports, parsed once -----------------------------------------------


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


def _transient(err: BaseException) -> bool:
    if isinstance(err, aiodocker.DockerError):
        return err.status == _UNREACHABLE or (err.status >= 500 and "No such" not in str(err))
    return isinstance(err, aiohttp.ClientConnectionError | OSError | TimeoutError)


def _message(err: BaseException) -> str:
    if isinstance(err, aiodocker.DockerError):
        return str(err.message)
    return str(err) or type(err).__name__


class _Connection:
    """One connection to the engine: JSON calls retried while it is unreachable, each
    failure one clear EngineError. The public face is `Engine`."""

    def __init__(self, docker: aiodocker.Docker, host: str, retries: int) -> None:
        self._docker = docker
        self.host = host
        self._retries = retries

    @classmethod
    @asynccontextmanager
    async def connect(cls, host: str, retries: int = 5) -> AsyncIterator[Self]:
        docker = aiodocker.Docker(url=host)
        engine = cls(docker, host, retries)
        try:
            await engine.ping()
            yield engine
        finally:
            await docker.close()

    async def _call(
        self,
        path: str,
        method: str = "GET",
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        attempts: int | None = None,
        what: str = "",
    ) -> Any:
        """One JSON call, retried with bounded backoff while the engine is unreachable."""
        data = json.dumps(body) if body is not None else None
        client_timeout = aiohttp.ClientTimeout(total=timeout) if timeout else None
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(attempts or self._retries),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    kwargs: dict[str, Any] = {"method": method, "params": params, "data": data}
                    if client_timeout is not None:
                        kwargs["timeout"] = client_timeout
                    return await self._docker._query_json(path, **kwargs)
        except aiodocker.DockerError as err:
            if err.status == _UNREACHABLE:
                raise DockerUnreachable(
                    f"cannot reach Docker at {self.host} after {self._retries} attempts; "
                    "is dockerd running and is docker_host right?"
                ) from None
            if err.status == 404:
                raise NotFound(_message(err), what) from None
            raise EngineError(_message(err), what) from None
        except (aiohttp.ClientError, OSError) as err:
            raise DockerUnreachable(
                f"cannot reach Docker at {self.host}: {_message(err)}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def ping(self, attempts: int | None = None) -> None:
        await self._call("version", attempts=attempts)

    async def _inspect_object(self, path: str, attempts: int | None = None) -> Any:
        """GET a container, exec, image, network or volume; None when it does not exist."""
        try:
            return await self._call(path, attempts=attempts)
        except NotFound:
            return None

    async def api_minor(self) -> int:
        """The newest API minor version the engine speaks (1.41 -> 41)."""
        version = (await self._call("version")).get("ApiVersion")
        major, _, minor = str(version).partition(".")
        if major != "1" or not minor.isdigit():
            raise EngineError(f"the engine reports API version {version!r}", "GET /version")
        return int(minor)


class _Containers(_Connection):
    """Containers, and the files and processes inside them."""

    # --- containers --------------------------------------------------------------------

    async def list_stack(self, stack: str) -> list[Observed]:
        """Every container carrying the stack's labels, running or not."""
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_STACK}={stack}"]}
        found = await self._call(
            "containers/json", params={"all": "1", "filters": json.dumps(filters)}
        )
        return [observed_from_json(entry) for entry in found]

    async def inspect(self, ref: str, attempts: int | None = None) -> ContainerInfo | None:
        """The container's facts, or None when no container has this id or name."""
        found = await self._inspect_object(f"containers/{ref}/json", attempts)
        return container_from_json(found) if isinstance(found, dict) else None

    async def inspect_exec(self, exec_id: str, attempts: int | None = None) -> ExecInfo | None:
        """An exec instance's facts, or None when there is none of this id."""
        return exec_from_json(await self._inspect_object(f"exec/{exec_id}/json", attempts))

    async def inspect_hardening(self, ref: str) -> ContainerHardening | None:
        """The container's isolation and limits for `audit`, or None when it is gone."""
        found = await self._inspect_object(f"containers/{ref}/json")
        return None if found is None else hardening_from_json(found)

    async def create(self, name: str, body: Mapping[str, Any]) -> str:
        result = await self._call(
            "containers/create",
            "POST",
            params={"name": name},
            body=body,
            what=f"create container {name}",
        )
        return str(result["Id"])

    async def start(self, container_id: str) -> None:
        await self._call(
            f"containers/{container_id}/start", "POST", what=f"start container {container_id[:12]}"
        )

    async def stop(self, container_id: str, timeout: int) -> None:
        """SIGTERM, wait `timeout`, then SIGKILL; returns once the engine says it stopped."""
        await self._call(
            f"containers/{container_id}/stop",
            "POST",
            params={"t": str(timeout)},
            timeout=timeout + 60,
            what=f"stop container {container_id[:12]}",
        )

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        await self._call(f"containers/{container_id}/kill", "POST", params={"signal": signal})

    async def remove(self, container_id: str) -> None:
        with suppress(NotFound):
            await self._call(f"containers/{container_id}", "DELETE", params={"force": "1"})

    async def logs_tail(self, container_id: str, lines: int = 50) -> list[str]:
        """The last lines of stdout and stderr, demultiplexed."""
        container = self._docker.containers.container(container_id)
        try:
            chunks = await container.log(stdout=True, stderr=True, tail=lines)
        except aiodocker.DockerError:
            return []
        return "".join(chunks).splitlines()[-lines:]

    async def run_once(
        self, name: str, body: Mapping[str, Any], stdin: bytes | None, timeout: float
    ) -> tuple[int, str, str]:
        """Create, start (feeding stdin), wait and remove a one-shot container.

        Returns (exit code, stdout, stderr); the container is removed even on failure.
        """
        container_id = await self.create(name, body)
        try:
            with anyio.fail_after(timeout):
                if stdin is not None:
                    stream = self._docker.containers.container(container_id).attach(stdin=True)
                    async with stream:
                        await self.start(container_id)
                        await stream.write_in(stdin)
                else:
                    await self.start(container_id)
                result = await self._call(
                    f"containers/{container_id}/wait", "POST", timeout=timeout
                )
            container = self._docker.containers.container(container_id)
            out = "".join(await container.log(stdout=True))
            err = "".join(await container.log(stderr=True))
            return int(result.get("StatusCode", -1)), out, err
        finally:
            with anyio.CancelScope(shield=True):
                await self.remove(container_id)

    # --- files and processes inside a container ----------------------------------------

    async def read_file(self, container_id: str, path: str, limit: int = 1 << 20) -> bytes | None:
        """A regular file's bytes through the archive endpoint (running or stopped
        container, its volumes included); None when it does not exist or is too large."""
        try:
            async with self._docker._query(
                f"containers/{container_id}/archive", params={"path": path}
            ) as response:
                raw = await response.content.read(limit + 64 * 1024)
        except aiodocker.DockerError as err:
            if err.status == 404:
                return None
            raise EngineError(_message(err)) from None
        except (aiohttp.ClientError, OSError) as err:
            raise DockerUnreachable(
                f"cannot reach Docker at {self.host}: {_message(err)}"
            ) from None
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            member = archive.next()
            if member is None or not member.isreg() or member.size > limit:
                return None
            extracted = archive.extractfile(member)
            return extracted.read() if extracted is not None else None

    async def write_file(
        self, container_id: str, path: str, data: bytes, uid: int, gid: int, mode: int = 0o644
    ) -> None:
        """Put one file into a container (running or stopped) through the archive
        endpoint, owned by uid:gid; its directory must exist."""
        directory, _, name = path.rpartition("/")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:") as archive:
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), uid, gid, mode
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(data))
        try:
            await self._docker._query_json(
                f"containers/{container_id}/archive",
                "PUT",
                params={"path": directory or "/", "noOverwriteDirNonDir": "true"},
                data=buffer.getvalue(),
                headers={"Content-Type": "application/x-tar"},
            )
        except aiodocker.DockerError as err:
            raise EngineError(_message(err)) from None

    @asynccontextmanager
    async def follow_logs(self, container_id: str) -> AsyncIterator[AsyncIterator[str]]:
        """The container's new log lines as they are written, until it stops."""
        container = self._docker.containers.container(container_id)
        lines = container.log(stdout=True, stderr=True, follow=True, since=int(time.time()) - 1)
        try:
            yield _lines(lines)
        finally:
            with suppress(Exception):
                await lines.aclose()  # type: ignore[attr-defined]

    @asynccontextmanager
    async def exec_session(
        self, container_id: str, cmd: list[str], user: str, tty: bool
    ) -> AsyncIterator[ExecSession]:
        """An attached exec as `user` (stdin open): read, write, close stdin, exit code."""
        container = self._docker.containers.container(container_id)
        try:
            handle = await container.exec(cmd, user=user, tty=tty, stdin=True)
            stream = handle.start(detach=False, timeout=None)
            async with stream:
                yield ExecSession(handle, stream)
        except aiodocker.DockerError as err:
            if err.status == 404:
                raise NotFound(_message(err)) from None
            raise EngineError(_message(err)) from None


class Engine(_Containers):
    """The supervisor's one port to Docker; use `async with Engine.connect(...)`. Every
    answer comes back parsed once into the frozen values above."""

    # --- images, networks, volumes -----------------------------------------------------

    async def image_exists(self, image: str) -> bool:
        return await self._inspect_object(f"images/{image}/json") is not None

    async def image_command(self, image: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The image's own (Entrypoint, Cmd), or None when the image is missing."""
        found = await self._inspect_object(f"images/{image}/json")
        if found is None:
            return None
        config = found.get("Config") or {}
        return tuple(config.get("Entrypoint") or ()), tuple(config.get("Cmd") or ())

    async def pull(self, image: str) -> None:
        """Pull, or raise EngineError naming the image."""
        name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        try:
            await self._docker.images.pull(name or image, tag=tag or None)
        except aiodocker.DockerError as err:
            raise EngineError(
                f"image {image!r} is not present locally and pulling it failed: {_message(err)}",
                f"pull {image}",
            ) from None

    async def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create the bridge network unless it exists; True when created."""
        if await self.network_labels(name) is not None:
            return False
        await self._call(
            "networks/create",
            "POST",
            body={"Name": name, "Driver": "bridge", "Labels": dict(labels), "CheckDuplicate": True},
            what=f"create network {name}",
        )
        return True

    async def network_labels(self, name: str) -> dict[str, str] | None:
        found = await self._inspect_object(f"networks/{name}")
        return None if found is None else dict(found.get("Labels") or {})

    async def remove_network(self, name: str) -> None:
        with suppress(NotFound):
            await self._call(f"networks/{name}", "DELETE")

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create the named volume unless it exists; True when created."""
        if await self.volume(name) is not None:
            return False
        await self._call(
            "volumes/create",
            "POST",
            body={"Name": name, "Labels": dict(labels)},
            what=f"create volume {name}",
        )
        return True

    async def volume(self, name: str) -> VolumeInfo | None:
        found = await self._inspect_object(f"volumes/{name}")
        return None if found is None else volume_from_json(found)

    async def volume_labels(self, name: str) -> dict[str, str] | None:
        found = await self.volume(name)
        return None if found is None else dict(found.labels)

    async def remove_volume(self, name: str) -> None:
        with suppress(NotFound):
            await self._call(f"volumes/{name}", "DELETE")

    # --- events ------------------------------------------------------------------------

    @asynccontextmanager
    async def events(
        self, filters: Mapping[str, list[str]], since: str | None = None
    ) -> AsyncIterator[AsyncIterator[EngineEvent]]:
        """A live event stream; entering it means the engine is already listening."""
        params: dict[str, Any] = {"filters": json.dumps(dict(filters))}
        if since is not None:
            params["since"] = since
        try:
            async with self._docker._query(
                "events", params=params, timeout=aiohttp.ClientTimeout()
            ) as response:
                yield _events(response)
        except aiodocker.DockerError as err:
            raise DockerUnreachable(
                f"event stream from {self.host} failed: {_message(err)}"
            ) from None

    async def wait_ready(self, container_id: str, timeout: float) -> ContainerInfo:
        """Until the container is healthy (or running, without a health check).

        Event-driven: subscribe first, then inspect, so no transition can slip between.
        Raises EngineError when it exits, turns unhealthy or the timeout passes.
        """
        filters = {"container": [container_id], "event": ["health_status", "die", "start"]}
        with anyio.fail_after(timeout):
            async with self.events(filters) as stream:
                while True:
                    info = await self.inspect(container_id)
                    if info is None:
                        raise EngineError(f"container {container_id[:12]} disappeared")
                    verdict = _readiness(info)
                    if verdict == "ready":
                        return info
                    if verdict != "waiting":
                        raise EngineError(verdict)
                    await anext(stream)


async def _lines(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """Whole lines out of a log stream's chunks; a cut stream just ends."""
    pending = ""
    try:
        async for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split("\n")
            for line in complete:
                yield line
    except (aiodocker.DockerError, aiohttp.ClientError, OSError):
        return
    if pending:
        yield pending


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[EngineEvent]:
    try:
        async for line in response.content:
            if line.strip():
                yield event_from_json(json.loads(line))
    except (aiohttp.ClientError, OSError) as err:
        # A dockerd restart cuts the stream mid-chunk (ClientPayloadError).
        raise DockerUnreachable(f"the event stream broke: {err!r}") from None
    raise DockerUnreachable("the engine closed the event stream")


class ExecSession:
    """One attached exec: its output as (1 stdout | 2 stderr, bytes), stdin, exit code."""

    def __init__(self, handle: Any, stream: Any) -> None:
        self._handle = handle
        self._stream = stream

    async def read(self) -> tuple[int, bytes] | None:
        message = await self._stream.read_out()
        return None if message is None else (int(message.stream), bytes(message.data))

    async def write(self, data: bytes) -> None:
        await self._stream.write_in(data)

    async def close_stdin(self) -> None:
        """EOF on the exec's stdin (a half-close of the hijacked connection), so a command
        that reads stdin to its end finishes; aiodocker has no call for it."""
        await self._stream.write_in(b"")  # attaches if nothing was written yet
        connection = self._stream._resp.connection
        if connection is not None and connection.transport is not None:
            connection.transport.write_eof()

    async def exit_code(self) -> int:
        info = await self._handle.inspect()
        code = info.get("ExitCode")
        return int(code) if code is not None else 1


def _readiness(info: ContainerInfo) -> str:
    """'ready', 'waiting', or why it will never be ready."""
    state = info.state
    if state.status in ("exited", "dead"):
        return f"exited with code {state.exit_code}" + (" (OOM killed)" if state.oom_killed else "")
    health = state.health_status
    if health == "unhealthy":
        return "turned unhealthy"
    if state.running and health in (None, "healthy"):
        return "ready"
    return "waiting"
