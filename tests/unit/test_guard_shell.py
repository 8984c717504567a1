"""The guard's socket handling and its deny path, without a Docker engine."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import anyio
import pytest

from supervisor import guard_rules as r
from supervisor.guard import serve_guard

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _no_container(_ref: str) -> r.Resolution | None:
    return None


async def _no_exec(_id: str) -> r.ExecInfo | None:
    return None


async def _ask(path: Path, raw: bytes) -> bytes:
    async with await anyio.connect_unix(path) as s:
        await s.send(raw)
        buf = b""
        while True:
            try:
                buf += await s.receive()
            except anyio.EndOfStream:
                return buf


async def _serve(tmp_path: Path, sock: Path) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve_guard(
                sock,
                tmp_path / "nowhere.sock",
                "s1",
                os.getgid(),
                resolve_container=_no_container,
                resolve_exec=_no_exec,
                task_status=task_status,
            )
        )
        st = sock.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660
        out = await _ask(sock, b"GET /images/json HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403 ")
        assert b"Content-Type: application/json" in head
        assert json.loads(body)["message"].startswith("denied by rule 'not-in-allowlist'")
        out = await _ask(sock, b"POST /containers/x/stop HTTP/1.1\r\n\r\n")
        assert b"container-not-in-stack" in out
        # Upstream down: allowed requests get a 502, the listener survives.
        out = await _ask(sock, b"GET /_ping HTTP/1.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 502 ")
        out = await _ask(sock, b"GET /_ping HTTP/1.1\r\n" + b"X: y\r\n" * 20000 + b"\r\n")
        assert out.startswith(b"HTTP/1.1 431 ")
        tg.cancel_scope.cancel()
    assert not sock.exists()  # removed on the way out


async def test_serves_denials_and_cleans_up(tmp_path: Path) -> None:
    await _serve(tmp_path, tmp_path / "a" / "b" / "docker.sock")


async def test_replaces_stale_socket(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # file left behind, nobody listening
    await _serve(tmp_path, sock)


async def test_refuses_live_socket_and_regular_file(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(sock))
    live.listen()
    try:
        with pytest.raises(FileExistsError, match="live socket"):
            await serve_guard(sock, tmp_path / "up.sock", "s1", os.getgid())
    finally:
        live.close()
    sock.unlink()
    sock.write_text("not a socket")
    with pytest.raises(FileExistsError, match="not a socket"):
        await serve_guard(sock, tmp_path / "up.sock", "s1", os.getgid())
