"""The only module that talks to Docker: thin async calls over the Engine API.

Everything here is I/O with no decisions beyond retrying transient failures; what to
do is decided by the pure modules (stack, policy, plan, restarts). Docker's answers are
parsed once by `dockertypes` into frozen values, so the rest of the supervisor never
sees Docker's shapes; `Engine` satisfies `ports.EnginePort`, which is what the rest of
the supervisor depends on.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Self

import aiodocker
import aiohttp
import anyio
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from supervisor.dockertypes import (
    ContainerHardening,
    ContainerInfo,
    DockerUnreachable,
    EngineError,
    EngineEvent,
    ExecInfo,
    NotFound,
    Observed,
    VolumeInfo,
    container_from_json,
    event_from_json,
    exec_from_json,
    hardening_from_json,
    memory_peak_from_stats,
    observed_from_json,
    ownership_filter,
    readiness,
    volume_from_json,
)

log = logging.getLogger("supervisor.engine")

# A refused or broken connection, as aiodocker reports it and as `_request` does.
_UNREACHABLE = 900


class _Answered(Exception):
    """The engine answered a `_request` with an error status (or could not be reached:
    status 900), in the shape of aiodocker's DockerError: `status` and `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"[{self.status}] {self.message}"


# A failure the engine reported: from our own requests or from aiodocker's calls.
_REFUSALS = (aiodocker.DockerError, _Answered)


def _refused(err: aiodocker.DockerError, what: str = "", gone: str = "") -> EngineError:
    """An engine refusal met outside `_call` (aiodocker's own streams): NotFound for a
    404 (`gone` says what that meant there), else an EngineError."""
    if err.status == 404:
        return NotFound(f"{_message(err)} ({gone})" if gone else _message(err), what)
    return EngineError(_message(err), what)


def _transient(err: BaseException) -> bool:
    if isinstance(err, _REFUSALS):
        return err.status == _UNREACHABLE or (err.status >= 500 and "No such" not in str(err))
    return isinstance(err, aiohttp.ClientConnectionError | OSError | TimeoutError)


def _message(err: BaseException) -> str:
    if isinstance(err, _REFUSALS):
        return str(err.message)
    return str(err) or type(err).__name__


async def _result(response: aiohttp.ClientResponse) -> Any:
    """A successful answer's body: JSON when the engine says so, else its text ("" for
    the empty answers of start, stop, kill and remove)."""
    if response.content_type == "application/json":
        return await response.json()
    return await response.text()


# What a one-file tar archive adds to the file: headers, padding, the end blocks.
_TAR_SLACK = 64 * 1024


async def _read_up_to(stream: aiohttp.StreamReader, cap: int) -> bytes:
    """The body until its end, or one byte past `cap` (then the caller knows it is too
    large). `read(n)` alone returns whatever has arrived: CI once parsed half an archive
    ("unexpected end of data") on a loaded machine."""
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await stream.read(cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _Connection:
    """One connection to the engine: JSON calls retried while it is unreachable, each
    failure one clear EngineError. The public face is `Engine`.

    Requests go through aiodocker's public session (`Docker.session`, `docker_host`,
    `api_version`), never its private `_query*`; aiodocker's own calls are used for
    logs, exec, attach and pull. The one private attribute left is an exec stream's
    connection in `ExecSession.close_stdin` (pinned in pyproject.toml)."""

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

    async def _send(
        self,
        url: str,
        method: str,
        *,
        params: Mapping[str, str] | None,
        data: Any,
        headers: Mapping[str, str] | None,
        timeout: aiohttp.ClientTimeout | None,
    ) -> aiohttp.ClientResponse:
        """One HTTP request; an error status or a refused connection raises _Answered."""
        try:
            response = await self._docker.session.request(
                method,
                url,
                params=dict(params) if params else None,
                data=data,
                headers={"Content-Type": "application/json", **(headers or {})},
                timeout=timeout or aiohttp.ClientTimeout(),
            )
        except aiohttp.ClientConnectionError as err:
            raise _Answered(
                _UNREACHABLE, f"Cannot connect to Docker Engine via {self.host} [{err}]"
            ) from None
        if response.status >= 400:
            raw = await response.read()
            response.release()
            text = raw.decode("utf8", "replace")
            if response.headers.get("content-type", "") == "application/json":
                with suppress(ValueError, TypeError, KeyError):
                    text = str(json.loads(text)["message"])
            raise _Answered(response.status, text)
        return response

    async def _api_prefix(self) -> str:
        """The versioned prefix ("v1.41"): the engine's own version unless one is set."""
        if self._docker.api_version == "auto":
            response = await self._send(
                f"{self._docker.docker_host}/version",
                "GET",
                params=None,
                data=None,
                headers=None,
                timeout=None,
            )
            async with response:
                version = (await _result(response)).get("ApiVersion")
            self._docker.api_version = f"v{version}"
        return str(self._docker.api_version)

    @asynccontextmanager
    async def _request(
        self,
        path: str,
        method: str = "GET",
        *,
        params: Mapping[str, str] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request on the versioned API; the response is released on leaving."""
        url = f"{self._docker.docker_host}/{await self._api_prefix()}/{path}"
        response = await self._send(
            url, method, params=params, data=data, headers=headers, timeout=timeout
        )
        async with response:
            yield response

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
                    async with self._request(
                        path, method, params=params, data=data, timeout=client_timeout
                    ) as response:
                        return await _result(response)
        except _REFUSALS as err:
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
        filters = {"label": ownership_filter(stack)}
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

    async def logs_tail(
        self, container_id: str, lines: int = 50, until: float | None = None
    ) -> list[str]:
        """The last lines of stdout and stderr, demultiplexed; only those written up to
        `until` (a wall-clock moment) when given."""
        container = self._docker.containers.container(container_id)
        more: dict[str, Any] = {} if until is None else {"until": f"{until:.6f}"}
        try:
            chunks = await container.log(stdout=True, stderr=True, tail=lines, **more)
        except aiodocker.DockerError:
            return []
        return "".join(chunks).splitlines()[-lines:]

    async def inspect_document(self, ref: str) -> dict[str, Any] | None:
        """The inspect result as the engine wrote it, for a crash report (which redacts
        it: supervisor/crashreport.py); None when the container is gone."""
        found = await self._inspect_object(f"containers/{ref}/json", attempts=1)
        return found if isinstance(found, dict) else None

    async def memory_peak(self, container_id: str) -> int | None:
        """The container's peak memory use in bytes (cgroup v1's max_usage); None when
        the engine has none (a stopped container, cgroup v2)."""
        try:
            stats = await self._call(
                f"containers/{container_id}/stats",
                params={"stream": "false", "one-shot": "true"},
                timeout=5,
                attempts=1,
            )
        except EngineError:
            return None
        return memory_peak_from_stats(stats)

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
        except aiodocker.DockerError as err:
            # The attach or the log reads (the rest goes through _call): an answer the
            # caller handles, never an error that ends the daemon (CI: the container was
            # removed between its exit and the log read, and the 404 ended supervision).
            raise _refused(
                err, f"run container {name}", "removed before its output was read"
            ) from None
        finally:
            with anyio.CancelScope(shield=True):
                await self.remove(container_id)

    # --- files and processes inside a container ----------------------------------------

    async def read_file(self, container_id: str, path: str, limit: int = 1 << 20) -> bytes | None:
        """A regular file's bytes through the archive endpoint (running or stopped
        container, its volumes included); None when it does not exist or is too large."""
        try:
            async with self._request(
                f"containers/{container_id}/archive", params={"path": path}
            ) as response:
                raw = await _read_up_to(response.content, limit + _TAR_SLACK)
        except _REFUSALS as err:
            if err.status == 404:
                return None
            raise EngineError(_message(err)) from None
        except (aiohttp.ClientError, OSError) as err:
            raise DockerUnreachable(
                f"cannot reach Docker at {self.host}: {_message(err)}"
            ) from None
        if len(raw) > limit + _TAR_SLACK:
            return None  # the archive holds more than `limit` bytes of file
        try:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
                member = archive.next()
                if member is None or not member.isreg() or member.size > limit:
                    return None
                extracted = archive.extractfile(member)
                return extracted.read() if extracted is not None else None
        except tarfile.TarError as err:
            raise EngineError(f"reading {path} from container {container_id[:12]}: {err}") from None

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
            async with self._request(
                f"containers/{container_id}/archive",
                "PUT",
                params={"path": directory or "/", "noOverwriteDirNonDir": "true"},
                data=buffer.getvalue(),
                headers={"Content-Type": "application/x-tar"},
            ) as response:
                await _result(response)
        except _REFUSALS as err:
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
            raise _refused(err) from None


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
            async with self._request("events", params=params) as response:
                yield _events(response)
        except _REFUSALS as err:
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
                    verdict = readiness(info)
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


if TYPE_CHECKING:  # mypy checks here that Engine is an EnginePort
    from supervisor.ports import EnginePort

    _port: type[EnginePort] = Engine
