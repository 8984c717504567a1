"""The daemon's local control socket: one JSON request line, one JSON reply line.

It lives in the state directory (0700) with mode 0600, so only the daemon's own user
can ask for status, health or a restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketStream, TaskStatus

log = logging.getLogger("supervisor.control")

SOCKET_NAME = "control.sock"
_MAX_REQUEST = 64 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class DaemonNotRunning(Exception):
    pass


async def serve(
    path: Path, handler: Handler, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Answer requests until cancelled."""
    listener = await anyio.abc.SocketListener.from_socket(_bind_private(path))

    async def answer(stream: SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(10):
                    raw = await _read_line(stream)
                    request = json.loads(raw)
                    if not isinstance(request, dict):
                        raise ValueError("request must be a JSON object")
                    reply = await handler(request)
            except (ValueError, TimeoutError) as err:
                reply = {"ok": False, "error": str(err)}
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(json.dumps(reply).encode() + b"\n")

    async with listener:
        task_status.started()
        await listener.serve(answer)


def _bind_private(path: Path) -> socket.socket:
    """Bind synchronously: the umask that makes the socket 0600 must not leak into other
    tasks, which an await between setting and restoring it would allow."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket from a killed daemon
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600, never wider
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    sock.listen(16)
    sock.setblocking(False)
    return sock


async def _read_line(stream: SocketStream) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive(4096)
        data += chunk
        if len(data) > _MAX_REQUEST:
            raise ValueError("request too large")
    return data.split(b"\n", 1)[0]


def request(path: Path, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Blocking client for the CLI; raises DaemonNotRunning when nobody answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as err:
            raise DaemonNotRunning(f"no daemon answers on {path}") from err
        client.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data or b"{}")
    return reply


def live_view(path: Path, timeout: float = 5.0) -> dict[str, Any] | None:
    """The daemon's status reply, or None when no daemon answers (or it answers badly)."""
    try:
        reply = request(path, {"command": "status"}, timeout=timeout)
    except (DaemonNotRunning, OSError, ValueError):
        return None
    return reply if reply.get("ok") else None
