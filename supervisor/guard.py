"""Filtered Docker API for the manager: a unix socket in front of the real one.

The shell around `supervisor.guard_rules`. Per connection: read one request head, decide
from it (resolving the container or exec it names), answer 403 at once when denied, and
only then read the body (`100 Continue` only for an allowed request), check it, and
forward our own head and re-encoded body upstream.

One request per connection, and nothing the client sends after its request is parsed by
Docker as HTTP:
- an ordinary request goes upstream with `Connection: close`; later client bytes are
  read and dropped, and a client that half-closes its side still gets the whole answer;
- an exec start (the only hijack) is forwarded alone; the client's further bytes reach
  Docker only after Docker has switched protocols (101, or 200 with a raw-stream type).
  Any other answer (an error, a detached start, a refused version) is relayed and the
  connection closed: that is the smuggling shape the engine would otherwise read on.

Bounded: at most `max_connections` at a time (more get 503, logged once per burst),
small reads while parsing, a head deadline, and `accept()` failures (EMFILE) back off
and retry; nothing a client does ends the listener.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import anyio.abc

from entrypoint.contract import LABEL_STACK
from supervisor import guard_rules as rules
from supervisor.dockertypes import EngineError, ExecInfo
from supervisor.engine import Engine
from supervisor.logs import quiet_cancelled_wakeups
from supervisor.ports import EnginePort
from supervisor.settings import SERVER_STOP_TIMEOUT_S
from supervisor.tallies import GuardTally

log = logging.getLogger("supervisor.guard")

ContainerResolver = Callable[[str], Awaitable[rules.Resolution | None]]
ExecResolver = Callable[[str], Awaitable[ExecInfo | None]]
# Told Docker's status of the answer to the request it was returned for.
AnswerHook = Callable[[int], None]
# Told of every allowed request before it is forwarded (which waits for it); may ask to
# hear Docker's answer.
AllowedHook = Callable[[rules.Allow], Awaitable[AnswerHook | None]]

CHUNK = 256 * 1024  # streamed responses: large reads, fewer wake-ups per MB
PARSE_CHUNK = 16 * 1024  # while parsing a request: small reads bound the memory held
HEAD_TIMEOUT = 10.0  # a real client sends its whole request at once
DEFAULT_MAX_CONNECTIONS = 64
PEER_GONE_POLL_S = 0.5
ACCEPT_BACKOFF_S = (0.01, 1.0)


RESOLVE_CONCURRENCY = 8  # lookups in flight at once: bounds the engine client's pool
EXEC_CACHE_SIZE = 256
WATCH_RETRY_S = (0.5, 15.0)


class ResolutionCache:
    """What never changes after creation, remembered for the object's life: a container's
    full id and labels, an exec's container, user and privilege. Only the stack's server
    and its execs are kept (what the guard allows), and only while the guard hears the
    engine's destroy events (`live`): a destroyed container is forgotten with its execs,
    so no request by its id is ever decided on what it used to be. Names are never
    remembered: they can move to another container."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.live = False
        self.epoch = 0  # bumped by every forget: a lookup that raced one is not kept
        self.containers: dict[str, rules.Resolution] = {}
        self.execs: dict[str, ExecInfo] = {}  # insertion order: the oldest go first

    def container(self, ref: str) -> rules.Resolution | None:
        return self.containers.get(ref) if self.live else None

    def exec(self, exec_id: str) -> ExecInfo | None:
        return self.execs.get(exec_id) if self.live else None

    def keep_container(self, res: rules.Resolution, epoch: int) -> None:
        if self.live and epoch == self.epoch and rules.in_stack(res, self.stack):
            self.containers[res.id] = res

    def keep_exec(self, info: ExecInfo, epoch: int) -> None:
        if self.live and epoch == self.epoch and info.container_id in self.containers:
            self.execs[info.id] = info
            while len(self.execs) > EXEC_CACHE_SIZE:
                del self.execs[next(iter(self.execs))]

    def forget(self, container_id: str) -> None:
        self.epoch += 1
        self.containers.pop(container_id, None)
        for exec_id in [e for e, i in self.execs.items() if i.container_id == container_id]:
            del self.execs[exec_id]

    def reset(self, live: bool) -> None:
        """Forget everything: the destroy events may have been missed meanwhile."""
        self.live = live
        self.epoch += 1
        self.containers.clear()
        self.execs.clear()


class EngineResolver:
    """Resolves refs with Docker's own lookup rules by asking the engine itself, through
    the supervisor's one engine client; full ids of the stack's server and its execs are
    answered from `cache`. One attempt: a request must not wait out the daemon's patience
    with an engine that is away (it gets a 502)."""

    def __init__(self, engine: EnginePort, cache: ResolutionCache | None = None) -> None:
        self.engine = engine
        self.cache = cache or ResolutionCache("")
        self.limiter = anyio.CapacityLimiter(RESOLVE_CONCURRENCY)

    async def container(self, ref: str) -> rules.Resolution | None:
        if (known := self.cache.container(ref)) is not None:
            return known
        # `ref` was validated as [A-Za-z0-9][A-Za-z0-9_.-]*, safe to put in a path.
        epoch = self.cache.epoch
        async with self.limiter:
            info = await self.engine.inspect(ref, attempts=1)
        if info is None:
            return None
        res = rules.Resolution(info.id, info.labels)
        self.cache.keep_container(res, epoch)
        return res

    async def exec(self, exec_id: str) -> ExecInfo | None:
        if (known := self.cache.exec(exec_id)) is not None:
            return known
        epoch = self.cache.epoch
        async with self.limiter:
            info = await self.engine.inspect_exec(exec_id, attempts=1)
        if info is not None:
            self.cache.keep_exec(info, epoch)
        return info

    async def watch_destroys(self, stack: str) -> None:
        """Keep the cache honest: forget what is destroyed; while the event stream is not
        open, remember nothing (and start from nothing once it is open again)."""
        filters = {
            "type": ["container"],
            "event": ["destroy"],
            "label": [f"{LABEL_STACK}={stack}"],
        }
        delay = WATCH_RETRY_S[0]
        while True:
            try:
                async with self.engine.events(filters) as stream:
                    self.cache.reset(live=True)
                    delay = WATCH_RETRY_S[0]
                    async for event in stream:
                        self.cache.forget(event.container_id)
            except EngineError as err:
                log.debug("guard: destroy events lost: %s", err)
            except Exception as err:  # the cache is an optimisation: never the guard's end
                log.warning("guard: destroy events failed: %r", err)
            finally:
                self.cache.reset(live=False)
            await anyio.sleep(delay)
            delay = min(delay * 2, WATCH_RETRY_S[1])


# --- the per-connection handler ------------------------------------------------------------

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def error_response(status: int, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


@dataclass(frozen=True)
class _Request:
    head: rules.Head
    body: bytes
    extra: bytes  # whatever the client sent after the body: never parsed upstream
    deciding_s: float = 0.0  # the guard's own time on it before the body was read


class Guard:
    def __init__(
        self,
        policy: rules.Policy,
        upstream_path: str,
        resolve_container: ContainerResolver,
        resolve_exec: ExecResolver,
        on_allowed: AllowedHook | None = None,
        tally: GuardTally | None = None,
    ) -> None:
        self.policy = policy
        self.upstream_path = upstream_path
        self.resolve_container = resolve_container
        self.resolve_exec = resolve_exec
        # Told of every allowed request before it is forwarded (the daemon learns which
        # stops are the dashboard's own, so it does not undo them).
        self.on_allowed = on_allowed
        # Verdicts and the latency the guard adds, for the daemon's /metrics.
        self.tally = tally or GuardTally()

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        """Serve one connection; never raises (one client must not end the listener).
        Every request gets exactly one answer and one decision line."""
        async with client:
            try:
                await self._handle(client)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                pass  # a peer went away mid-stream: nothing to answer
            except Exception as err:
                log.error("guard connection failed: %r", err)
                log.debug("guard connection failed", exc_info=True)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        outcome: tuple[rules.Decision, _Request | None] | None = None
        deadline = HEAD_TIMEOUT
        with anyio.move_on_after(deadline) as scope:
            outcome = await self._read_and_decide(client)
        if scope.cancelled_caught:
            why = f"no complete request within {deadline:.0f} s"
            outcome = rules.Deny("head-timeout", why, 408), None
        if outcome is None:
            return  # the client left before sending a byte: no request, nothing to answer
        decision, request = outcome
        method, target = (request.head.method, request.head.target) if request else ("-", "-")
        allowed = isinstance(decision, rules.Allow)
        self.tally.decided(allowed)
        log.info(
            "%s %s %r -> %s",
            "allow" if allowed else "deny",
            method,
            target,
            decision.rule,
            extra={"method": method, "path": target, "rule": decision.rule, "allowed": allowed},
        )
        if isinstance(decision, rules.Deny):
            await client.send(error_response(decision.status, decision.message))
            return
        assert request is not None
        forwarding = time.monotonic()
        answered = await self.on_allowed(decision) if self.on_allowed is not None else None
        try:
            upstream = await anyio.connect_unix(self.upstream_path)
        except OSError as exc:
            _report(answered, 502)
            await client.send(error_response(502, f"guard: upstream unavailable: {exc}"))
            return
        async with upstream:
            await upstream.send(rules.upstream_head(request.head, decision) + decision.body)
            self.tally.forwarded(request.deciding_s + time.monotonic() - forwarding)
            if decision.hijack:
                await _relay_hijack(client, upstream, request.extra)
            else:
                await _relay(client, upstream, answered)

    async def _read_and_decide(
        self, client: anyio.abc.SocketStream
    ) -> tuple[rules.Decision, _Request | None] | None:
        """The decision and the request it is about; None if the client sent nothing."""
        read = await _read_head(client)
        if read is None:
            return None
        if isinstance(read, rules.Deny):
            return read, None
        head, rest = read
        began = time.monotonic()
        length = rules.body_length(head)
        if isinstance(length, rules.Deny):
            return length, _Request(head, b"", b"")
        try:
            decision = await rules.decide_head(
                head, self.policy, self.resolve_container, self.resolve_exec
            )
        except (OSError, EngineError) as exc:
            log.warning("guard cannot resolve: %s", exc)
            denied = rules.Deny("upstream", f"guard: upstream unavailable: {exc}", 502)
            return denied, _Request(head, b"", b"")
        if isinstance(decision, rules.Deny):
            # Answered without reading the body, and without 100 Continue.
            return decision, _Request(head, b"", b"")
        deciding_s = time.monotonic() - began
        if length > len(rest) and head.expects_continue:
            # We strip Expect upstream, so we owe the client its interim answer.
            await client.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(rest) < length:
            try:
                rest += await client.receive(PARSE_CHUNK)
            except anyio.EndOfStream:
                short = rules.Deny("bad-request", "request body shorter than its length", 400)
                return short, _Request(head, b"", b"")
        request = _Request(head, bytes(rest[:length]), bytes(rest[length:]), deciding_s)
        return rules.accept_body(decision, request.body, head, self.policy), request


async def _read_head(
    client: anyio.abc.SocketStream,
) -> tuple[rules.Head, bytearray] | rules.Deny | None:
    """-> (head, bytes after it) or a denial; None if the client left before a head."""
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > rules.MAX_HEAD:
            return rules.Deny("head-too-large", "request head over 64 KiB", 431)
        try:
            buf += await client.receive(PARSE_CHUNK)
        except anyio.EndOfStream:
            if not buf:
                return None
            return rules.Deny("bad-request", "the request head ended early", 400)
    if end > rules.MAX_HEAD:
        return rules.Deny("head-too-large", "request head over 64 KiB", 431)
    head = rules.parse_head(bytes(buf[:end]))
    if isinstance(head, rules.Deny):
        return head
    return head, buf[end + 4 :]


async def _read_response_head(upstream: anyio.abc.SocketStream) -> bytes | None:
    """Docker's response head and whatever followed it in the same reads."""
    buf = bytearray()
    while buf.find(b"\r\n\r\n") < 0:
        if len(buf) > rules.MAX_HEAD:
            return None
        try:
            buf += await upstream.receive(PARSE_CHUNK)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None
    return bytes(buf)


async def _relay(
    client: anyio.abc.SocketStream,
    upstream: anyio.abc.SocketStream,
    answered: AnswerHook | None = None,
) -> None:
    """An ordinary request: Docker's answer to the client until Docker closes (we asked
    for `Connection: close`). Client bytes are dropped; a client that only half-closed
    keeps getting the answer, one that is fully gone ends the relay (a quiet follow
    stream must not outlive its reader). `answered` hears Docker's status before the
    client does."""
    async with anyio.create_task_group() as tg:

        async def down() -> None:
            await _pipe(upstream, client, answered)
            tg.cancel_scope.cancel()

        async def watch_client() -> None:
            await _drain(client)
            await _peer_gone(client)
            tg.cancel_scope.cancel()

        tg.start_soon(down)
        tg.start_soon(watch_client)


def _report(answered: AnswerHook | None, status: int) -> None:
    if answered is not None:
        answered(status)


async def _relay_hijack(
    client: anyio.abc.SocketStream, upstream: anyio.abc.SocketStream, extra: bytes
) -> None:
    """Exec start: the client's further bytes go upstream only once Docker switched
    protocols; otherwise relay Docker's ordinary answer and close."""
    with anyio.fail_after(HEAD_TIMEOUT):
        answer = await _read_response_head(upstream)
    if answer is None:
        await client.send(error_response(502, "guard: no valid answer from upstream"))
        return
    await client.send(answer)
    end = answer.find(b"\r\n\r\n")
    if not rules.switched_protocols(answer[:end]):
        # Our EOF makes Docker close once this answer is written; nothing else is read.
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            await upstream.send_eof()
        await _pipe(upstream, client)
        return
    if extra:
        await upstream.send(extra)
    async with anyio.create_task_group() as tg:

        async def down() -> None:
            await _pipe(upstream, client)
            tg.cancel_scope.cancel()

        async def up() -> None:
            await _pipe(client, upstream)
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await upstream.send_eof()

        tg.start_soon(down)
        tg.start_soon(up)


async def _pipe(
    src: anyio.abc.SocketStream,
    dst: anyio.abc.SocketStream,
    answered: AnswerHook | None = None,
) -> None:
    """Copy until EOF; with `answered`, the status of the response head is told first
    (502 if the stream ends or grows past a head's size without one)."""
    head: bytearray | None = bytearray() if answered is not None else None
    while True:
        try:
            data = await src.receive(CHUNK)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            if head is not None:
                _report(answered, 502)
            return
        if head is not None:
            head += data
            end = head.find(b"\r\n\r\n")
            if end >= 0 or len(head) > rules.MAX_HEAD:
                parsed = rules.parse_status(bytes(head[:end])) if end >= 0 else None
                _report(answered, parsed[0] if parsed is not None else 502)
                head = None
        try:
            await dst.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return


async def _drain(src: anyio.abc.SocketStream) -> None:
    while True:
        try:
            await src.receive(PARSE_CHUNK)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return


async def _peer_gone(client: anyio.abc.SocketStream) -> None:
    """Returns once the peer has closed both directions (POLLHUP), not just its writes."""
    raw: socket.socket = client.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610
    poller = select.poll()
    poller.register(raw, select.POLLHUP)
    # No event loop wakes on POLLHUP alone once EOF made the socket readable: poll it.
    while not any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0)):  # noqa: ASYNC110
        await anyio.sleep(PEER_GONE_POLL_S)


# --- the listener --------------------------------------------------------------------------


class ConnectionGate:
    """At most `limit` connections at once; a burst of refusals is logged once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.refused = 0

    def enter(self) -> bool:
        if self.active >= self.limit:
            if self.refused == 0:
                log.warning(
                    "guard busy: %d connections open; refusing new ones with 503",
                    self.active,
                    extra={"limit": self.limit},
                )
            self.refused += 1
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1
        if self.refused and self.active < self.limit:
            log.warning(
                "guard burst over: %d connections were refused",
                self.refused,
                extra={"refused": self.refused},
            )
            self.refused = 0


def _refuse_live_or_foreign(path: Path) -> None:
    """Raise if `path` exists and is not a stale socket we may replace."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return  # nobody listens: stale, rename() will replace it
    finally:
        probe.close()
    raise FileExistsError(f"{path} is a live socket: another guard is serving it")


def _bind(socket_path: Path, gid: int) -> tuple[socket.socket, int]:
    """Bind in a private 0700 directory, set mode and group, then rename into place,
    so the socket is never reachable with the wrong mode or owner, not even briefly."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_live_or_foreign(socket_path)
    private = Path(tempfile.mkdtemp(prefix=".g", dir=socket_path.parent))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        tmp = private / "s"
        sock.bind(str(tmp))
        sock.listen(1024)
        tmp.chmod(0o660)
        os.chown(tmp, -1, gid)
        tmp.rename(socket_path)
        ino = socket_path.stat().st_ino
    except BaseException:
        sock.close()
        raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return sock, ino


def _unlink_if_ours(path: Path, ino: int) -> None:
    # Only remove the socket if it is still ours (a successor may have replaced it).
    with contextlib.suppress(OSError):
        if path.stat().st_ino == ino:
            path.unlink()


def ensure_socket_file(socket_path: Path, gid: int) -> None:
    """Leave a socket where the guard will serve, when nothing is there yet: the manager's
    bind mount needs a source before any guard runs (`up` without a daemon). Nobody listens
    on it, so the manager gets "connection refused" until a guard replaces it (and the daemon
    restarts the manager to pick that one up)."""
    if os.path.lexists(socket_path):
        return
    sock, _ = _bind(socket_path, gid)
    sock.close()


async def _accept_forever(
    listener: anyio.abc.SocketListener, guard: Guard, gate: ConnectionGate
) -> None:
    backoff = ACCEPT_BACKOFF_S[0]
    async with anyio.create_task_group() as tg:
        while True:
            try:
                client = await listener.accept()
            except anyio.BrokenResourceError as err:
                # EMFILE, ENFILE, ENOBUFS: the listener itself is fine; wait for fds.
                if backoff == ACCEPT_BACKOFF_S[0]:
                    log.warning("guard cannot accept: %s; backing off", err.__cause__ or err)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, ACCEPT_BACKOFF_S[1])
                continue
            backoff = ACCEPT_BACKOFF_S[0]
            if not gate.enter():
                guard.tally.refused()
                await _refuse_busy(client)
                continue
            tg.start_soon(_serve_one, guard, gate, client)


async def _serve_one(guard: Guard, gate: ConnectionGate, client: anyio.abc.SocketStream) -> None:
    try:
        await guard.handle(client)
    finally:
        gate.leave()


_BUSY = error_response(503, "guard: too many connections; retry later")


async def _refuse_busy(client: anyio.abc.SocketStream) -> None:
    """One non-blocking write of the 503, then close: never a wait (a flood must not
    queue in the accept loop), and never skipped by a deadline that a loaded loop passed
    before the write (the client then read a reset instead of the 503)."""
    raw: socket.socket = client.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610
    with contextlib.suppress(OSError):
        raw.send(_BUSY)  # ~100 bytes into an empty socket buffer: it fits
    with contextlib.suppress(Exception):
        await client.aclose()


async def serve_guard(
    socket_path: str | os.PathLike[str],
    upstream_path: str | os.PathLike[str],
    policy: rules.Policy,
    gid: int,
    *,
    engine: EnginePort | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    on_allowed: AllowedHook | None = None,
    tally: GuardTally | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the filtered API on `socket_path` until cancelled; removes the socket after.

    Containers and execs are resolved through `engine` (the daemon's own; standalone, one
    is connected to `upstream_path`). Without a version cap in `policy`, the engine's
    newest API version is asked first."""
    # The relay's cancelled socket waits (supervisor/logs.py) are quieted wherever the guard
    # is served (its CLI, the daemon, a test's portal loop: CI's any-bytes property once
    # logged one as an error there).
    quiet_cancelled_wakeups(asyncio.get_running_loop())
    upstream = os.fspath(upstream_path)
    if engine is None:
        async with Engine.connect(f"unix://{upstream}", retries=1) as connected:
            await _serve(socket_path, upstream, policy, gid, connected, max_connections,
                         on_allowed, tally, task_status)  # fmt: skip
    else:
        await _serve(socket_path, upstream, policy, gid, engine, max_connections,
                     on_allowed, tally, task_status)  # fmt: skip


async def _serve(
    socket_path: str | os.PathLike[str],
    upstream: str,
    policy: rules.Policy,
    gid: int,
    engine: EnginePort,
    max_connections: int,
    on_allowed: AllowedHook | None,
    tally: GuardTally | None,
    task_status: anyio.abc.TaskStatus[None],
) -> None:
    path = Path(socket_path)
    if policy.max_api_minor is None:
        policy = replace(policy, max_api_minor=await engine.api_minor())
    resolver = EngineResolver(engine, ResolutionCache(policy.stack))
    guard = Guard(policy, upstream, resolver.container, resolver.exec, on_allowed, tally)
    sock, ino = _bind(path, gid)
    listener = await anyio.abc.SocketListener.from_socket(sock)
    log.info(
        "guard for stack %r listening on %s",
        policy.stack,
        path,
        extra={"max_connections": max_connections, "api": f"1.{policy.max_api_minor}"},
    )
    try:
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(resolver.watch_destroys, policy.stack)
            task_status.started()
            await _accept_forever(listener, guard, ConnectionGate(max_connections))
    finally:
        _unlink_if_ours(path, ino)


async def _run_until_signal(args: argparse.Namespace) -> None:
    # SIGTERM/SIGINT cancel the server so its finally block removes the socket.
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()

        tg.start_soon(stop_on_signal)
        policy = rules.Policy(args.stack, args.min_stop_timeout, exec_gid=args.exec_gid)
        await serve_guard(
            args.socket, args.upstream, policy, args.gid, max_connections=args.max_connections
        )


def main(argv: list[str] | None = None) -> int:
    """The guard alone, in a process of its own (the daemon serves it in its own process):
    what bench/bench_guard.py measures and test_guard_shell runs under a low fd limit."""
    p = argparse.ArgumentParser(prog="python -m supervisor.guard", description=__doc__)
    p.add_argument("--socket", required=True, help="path of the filtered socket to serve")
    p.add_argument("--upstream", default="/var/run/docker.sock", help="the real Docker socket")
    p.add_argument("--stack", required=True, help="stack name (io.hyos.stack label)")
    p.add_argument("--gid", type=int, default=os.getgid(), help="group owning the socket")
    p.add_argument(
        "--min-stop-timeout",
        type=int,
        default=SERVER_STOP_TIMEOUT_S,
        help="server grace period (s)",
    )
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    p.add_argument("--exec-gid", type=int, default=568, help="group of an exec given a bare uid")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    anyio.run(_run_until_signal, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
