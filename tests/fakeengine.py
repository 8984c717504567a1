"""One typed fake container engine for the unit tests: `FakeEngine` is an
`EnginePort` (mypy checks it below), held in memory, with no Docker and no sockets.

What it keeps: containers (created from the same create bodies the real engine gets,
so labels, names and health checks come from the code under test), images, networks,
volumes, files inside containers, and the event stream. What it records: every call
that changes something, as `(verb, id or name)` in `calls`. What a test can steer:
`refuse(verb, error, times)` makes the next calls of a verb fail, `set_health` and
`exit` change a container and emit the events the engine would, `emit` sends any event,
`queue_events` holds events for the next subscriber (as `since=` would replay them), and
`after_listing` runs just after a listing is taken (the world moving on meanwhile).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from supervisor.dockertypes import (
    ContainerHardening,
    ContainerInfo,
    ContainerState,
    EngineError,
    EngineEvent,
    ExecInfo,
    Health,
    NotFound,
    Observed,
    VolumeInfo,
    hardening_from_json,
    owned_by,
    readiness,
)
from supervisor.ports import ExecSessionPort

_EPOCH = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


@dataclass
class FakeContainer:
    id: str
    name: str
    body: Mapping[str, Any] = field(default_factory=dict)
    state: ContainerState = field(default_factory=lambda: ContainerState(status="created"))
    created: datetime = _EPOCH
    logs: list[str] = field(default_factory=list)
    restart_count: int = 0

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.body.get("Labels") or {})

    @property
    def has_healthcheck(self) -> bool:
        test = (self.body.get("Healthcheck") or {}).get("Test") or []
        return bool(test) and test[0] != "NONE"

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            name=self.name,
            state=self.state,
            image=str(self.body.get("Image") or ""),
            labels=self.labels,
            restart_count=self.restart_count,
        )


@dataclass
class FakeExecSession:
    """An exec that answers with scripted output and echoes what it is given."""

    output: list[tuple[int, bytes]]
    code: int = 0
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False

    async def read(self) -> tuple[int, bytes] | None:
        return self.output.pop(0) if self.output else None

    async def write(self, data: bytes) -> None:
        self.stdin += data

    async def close_stdin(self) -> None:
        self.stdin_closed = True

    async def exit_code(self) -> int:
        return self.code


class FakeEngine:
    """An in-memory engine; see the module doc."""

    def __init__(
        self,
        *,
        images: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
        healthy_on_start: bool = True,
        prepare_result: tuple[int, str, str] = (0, "", ""),
    ) -> None:
        # image -> its own (Entrypoint, Cmd); None: every image is present, without one.
        self.images = dict(images) if images is not None else None
        self.healthy_on_start = healthy_on_start
        self.run_once_result = prepare_result
        self.containers: dict[str, FakeContainer] = {}
        self.networks: dict[str, dict[str, str]] = {}
        self.volumes: dict[str, VolumeInfo] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.memory_peaks: dict[str, int] = {}
        self.execs: dict[str, ExecInfo] = {}
        self.exec_output: list[tuple[int, bytes]] = []
        self.exec_code = 0
        self.calls: list[tuple[str, str]] = []
        self._refusals: dict[str, list[EngineError]] = {}
        self._subscribers: list[
            tuple[Mapping[str, list[str]], MemoryObjectSendStream[EngineEvent]]
        ] = []
        self._queued: list[EngineEvent] = []
        self._ids = itertools.count(1)
        self._nanos = itertools.count(1_714_557_600 * 10**9, 10**6)
        self._waiters: list[anyio.Event] = []  # wait_ready's, woken by every change
        # Steering: runs after each listing is taken, before list_stack returns it.
        self.after_listing: Callable[[], None] | None = None

    # --- steering ---------------------------------------------------------------------

    def refuse(self, verb: str, error: EngineError, times: int = 1) -> None:
        """The next `times` calls of `verb` raise `error` (after being recorded)."""
        self._refusals.setdefault(verb, []).extend([error] * times)

    def add_container(
        self,
        name: str,
        *,
        container_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        state: ContainerState | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> FakeContainer:
        """A container that exists before the test starts (created, unless `state`)."""
        cid = container_id or self._new_id()
        merged = dict(body or {})
        if labels is not None:
            merged["Labels"] = dict(labels)
        container = FakeContainer(cid, name, merged, state or ContainerState(status="created"))
        self.containers[cid] = container
        return container

    def queue_events(self, *events: EngineEvent) -> None:
        """Events the next subscriber receives first, before anything live."""
        self._queued.extend(events)

    def emit(self, event: EngineEvent) -> None:
        for filters, send in list(self._subscribers):
            if _matches(filters, event):
                with suppress(
                    anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
                ):
                    send.send_nowait(event)

    def set_health(self, container_id: str, status: str) -> None:
        container = self._get(container_id)
        container.state = replace(container.state, health=Health(status))
        self._event(container, f"health_status: {status}")

    def exit(self, container_id: str, code: int, *, oom: bool = False) -> None:
        """The container's process ends by itself (a crash, a clean exit, the OOM killer)."""
        container = self._get(container_id)
        self._stopped(container, code, oom)

    # --- EnginePort -------------------------------------------------------------------

    async def ping(self, attempts: int | None = None) -> None:
        self._refused("ping")

    async def api_minor(self) -> int:
        return 41

    async def list_stack(self, stack: str) -> list[Observed]:
        self._refused("list_stack")
        listing = [
            Observed(
                id=c.id,
                name=c.name,
                role=c.labels.get("io.hyos.role", ""),
                spec_hash=c.labels.get("io.hyos.spec-hash", ""),
                state=c.state.status,
                health=c.state.health_status,
                created=c.created,
            )
            for c in self.containers.values()
            if owned_by(c.labels, stack)
        ]
        if self.after_listing is not None:
            self.after_listing()  # the world moves on while the caller holds the listing
        return listing

    async def inspect(self, ref: str, attempts: int | None = None) -> ContainerInfo | None:
        self._refused("inspect")
        container = self._find(ref)
        return None if container is None else container.info()

    async def inspect_exec(self, exec_id: str, attempts: int | None = None) -> ExecInfo | None:
        return self.execs.get(exec_id)

    async def inspect_hardening(self, ref: str) -> ContainerHardening | None:
        container = self._find(ref)
        if container is None:
            return None
        return hardening_from_json(
            {
                "Id": container.id,
                "Name": f"/{container.name}",
                "Config": dict(container.body),
                "HostConfig": dict(container.body.get("HostConfig") or {}),
            }
        )

    async def create(self, name: str, body: Mapping[str, Any]) -> str:
        self._record("create", name)
        image = str(body.get("Image") or "")
        if self.images is not None and image not in self.images:
            raise NotFound(f"No such image: {image}", f"create container {name}")
        if self._find(name) is not None:
            raise EngineError(
                f'Conflict. The container name "/{name}" is already in use',
                f"create container {name}",
            )
        container = FakeContainer(self._new_id(), name, dict(body))
        self.containers[container.id] = container
        self._event(container, "create")
        return container.id

    async def start(self, container_id: str) -> None:
        self._record("start", container_id)
        container = self._get(container_id)
        if container.state.running:
            return
        health = Health("starting") if container.has_healthcheck else None
        container.state = ContainerState(
            status="running", running=True, pid=1000, started_at=self._now(), health=health
        )
        self._event(container, "start")
        if health is not None and self.healthy_on_start:
            self.set_health(container.id, "healthy")

    async def stop(self, container_id: str, timeout: int) -> None:
        self._record("stop", container_id)
        container = self._get(container_id)
        if container.state.running:
            self._stopped(container, 143, False)

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None:
        self._record("kill", container_id)
        container = self._get(container_id)
        if container.state.running:
            self._stopped(container, 137, False)

    async def remove(self, container_id: str) -> None:
        self._record("remove", container_id)
        container = self._find(container_id)
        if container is not None:
            del self.containers[container.id]
            self._event(container, "destroy")

    async def logs_tail(
        self, container_id: str, lines: int = 50, until: float | None = None
    ) -> list[str]:
        container = self._find(container_id)
        return [] if container is None else container.logs[-lines:]

    async def inspect_document(self, ref: str) -> dict[str, Any] | None:
        container = self._find(ref)
        if container is None:
            return None
        return {
            "Id": container.id,
            "Name": f"/{container.name}",
            "Config": {
                "Image": container.body.get("Image"),
                "Env": list(container.body.get("Env") or ()),
                "Labels": container.labels,
            },
            "HostConfig": dict(container.body.get("HostConfig") or {}),
            "State": {"Status": container.state.status},
        }

    async def memory_peak(self, container_id: str) -> int | None:
        return self.memory_peaks.get(container_id)

    async def run_once(
        self, name: str, body: Mapping[str, Any], stdin: bytes | None, timeout: float
    ) -> tuple[int, str, str]:
        self._record("run_once", name)
        return self.run_once_result

    async def wait_ready(self, container_id: str, timeout: float) -> ContainerInfo:
        with anyio.fail_after(timeout):
            while True:
                container = self._find(container_id)
                if container is None:
                    raise EngineError(f"container {container_id[:12]} disappeared")
                verdict = readiness(container.info())
                if verdict == "ready":
                    return container.info()
                if verdict != "waiting":
                    raise EngineError(verdict)
                changed = anyio.Event()
                self._waiters.append(changed)
                await changed.wait()

    async def read_file(self, container_id: str, path: str, limit: int = 1 << 20) -> bytes | None:
        self._get(container_id)
        data = self.files.get((container_id, path))
        return None if data is None or len(data) > limit else data

    async def write_file(
        self, container_id: str, path: str, data: bytes, uid: int, gid: int, mode: int = 0o644
    ) -> None:
        self._record("write_file", f"{container_id}:{path}")
        self._get(container_id)
        self.files[(container_id, path)] = data

    @asynccontextmanager
    async def follow_logs(self, container_id: str) -> AsyncIterator[AsyncIterator[str]]:
        container = self._get(container_id)

        async def lines() -> AsyncIterator[str]:
            for line in list(container.logs):
                yield line

        yield lines()

    @asynccontextmanager
    async def exec_session(
        self, container_id: str, cmd: list[str], user: str, tty: bool
    ) -> AsyncIterator[ExecSessionPort]:
        self._record("exec", container_id)
        self._get(container_id)
        yield FakeExecSession(list(self.exec_output), self.exec_code)

    async def image_exists(self, image: str) -> bool:
        return self.images is None or image in self.images

    async def image_command(self, image: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        if self.images is None:
            return None
        return self.images.get(image)

    async def pull(self, image: str) -> None:
        self._record("pull", image)
        raise EngineError(
            f"image {image!r} is not present locally and pulling it failed: "
            "no registry in the fake engine",
            f"pull {image}",
        )

    async def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        if name in self.networks:
            return False
        self._record("ensure_network", name)
        self.networks[name] = dict(labels)
        return True

    async def network_labels(self, name: str) -> dict[str, str] | None:
        found = self.networks.get(name)
        return None if found is None else dict(found)

    async def remove_network(self, name: str) -> None:
        self._record("remove_network", name)
        self.networks.pop(name, None)

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        if name in self.volumes:
            return False
        self._record("ensure_volume", name)
        self.volumes[name] = VolumeInfo(name, f"/var/lib/docker/volumes/{name}/_data", labels)
        return True

    async def volume(self, name: str) -> VolumeInfo | None:
        return self.volumes.get(name)

    async def volume_labels(self, name: str) -> dict[str, str] | None:
        found = self.volumes.get(name)
        return None if found is None else dict(found.labels)

    async def remove_volume(self, name: str) -> None:
        self._record("remove_volume", name)
        self.volumes.pop(name, None)

    @asynccontextmanager
    async def events(
        self, filters: Mapping[str, list[str]], since: str | None = None
    ) -> AsyncIterator[AsyncIterator[EngineEvent]]:
        self._refused("events")
        send, receive = anyio.create_memory_object_stream[EngineEvent](1000)
        for event in self._queued:
            if _matches(filters, event):
                send.send_nowait(event)
        self._queued.clear()
        entry = (filters, send)
        self._subscribers.append(entry)

        async def stream() -> AsyncIterator[EngineEvent]:
            async for event in receive:
                yield event

        try:
            yield stream()
        finally:
            self._subscribers.remove(entry)
            send.close()
            receive.close()

    # --- inside -----------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{next(self._ids):064x}"

    def _now(self) -> datetime:
        return datetime.fromtimestamp(next(self._nanos) / 1e9, UTC)

    def _record(self, verb: str, ref: str) -> None:
        self.calls.append((verb, ref))
        self._refused(verb)

    def _refused(self, verb: str) -> None:
        pending = self._refusals.get(verb)
        if pending:
            raise pending.pop(0)

    def _find(self, ref: str) -> FakeContainer | None:
        if ref in self.containers:
            return self.containers[ref]
        return next((c for c in self.containers.values() if ref in (c.name, c.id[:12])), None)

    def _get(self, ref: str) -> FakeContainer:
        container = self._find(ref)
        if container is None:
            raise NotFound(f"No such container: {ref}")
        return container

    def _stopped(self, container: FakeContainer, code: int, oom: bool) -> None:
        container.state = replace(
            container.state,
            status="exited",
            running=False,
            exit_code=code,
            oom_killed=oom,
            pid=0,
            finished_at=self._now(),
        )
        if oom:
            self._event(container, "oom")
        self._event(container, "die", exit_code=code)

    def _event(self, container: FakeContainer, action: str, exit_code: int | None = None) -> None:
        attributes = {**container.labels, "name": container.name}
        if exit_code is not None:
            attributes["exitCode"] = str(exit_code)
        self.emit(
            EngineEvent(
                action=action,
                container_id=container.id,
                time_nano=next(self._nanos),
                name=container.name,
                labels=attributes,
                exit_code=exit_code,
            )
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.set()


def _matches(filters: Mapping[str, list[str]], event: EngineEvent) -> bool:
    """The engine's filters as the supervisor uses them: container, event, label, type."""
    for key, wanted in filters.items():
        if key == "container" and event.container_id not in wanted and event.name not in wanted:
            return False
        if key == "event" and event.action.split(":")[0] not in wanted:
            return False
        if key == "label":
            for item in wanted:
                name, _, value = item.partition("=")
                if event.labels.get(name) != value:
                    return False
    return True


if TYPE_CHECKING:  # mypy checks here that FakeEngine is an EnginePort
    from supervisor.ports import EnginePort

    _port: type[EnginePort] = FakeEngine
