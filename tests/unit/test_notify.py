"""sd_notify against a real datagram socket."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from supervisor.notify import Heartbeat, Notifier, watchdog_loop
from tests.fakeclock import FakeClock


@pytest.fixture
def receiver() -> Iterator[tuple[socket.socket, str]]:
    # A short directory: AF_UNIX paths are limited to ~108 bytes, pytest's tmp_path is long.
    with tempfile.TemporaryDirectory(prefix="ntf") as tmp:
        path = str(Path(tmp) / "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(2)
        try:
            yield sock, path
        finally:
            sock.close()


def drain(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return messages


def test_messages_are_single_datagrams(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    assert notifier.status("server: running\nmanager: backoff (4 s)\r\n")
    assert sock.recv(4096) == b"STATUS=server: running manager: backoff (4 s)"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_reads_process_environment(
    receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier()
    assert notifier.watchdog_interval() == 15.0
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.close()


def test_abstract_socket() -> None:
    name = f"hyos-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"
        notifier.close()
    finally:
        sock.close()


def test_noop_without_notify_socket() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval() is None
    assert not notifier.ready()
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()


def test_relative_notify_socket_ignored() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_send_error_is_not_raised() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/dir/notify.sock"})
    assert notifier.enabled
    assert not notifier.ready()
    notifier.close()


def test_watchdog_interval(receiver: tuple[socket.socket, str]) -> None:
    _, path = receiver
    pid = str(os.getpid())
    assert Notifier({"NOTIFY_SOCKET": path}).watchdog_interval() is None
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "junk"}).watchdog_interval() is None
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "0"}).watchdog_interval() is None
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    assert Notifier(env).watchdog_interval() == 1.0
    assert Notifier({**env, "WATCHDOG_PID": pid}).watchdog_interval() == 1.0
    other = Notifier({**env, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval() is None
    assert not other.watchdog()


def test_heartbeat_with_fake_clock() -> None:
    clock = FakeClock(100.0)
    beat = Heartbeat(clock)
    assert beat.age() == 0
    clock.advance(3.5)
    assert beat.age() == 3.5
    beat.beat()
    assert beat.last_beat == 103.5
    assert beat.age() == 0


async def recv_until(sock: socket.socket, wanted: bytes, deadline_s: float) -> bool:
    sock.setblocking(False)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == wanted:
                return True
        except BlockingIOError:
            await anyio.sleep(0.005)
    return False


@pytest.mark.anyio
async def test_watchdog_loop_pings_only_while_heartbeat_fresh(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    # 40 ms WATCHDOG_USEC -> a ping every 20 ms.
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"})
    fake_now = [0.0]
    heartbeat = Heartbeat(lambda: fake_now[0])
    async with anyio.create_task_group() as tg:
        tg.start_soon(watchdog_loop, notifier, heartbeat)
        # Fresh heartbeat: pings keep arriving.
        assert await recv_until(sock, b"WATCHDOG=1", 2)
        assert await recv_until(sock, b"WATCHDOG=1", 2)
        # Stale heartbeat (the daemon stopped making progress): pings stop.
        fake_now[0] = 10.0
        await anyio.sleep(0.06)  # let an in-flight ping land
        drain(sock)
        assert not await recv_until(sock, b"WATCHDOG=1", 0.15)
        # Progress again: pings resume.
        heartbeat.beat()
        assert await recv_until(sock, b"WATCHDOG=1", 2)
        tg.cancel_scope.cancel()
    notifier.close()


@pytest.mark.anyio
async def test_watchdog_loop_returns_when_disabled() -> None:
    with anyio.fail_after(1):
        await watchdog_loop(Notifier({}), Heartbeat())
