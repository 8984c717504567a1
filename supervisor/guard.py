"""Filtered Docker API for the manager: a unix socket in front of the real one.

The shell around `supervisor.guard_rules`: read one request head (and body), decide,
then either answer 403 or forward the (rewritten) request upstream with
`Connection: close` and splice bytes both ways without buffering, which carries logs
with follow, events and exec hijacking (101 UPGRADED) unchanged. One request per
connection: after the vetted request nothing the client sends is parsed by Docker,
except the raw stdin of a hijacked exec.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from supervisor import guard_rules as rules

log = logging.getLogger("supervisor.guard")

ContainerResolver = Callable[[str], Awaitable[rules.Resolution | None]]
ExecResolver = Callable[[str], Awaitable[rules.ExecInfo | None]]

CHUNK = 256 * 1024  # large reads: fewer wake-ups per MB on a busy 2-core host
HEAD_TIMEOUT = 30.0
MAX_RESPONSE = 16 * 1024 * 1024


class UpstreamError(Exception):
    """The real Docker socket did not answer a resolution request sensibly."""


# --- a tiny HTTP/1.1 client for resolution -------------------------------------------------


def parse_response(raw: bytes) -> tuple[int, bytes]:
    """Status and de-chunked body of a complete `Connection: close` response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise UpstreamError("truncated response head")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise UpstreamError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return int(parts[1]), body


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise UpstreamError("truncated chunked body")
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        start = eol + 2
        if start + size > len(data):
            raise UpstreamError("truncated chunk")
        out += data[start : start + size]
        pos = start + size + 2


async def upstream_get_json(upstream_path: str, path: str) -> tuple[int, Any]:
    """GET `path` on the Docker socket; (status, parsed JSON or None)."""
    async with await anyio.connect_unix(upstream_path) as s:
        await s.send(f"GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
        buf = bytearray()
        while True:
            try:
                chunk = await s.receive(CHUNK)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
            buf += chunk
            if len(buf) > MAX_RESPONSE:
                raise UpstreamError("response too large")
    status, body = parse_response(bytes(buf))
    try:
        return status, json.loads(body) if body else None
    except ValueError as exc:
        raise UpstreamError("response is not JSON") from exc


class UpstreamResolver:
    """Resolves refs with Docker's own lookup rules by asking the engine itself."""

    def __init__(self, upstream_path: str) -> None:
        self.upstream_path = upstream_path

    async def container(self, ref: str) -> rules.Resolution | None:
        # `ref` was validated as [A-Za-z0-9][A-Za-z0-9_.-]*, safe to put in a path.
        status, obj = await upstream_get_json(self.upstream_path, f"/containers/{ref}/json")
        if status == 404:
            return None
        if status != 200:
            raise UpstreamError(f"container inspect answered {status}")
        return rules.resolution_from_inspect(obj)

    async def exec(self, exec_id: str) -> rules.ExecInfo | None:
        status, obj = await upstream_get_json(self.upstream_path, f"/exec/{exec_id}/json")
        if status == 404:
            return None
        if status != 200:
            raise UpstreamError(f"exec inspect answered {status}")
        return rules.exec_info_from_inspect(obj)


# --- the per-connection handler ------------------------------------------------------------


def _error_response(status: int, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    reason = {
        400: "Bad Request",
        403: "Forbidden",
        413: "Payload Too Large",
        431: "Request Header Fields Too Large",
        502: "Bad Gateway",
    }.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class Guard:
    def __init__(
        self,
        stack: str,
        upstream_path: str,
        resolve_container: ContainerResolver | None = None,
        resolve_exec: ExecResolver | None = None,
        on_allowed: Callable[[rules.Allow], None] | None = None,
    ) -> None:
        default = UpstreamResolver(upstream_path)
        self.stack = stack
        self.upstream_path = upstream_path
        self.resolve_container = resolve_container or default.container
        self.resolve_exec = resolve_exec or default.exec
        # Told of every allowed request before it is forwarded (the daemon learns which
        # stops are the dashboard's own, so it does not undo them).
        self.on_allowed = on_allowed

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            try:
                await self._handle(client)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                pass  # a peer went away mid-stream: nothing to answer
            except Exception:
                # Never let one connection take the listener's task group down.
                log.exception("guard connection failed")

    async def _read_request(
        self, client: anyio.abc.SocketStream
    ) -> tuple[rules.Head, bytes, bytes] | rules.Deny | None:
        """-> (head, body, bytes after the body) or a denial; None if the client left."""
        buf = bytearray()
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > rules.MAX_HEAD:
                return rules.Deny("head-too-large", "request head over 64 KiB", 431)
            try:
                buf += await client.receive(CHUNK)
            except anyio.EndOfStream:
                return None
        if end > rules.MAX_HEAD:
            return rules.Deny("head-too-large", "request head over 64 KiB", 431)
        head = rules.parse_head(bytes(buf[:end]))
        if isinstance(head, rules.Deny):
            return head
        n = rules.body_length(head)
        if isinstance(n, rules.Deny):
            return n
        rest = buf[end + 4 :]
        if n > len(rest) and any(v.lower() == "100-continue" for v in head.get_all("expect")):
            # We strip Expect upstream, so we owe the client its interim answer.
            await client.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(rest) < n:
            try:
                rest += await client.receive(CHUNK)
            except anyio.EndOfStream:
                return None
        return head, bytes(rest[:n]), bytes(rest[n:])

    async def decide(self, head: rules.Head, body: bytes) -> rules.Decision:
        first = rules.classify(head.method, head.target, body, self.stack)
        if isinstance(first, rules.NeedContainer):
            return rules.finish_container(
                first, await self.resolve_container(first.ref), self.stack
            )
        if isinstance(first, rules.NeedExec):
            info = await self.resolve_exec(first.exec_id)
            res = await self.resolve_container(info.container_id) if info else None
            return rules.finish_exec(first, info, res, self.stack)
        return first

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        with anyio.fail_after(HEAD_TIMEOUT):
            req = await self._read_request(client)
            if req is None:
                return
            if isinstance(req, rules.Deny):
                decision: rules.Decision = req
                method, target = "-", "-"
            else:
                head, body, extra = req
                method, target = head.method, head.target
                try:
                    decision = await self.decide(head, body)
                except (OSError, UpstreamError) as exc:
                    log.warning("guard cannot resolve: %s", exc)
                    await client.send(_error_response(502, f"guard: upstream unavailable: {exc}"))
                    return
        allowed = isinstance(decision, rules.Allow)
        log.info(
            "%s %s %r -> %s",
            "allow" if allowed else "deny",
            method,
            target,
            decision.rule,
            extra={"method": method, "path": target, "rule": decision.rule, "allowed": allowed},
        )
        if isinstance(decision, rules.Deny):
            await client.send(_error_response(decision.status, decision.message))
            return
        if self.on_allowed is not None:
            self.on_allowed(decision)
        await self._forward(client, head, body, extra, decision)

    async def _forward(
        self,
        client: anyio.abc.SocketStream,
        head: rules.Head,
        body: bytes,
        extra: bytes,
        decision: rules.Allow,
    ) -> None:
        try:
            upstream = await anyio.connect_unix(self.upstream_path)
        except OSError as exc:
            await client.send(_error_response(502, f"guard: upstream unavailable: {exc}"))
            return
        async with upstream:
            out = rules.upstream_head(head, decision.target, len(body), hijack=decision.hijack)
            await upstream.send(out + body + (extra if decision.hijack else b""))
            async with anyio.create_task_group() as tg:

                async def down() -> None:
                    await _pipe(upstream, client)
                    tg.cancel_scope.cancel()

                async def up() -> None:
                    if decision.hijack:
                        await _pipe(client, upstream)
                        with contextlib.suppress(anyio.BrokenResourceError, OSError):
                            await upstream.send_eof()
                    else:
                        # Not a stream we forward: only watch for the client leaving,
                        # so a follow/events stream upstream does not linger.
                        await _drain(client)
                        tg.cancel_scope.cancel()

                tg.start_soon(down)
                tg.start_soon(up)


async def _pipe(src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream) -> None:
    while True:
        try:
            data = await src.receive(CHUNK)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return
        try:
            await dst.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return


async def _drain(src: anyio.abc.SocketStream) -> None:
    while True:
        try:
            await src.receive(CHUNK)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return


# --- the listener --------------------------------------------------------------------------


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


async def serve_guard(
    socket_path: str | os.PathLike[str],
    upstream_path: str | os.PathLike[str],
    stack: str,
    gid: int,
    *,
    resolve_container: ContainerResolver | None = None,
    resolve_exec: ExecResolver | None = None,
    on_allowed: Callable[[rules.Allow], None] | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the filtered API on `socket_path` until cancelled; removes the socket after."""
    path = Path(socket_path)
    guard = Guard(stack, os.fspath(upstream_path), resolve_container, resolve_exec, on_allowed)
    sock, ino = _bind(path, gid)
    listener = await anyio.abc.SocketListener.from_socket(sock)
    log.info("guard for stack %r listening on %s", stack, path)
    try:
        async with listener:
            task_status.started()
            await listener.serve(guard.handle)
    finally:
        _unlink_if_ours(path, ino)


async def _run_until_signal(socket_path: str, upstream: str, stack: str, gid: int) -> None:
    # SIGTERM/SIGINT cancel the server so its finally block removes the socket.
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()

        tg.start_soon(stop_on_signal)
        await serve_guard(socket_path, upstream, stack, gid)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supervisor.guard", description=__doc__)
    p.add_argument("--socket", required=True, help="path of the filtered socket to serve")
    p.add_argument("--upstream", default="/var/run/docker.sock", help="the real Docker socket")
    p.add_argument("--stack", required=True, help="stack name (io.hyos.stack label)")
    p.add_argument("--gid", type=int, default=os.getgid(), help="group owning the socket")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    anyio.run(_run_until_signal, args.socket, args.upstream, args.stack, args.gid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
