"""`/metrics` over HTTP, served by `hyos-supervisor run` in its own task group when
`[metrics] listen` is set: a tiny anyio listener (no thread, no web framework) that
answers `GET /metrics` with `prometheus_client`'s exposition of a dedicated registry.

What the page shows is decided by supervisor/metrics.py from `Holdings` gathered here
from what the daemon holds in memory (the services' records, its tallies, the drain);
the one thing read from disk is the backups' records file, and only when its stat says
it changed (a backup run from the CLI writes it). A scrape never awaits: it cannot call
Docker or the REST API. The process's own figures (RSS, CPU, open files) come from
`prometheus_client`'s ProcessCollector, which reads /proc/self.

One request per connection (`Connection: close`), a 5 s deadline for the request head,
at most MAX_CONNECTIONS at once (more are closed unanswered): whoever can reach the port
cannot hold the daemon up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

from supervisor import __version__
from supervisor.backup import records_path
from supervisor.drains import Drains
from supervisor.metrics import BackupFacts, DrainFacts, Holdings, families
from supervisor.statefile import read_json
from supervisor.supervision import Supervision

__all__ = ["MetricsSource", "registry_for", "render", "serve_metrics"]

log = logging.getLogger("supervisor.metrics")

HEAD_TIMEOUT_S = 5.0
MAX_HEAD = 8 * 1024
MAX_CONNECTIONS = 16


class _Records:
    """The backups' records file, read again only when its stat changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._data: dict[str, Any] = {}

    def get(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._data = None, {}
            return self._data
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            self._data = read_json(self.path) or {}
        return self._data


class MetricsSource:
    """A prometheus_client collector of the daemon's holdings."""

    def __init__(self, sup: Supervision, drains: Drains | None = None) -> None:
        self.sup = sup
        self.drains = drains
        self.records = _Records(records_path(sup.settings))
        self.scrapes = 0

    def holdings(self) -> Holdings:
        sup = self.sup
        now = sup.clock()
        every = sup.settings.backup.every
        interval = None if every is None else every.interval(sup.settings.schedule.zone, now)
        return Holdings(
            version=__version__,
            now=now,
            services=sup.services,
            tallies=sup.tallies,
            stopping=sup.stopping,
            reconciles=sup.reconciles,
            drain=self._drain(),
            backups=BackupFacts(self.records.get(), interval),
        )

    def _drain(self) -> DrainFacts:
        drains = self.drains
        pending = None if drains is None else drains.pending
        if drains is None or pending is None:
            return DrainFacts()
        state = (drains.drainer.state if drains.drainer is not None else None) or pending.state
        if state.postponed:
            return DrainFacts("postponed", pending.request.what.value)
        return DrainFacts("draining", pending.request.what.value, state.deadline)

    def collect(self) -> Iterable[Metric]:
        self.scrapes += 1
        return families(self.holdings())


def registry_for(source: MetricsSource, process: bool = True) -> CollectorRegistry:
    """A registry of its own (never the library's global one): the daemon's holdings and,
    with `process`, the process's /proc figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(source)
    if process:
        ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def _answer(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def respond(head: bytes, page: Callable[[], bytes]) -> bytes:
    """The whole answer to one request head."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _answer("400 Bad Request", b"bad request\n")
    method, target, _ = parts
    path = target.split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return _answer("405 Method Not Allowed", b"only GET\n")
    if path == "/metrics":
        answer = _answer("200 OK", page(), CONTENT_TYPE_PLAIN_0_0_4)
    elif path == "/":
        answer = _answer("200 OK", b"hyos-supervisor: see /metrics\n")
    else:
        answer = _answer("404 Not Found", b"not found; see /metrics\n")
    if method == "HEAD":
        return answer.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    return answer


async def _read_head(client: anyio.abc.SocketStream) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        try:
            data += await client.receive(4096)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None
    return data


async def serve_metrics(
    host: str,
    port: int,
    page: Callable[[], bytes],
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `page()` at /metrics on host:port until cancelled; `started` with the bound
    port. A bind that fails raises (the daemon's start-up fails with it, loudly)."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
    log.info("metrics listening", extra={"address": f"{host}:{bound}", "path": "/metrics"})
    active = 0

    async def handle(client: anyio.abc.SocketStream) -> None:
        nonlocal active
        async with client:
            if active >= MAX_CONNECTIONS:
                return  # closed unanswered: a flood must not hold the daemon
            active += 1
            try:
                head = None
                with anyio.move_on_after(HEAD_TIMEOUT_S):
                    head = await _read_head(client)
                if head is not None:
                    await client.send(respond(head, page))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the scraper went away
            finally:
                active -= 1

    async with listener, anyio.create_task_group() as connections:
        task_status.started(bound)
        await listener.serve(handle, task_group=connections)
