"""Pure: the port to a container engine, as typed protocols.

`engine.Engine` (aiodocker over the Docker Engine API) satisfies `EnginePort`; a fake in
the unit tests (tests/fakeengine.py) does too, and so could an adapter for Podman's
compatible socket. The workers, ops, stack passes, accounting, control commands, the
guard's side and the CLI depend on this protocol, never on the adapter. Every answer is
one of the frozen values of `dockertypes`; every failure is a `dockertypes.EngineError`
(`NotFound` when the object is gone, `DockerUnreachable` when the engine is).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from supervisor.dockertypes import (
    ContainerHardening,
    ContainerInfo,
    EngineEvent,
    ExecInfo,
    Observed,
    VolumeInfo,
)


class ExecSessionPort(Protocol):
    """One attached exec: its output, its stdin, its exit code."""

    async def read(self) -> tuple[int, bytes] | None:
        """The next output chunk as (1 stdout | 2 stderr, bytes); None at its end."""
        ...

    async def write(self, data: bytes) -> None:
        """Bytes to the exec's stdin."""
        ...

    async def close_stdin(self) -> None:
        """EOF on stdin, so a command that reads stdin to its end finishes."""
        ...

    async def exit_code(self) -> int:
        """The exec's exit code once it has ended (1 when the engine reports none)."""
        ...


class EnginePort(Protocol):
    """What the supervisor asks of a container engine. Calls retry transient failures
    themselves; each contract is the one written on `engine.Engine`'s method."""

    # --- the engine -----------------------------------------------------------------

    async def ping(self, attempts: int | None = None) -> None:
        """Succeeds when the engine answers."""
        ...

    async def api_minor(self) -> int:
        """The newest API minor version the engine speaks (1.41 -> 41)."""
        ...

    # --- containers -----------------------------------------------------------------

    async def list_stack(self, stack: str) -> list[Observed]:
        """Every container carrying the stack's ownership labels, running or not."""
        ...

    async def inspect(self, ref: str, attempts: int | None = None) -> ContainerInfo | None:
        """The container's facts, or None when no container has this id or name."""
        ...

    async def inspect_exec(self, exec_id: str, attempts: int | None = None) -> ExecInfo | None:
        """An exec instance's facts, or None when there is none of this id."""
        ...

    async def inspect_hardening(self, ref: str) -> ContainerHardening | None:
        """The container's isolation and limits for `audit`, or None when it is gone."""
        ...

    async def create(self, name: str, body: Mapping[str, Any]) -> str:
        """Create (never start) a container from an Engine API create body; its id."""
        ...

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout: int) -> None:
        """SIGTERM, wait `timeout`, then SIGKILL; returns once the engine says it stopped."""
        ...

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> None: ...

    async def remove(self, container_id: str) -> None:
        """Remove, forced; a container already gone is not an error."""
        ...

    async def logs_tail(
        self, container_id: str, lines: int = 50, until: float | None = None
    ) -> list[str]:
        """The last lines of stdout and stderr (written up to `until`, a wall-clock
        moment, when given); [] when they cannot be had."""
        ...

    async def inspect_document(self, ref: str) -> dict[str, Any] | None:
        """The engine's own inspect document, for a crash report to redact; None when
        the container is gone."""
        ...

    async def memory_peak(self, container_id: str) -> int | None:
        """Peak memory use in bytes, when the engine keeps one."""
        ...

    async def run_once(
        self, name: str, body: Mapping[str, Any], stdin: bytes | None, timeout: float
    ) -> tuple[int, str, str]:
        """Create, start (feeding stdin), wait and remove a one-shot container:
        (exit code, stdout, stderr); the container is removed even on failure."""
        ...

    async def wait_ready(self, container_id: str, timeout: float) -> ContainerInfo:
        """Until healthy (or running, without a health check); EngineError when it exits,
        turns unhealthy or the timeout passes."""
        ...

    # --- files and processes inside a container -------------------------------------

    async def read_file(self, container_id: str, path: str, limit: int = 1 << 20) -> bytes | None:
        """A regular file's bytes; None when it does not exist or is larger than limit."""
        ...

    async def write_file(
        self, container_id: str, path: str, data: bytes, uid: int, gid: int, mode: int = 0o644
    ) -> None:
        """Put one file, owned by uid:gid, into an existing directory of the container."""
        ...

    def follow_logs(self, container_id: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """The container's new log lines as they are written, until it stops."""
        ...

    def exec_session(
        self, container_id: str, cmd: list[str], user: str, tty: bool
    ) -> AbstractAsyncContextManager[ExecSessionPort]:
        """An attached exec as `user`, stdin open."""
        ...

    # --- images, networks, volumes --------------------------------------------------

    async def image_exists(self, image: str) -> bool: ...

    async def image_command(self, image: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The image's own (Entrypoint, Cmd), or None when the image is missing."""
        ...

    async def pull(self, image: str) -> None:
        """Pull, or raise EngineError naming the image."""
        ...

    async def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create the bridge network unless it exists; True when created."""
        ...

    async def network_labels(self, name: str) -> dict[str, str] | None: ...

    async def remove_network(self, name: str) -> None: ...

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        """Create the named volume unless it exists; True when created."""
        ...

    async def volume(self, name: str) -> VolumeInfo | None: ...

    async def volume_labels(self, name: str) -> dict[str, str] | None: ...

    async def remove_volume(self, name: str) -> None: ...

    # --- events ---------------------------------------------------------------------

    def events(
        self, filters: Mapping[str, list[str]], since: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[EngineEvent]]:
        """A live event stream; entering it means the engine is already listening. The
        stream ends in DockerUnreachable when the engine goes away."""
        ...
