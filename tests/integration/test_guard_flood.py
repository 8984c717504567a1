"""A connection flood on the guard socket under a low file-descriptor limit: the daemon
keeps supervising, its memory stays bounded, and the guard answers again afterwards."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from pathlib import Path

import pytest

from tests.guardkit import http, raw_request, status_of
from tests.integration.conftest import DaemonFactory, Stack, docker, wait_for

pytestmark = pytest.mark.integration

FLOOD = 1500
NOFILE = 512


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _open_flood(sock: Path, n: int) -> list[socket.socket]:
    held: list[socket.socket] = []
    deadline = time.monotonic() + 60
    while len(held) < n:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(str(sock))
        except BlockingIOError:  # the backlog is full: the guard is busy accepting
            s.close()
            assert time.monotonic() < deadline, f"only {len(held)} connections in 60 s"
            time.sleep(0.001)
            continue
        s.settimeout(10)
        with contextlib.suppress(OSError):  # refused ones may already be closed
            s.sendall(b"GET /_ping HTTP/1.1\r\n")  # a head that never ends
        held.append(s)
    return held


def test_a_flood_under_ulimit_does_not_end_supervision(stack: Stack, daemon: DaemonFactory) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, FLOOD * 2 + 256)), hard))
    d = daemon(nofile=NOFILE)
    sock = Path(stack.env["HYOS_GUARD_DIR"]) / stack.name / "docker.sock"
    assert status_of(raw_request(sock, http("GET", "/_ping"))) == 200
    held = _open_flood(sock, FLOOD)
    try:
        # Every connection beyond the cap was answered 503 and closed by the guard.
        refused = 0
        for s in held:
            s.settimeout(0.5)
            with contextlib.suppress(TimeoutError):  # the held ones time out here
                refused += s.recv(64).startswith(b"HTTP/1.1 503 ")
        assert refused >= FLOOD - 64 - 1, refused
        d.assert_alive()
        busy = [x for x in d.lines() if str(x.get("message", "")).startswith("guard busy")]
        assert len(busy) == 1, "one line per burst"
    finally:
        for s in held:
            s.close()
    flood_over = time.monotonic()
    wait_for(lambda: status_of(raw_request(sock, http("GET", "/_ping"))) == 200, 20,
             "the guard to answer after the flood")  # fmt: skip
    assert time.monotonic() - flood_over < 20
    # The daemon's peak memory stayed far below compose.yaml's 256m limit.
    assert _rss_kib(d.pid, "VmHWM") < 200 * 1024
    # ...and it still supervises: a crash is restarted.
    docker("kill", stack.container("server"))
    d.wait_log("restart issued", service="server", timeout=30)
    d.wait_healthy(60, roles=("server",))
    d.assert_alive()
