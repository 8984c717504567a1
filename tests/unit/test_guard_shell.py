"""The guard's socket handling, raw bytes against a fake engine that behaves like dockerd
(keep-alive after ordinary answers, hijack after 101): smuggling, framing, half-close,
100 Continue, deep nesting, floods and accept() failures. No Docker engine needed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from supervisor import guard_rules as r
from supervisor.guard import DEFAULT_MAX_CONNECTIONS, serve_guard
from tests.guardkit import (
    EXEC_OK,
    STACK,
    FakeDockerd,
    fake_dockerd,
    http,
    raw_request,
    read_all,
    status_of,
)

POLICY = r.Policy(STACK, min_stop_timeout=30)
SMUGGLED = http("POST", "/volumes/create", b'{"Name":"smuggled"}', {"Content-Type": "application/json"})  # fmt: skip
UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp", "Content-Type": "application/json"}
TEXT_PLAIN = {**UPGRADE, "Content-Type": "text/plain"}


@contextmanager
def guard_in_portal(
    tmp_path: Path, engine: FakeDockerd, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> Iterator[tuple[Path, BlockingPortal]]:
    """The guard served in a portal's loop (as a test's thread runs it): its socket, and
    the portal to look into that loop."""
    sock = tmp_path / "guard" / "docker.sock"
    with start_blocking_portal() as portal:
        future, _ = portal.start_task(
            partial(
                serve_guard, sock, engine.path, POLICY, os.getgid(), max_connections=max_connections
            )
        )
        try:
            yield sock, portal
        finally:
            future.cancel()
    assert not sock.exists()  # removed on the way out


@contextmanager
def running_guard(
    tmp_path: Path, engine: FakeDockerd, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> Iterator[Path]:
    with guard_in_portal(tmp_path, engine, max_connections) as (sock, _):
        yield sock


async def _loop_exception_handler() -> object:
    return asyncio.get_running_loop().get_exception_handler()


def test_the_guard_quiets_its_cancelled_socket_waits_wherever_it_is_served(
    tmp_path: Path, engine: FakeDockerd
) -> None:
    """CI: a portal's loop (no daemon, no guard CLI) logged the relay's benign race
    (supervisor/logs.py) as an error in the any-bytes property below."""
    with guard_in_portal(tmp_path, engine) as (_, portal):
        handler = portal.call(_loop_exception_handler)
    assert handler is not None
    assert "quiet_cancelled_wakeups" in getattr(handler, "__qualname__", "")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeDockerd]:
    with fake_dockerd(tmp_path) as e:
        yield e


@pytest.fixture
def guard(tmp_path: Path, engine: FakeDockerd) -> Iterator[Path]:
    with running_guard(tmp_path, engine) as sock:
        yield sock


def test_socket_mode_and_denial_shape(guard: Path) -> None:
    assert stat.S_IMODE(guard.stat().st_mode) == 0o660
    out = raw_request(guard, http("GET", "/images/json"))
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["message"].startswith("denied by rule 'not-in-allowlist'")


def test_version_cap_comes_from_the_engine(guard: Path, engine: FakeDockerd) -> None:
    # The fake engine says 1.41: a newer prefix is refused before anything is forwarded.
    out = raw_request(guard, http("GET", "/v1.42/_ping"))
    assert status_of(out) == 403 and b"api-version" in out
    assert status_of(raw_request(guard, http("GET", "/v1.41/_ping"))) == 200


# --- smuggling: nothing after an exec start reaches the engine unless it switched ---------


@pytest.mark.parametrize(
    ("shape", "body", "headers", "prefix", "engine_answer"),
    [
        ("detached start", b'{"Detach":true}', {}, "", "detach"),
        ("engine refuses the body", b'{"Detach":false}', UPGRADE, "", "error"),
        ("text/plain start", b'{"Detach":false}', TEXT_PLAIN, "", "error"),
        ("engine refuses the version", b"{}", UPGRADE, "/v1.30", "error"),
        ("malformed body", b"{", UPGRADE, "", "error"),
        ("detach with upgrade", b'{"Detach":true}', UPGRADE, "", "detach"),
    ],
)
def test_pipelined_request_after_exec_start_never_reaches_the_engine(
    tmp_path: Path, shape: str, body: bytes, headers: dict[str, str], prefix: str,
    engine_answer: str,
) -> None:  # fmt: skip
    with fake_dockerd(tmp_path, exec_start=engine_answer) as engine:
        with running_guard(tmp_path, engine) as sock:
            start = http("POST", f"{prefix}/exec/{EXEC_OK}/start", body, headers)
            out = raw_request(sock, start + SMUGGLED + http("GET", "/volumes"))
        assert status_of(out) in (200, 400, 403), (shape, out)
        assert not any("/volumes" in t for t in engine.targets()), (shape, engine.targets())
        # Whatever was forwarded was our canonical body, never the client's bytes.
        for seen in engine.seen:
            if seen.target.endswith("/start"):
                assert json.loads(seen.body).keys() <= {"Detach", "Tty", "ConsoleSize"}
                assert seen.headers["content-type"] == "application/json"


def test_after_101_the_stream_is_the_execs_stdin(guard: Path, engine: FakeDockerd) -> None:
    start = http("POST", f"/exec/{EXEC_OK}/start", b'{"hijack":true,"stdin":true}', UPGRADE)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(guard))
        s.sendall(start + b"early bytes;")
        s.sendall(b"later bytes")
        s.shutdown(socket.SHUT_WR)
        out = read_all(s)
    assert out.startswith(b"HTTP/1.1 101 ")
    assert out.endswith(b"early bytes;later bytes")
    assert engine.stdin == b"early bytes;later bytes"
    # dockerode's echoed options never reach the engine.
    assert json.loads(engine.seen[-1].body) == {"Detach": False, "Tty": False}


# --- framing ---------------------------------------------------------------------------------


def test_half_closed_client_gets_the_whole_answer(tmp_path: Path) -> None:
    with (
        fake_dockerd(tmp_path, delay_ping_s=0.3) as engine,
        running_guard(tmp_path, engine) as sock,
    ):
        out = raw_request(sock, http("GET", "/_ping"), half_close=True)
    assert status_of(out) == 200
    assert out.endswith(b"OK")


def test_pipelined_second_request_is_dropped_not_forwarded(
    guard: Path, engine: FakeDockerd
) -> None:
    out = raw_request(guard, http("GET", "/_ping") + http("GET", "/volumes"))
    assert out.count(b"HTTP/1.1 ") == 1
    # The guard's own lookups aside (version, destroy events), only the ping reached the engine.
    own = ("/version", "/events")
    assert [t for t in engine.targets() if not t.split("?")[0].endswith(own)] == ["GET /_ping"]


def test_deep_nesting_gets_400_not_a_dropped_connection(guard: Path) -> None:
    deep = b"[" * 60000
    out = raw_request(guard, http("POST", "/containers/srv/exec", deep, {"Content-Type": "application/json"}))  # fmt: skip
    assert status_of(out) == 400
    assert b"nested too deeply" in out
    deep_filters = "/containers/json?filters=" + "%5B" * 3000
    out = raw_request(guard, http("GET", deep_filters.replace("%5B", "[")))
    assert status_of(out) == 400


def test_100_continue_only_after_the_request_is_allowed(guard: Path) -> None:
    body = json.dumps({"Cmd": ["id"]}).encode()
    expect = {"Expect": "100-continue", "Content-Length": str(len(body)), "Content-Type": "application/json"}  # fmt: skip
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(guard))
        s.sendall(http("POST", "/containers/other/exec", headers=expect))
        denied = read_all(s)  # answered without waiting for the body
    assert denied.startswith(b"HTTP/1.1 403 ")
    assert b"100 Continue" not in denied
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(guard))
        s.sendall(http("POST", "/containers/srv/exec", headers=expect))
        interim = s.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        assert status_of(read_all(s)) == 200


def test_chunked_and_oversized_bodies(guard: Path) -> None:
    chunked = http("POST", "/containers/srv/exec", b"5\r\nhello\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"})  # fmt: skip
    assert b"chunked-body" in raw_request(guard, chunked)
    big = http("POST", "/containers/srv/exec", headers={"Content-Length": str(r.MAX_BODY + 1)})
    assert status_of(raw_request(guard, big)) == 413


def test_slow_client_gets_a_408_and_one_decision_line(guard: Path, caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr("supervisor.guard.HEAD_TIMEOUT", 0.2)
    caplog.set_level(logging.INFO, "supervisor.guard")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(guard))
        s.sendall(b"GET /_ping HTTP/1.1\r\n")  # never finished
        out = read_all(s)
    assert status_of(out) == 408, out
    assert b"denied by rule 'head-timeout'" in out
    lines = [rec for rec in caplog.records if "head-timeout" in rec.getMessage()]
    assert len(lines) == 1
    assert lines[0].exc_info is None  # one line, no traceback


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /_ping HTTP/1.1\r\nHost: x\r\n", 400),  # head cut by EOF
        (b"G", 400),
        (b"POST /containers/srv/exec HTTP/1.1\r\nContent-Length: 50\r\n\r\n{}", 400),  # short body
        (
            b"POST /containers/srv/exec HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
            413,
        ),
        (b"POST /containers/srv/start?checkpoint=c1&checkpoint-dir=/tmp/x HTTP/1.1\r\n\r\n", 403),
    ],
)
def test_every_request_gets_one_answer_and_one_decision_line(
    guard: Path, engine: FakeDockerd, caplog: pytest.LogCaptureFixture, raw: bytes, status: int
) -> None:
    """A 5,000-digit Content-Length raised ValueError in int(): no answer, an ERROR line,
    no decision logged. A head or body cut by the client's EOF got no answer either."""
    caplog.set_level(logging.INFO, "supervisor.guard")
    out = raw_request(guard, raw, half_close=True)
    assert status_of(out) == status, out[:200]
    assert out.count(b"HTTP/1.1 ") == 1
    decisions = [rec for rec in caplog.records if rec.getMessage().startswith(("allow ", "deny "))]
    assert len(decisions) == 1, [rec.getMessage() for rec in caplog.records]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert not any("/start" in t for t in engine.targets())


# --- property: whatever the client sends, one answer and one decision line -----------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, _Records]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    records = _Records()
    root, guard_log = logging.getLogger(), logging.getLogger("supervisor.guard")
    level = guard_log.level
    guard_log.setLevel(logging.INFO)
    root.addHandler(records)
    try:
        with fake_dockerd(tmp) as engine, running_guard(tmp, engine) as sock:
            yield sock, records
    finally:
        root.removeHandler(records)
        guard_log.setLevel(level)


_TARGETS = [
    "/_ping", "/version", "/containers/json", "/events", "/containers/srv/json",
    "/containers/srv/logs?stdout=1", "/containers/srv/stop?t=1", "/containers/srv/start",
    "/containers/srv/exec", f"/exec/{EXEC_OK}/start", f"/exec/{EXEC_OK}/json",
    "/containers/other/stop", "/v1.41/_ping", "/images/json", "/%2e%2e/x", "*", "",
]  # fmt: skip
_HEADER_NAMES = ["Host", "Content-Length", "content-length", "Transfer-Encoding", "Expect",
                 "Connection", "Upgrade", "Content-Type", "X-\u00e9", "", " Host", "Host "]  # fmt: skip
_LENGTHS = st.one_of(
    st.integers(0, 400).map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.sampled_from(
        ["-1", "+5", "0x10", "1e3", "\u0661", " 5", "5,5", "", "00000000000000000000001"]
    ),
)


def _mostly(good: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten (one_of would weigh the two alike)."""
    return st.tuples(st.integers(0, 9), good, other).map(lambda t: t[2] if t[0] == 0 else t[1])


_VALUES = st.sampled_from(
    ["100-continue", "Upgrade", "tcp", "chunked", "close", "application/json"]
)
_header = st.one_of(
    st.tuples(st.just("Content-Length"), _LENGTHS),
    st.tuples(st.just("Content-Type"), st.just("application/json")),
    st.tuples(st.sampled_from(["Expect", "Connection", "Upgrade", "Transfer-Encoding"]), _VALUES),
    st.tuples(st.sampled_from(["Expect", "Connection", "Upgrade", "Transfer-Encoding"]), _VALUES),
    st.tuples(st.sampled_from(_HEADER_NAMES), st.one_of(_VALUES, st.text(max_size=20))),
)
_structured_head = st.builds(
    lambda method, target, version, headers: "\r\n".join(
        [f"{method} {target} {version}", *(f"{k}: {v}" for k, v in headers)]
    ),
    _mostly(st.sampled_from(["GET", "POST", "HEAD", "PUT", "get", ""]), st.text(max_size=6)),
    _mostly(st.sampled_from(_TARGETS), st.text(max_size=30)),
    st.sampled_from(["HTTP/1.1"] * 12 + ["HTTP/1.0", "HTTP/2", "http/1.1", ""]),
    st.lists(_header, max_size=3).map(lambda hs: [("Host", "docker"), *hs]),
)  # fmt: skip
_BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"{}", b'{"Cmd":["id"]}', b'{"Cmd":["id"],"User":"12345"}', b"[" * 3000,
                     b'{"Cmd":["id"],"User":"' + b"9" * 5000 + b'"}', b"1" * 5000]),
)  # fmt: skip
_requests = _mostly(
    st.builds(
        lambda head, framed, end, body: (
            head.encode("utf-8", "surrogatepass")
            + (f"\r\nContent-Length: {len(body)}".encode() if framed else b"")
            + end
            + body
        ),
        _structured_head,
        st.booleans(),
        st.sampled_from([b"\r\n\r\n"] * 8 + [b"\r\n", b"\n\n", b""]),
        _BODIES,
    ),
    st.binary(min_size=1, max_size=400),
)


def _one_answer(out: bytes) -> int:
    """The status of the one answer in `out` (after an optional 100 Continue); fails if
    there is none, or if anything follows its Content-Length body."""
    out = out.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
    status = status_of(out)
    assert status == 101 or status >= 200, out[:200]
    if status == 101:
        return status  # the exec's stream follows (the fake engine echoes stdin)
    head, sep, body = out.partition(b"\r\n\r\n")
    assert sep, out[:200]
    lengths = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")[1:]
               if ln.lower().startswith(b"content-length:")]  # fmt: skip
    assert len(lengths) == 1 and int(lengths[0]) == len(body), out[:300]
    return status


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests)
def test_property_any_bytes_get_one_answer_and_one_decision_line(
    fuzzed: tuple[Path, _Records], raw: bytes
) -> None:
    sock, records = fuzzed
    records.records.clear()
    out = raw_request(sock, raw, half_close=True, timeout=15)
    status = _one_answer(out)
    msgs = [rec.getMessage() for rec in records.records]
    decisions = [m for m in msgs if m.startswith(("allow ", "deny "))]
    assert len(decisions) == 1, msgs
    event(f"{status} {decisions[0].rsplit(' -> ', 1)[1]}")
    assert not [rec for rec in records.records if rec.levelno >= logging.WARNING], msgs
    assert not [rec for rec in records.records if rec.exc_info], msgs


# --- floods ----------------------------------------------------------------------------------


def test_connections_beyond_the_cap_get_503_and_the_guard_recovers(
    tmp_path: Path, engine: FakeDockerd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "supervisor.guard")
    with running_guard(tmp_path, engine, max_connections=4) as sock:
        idle = []
        for _ in range(4):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.1\r\n")  # holds a slot
            idle.append(s)
        refused = [raw_request(sock, http("GET", "/_ping")) for _ in range(20)]
        assert all(status_of(out) == 503 for out in refused)
        for s in idle:
            s.close()
        deadline = time.monotonic() + 10
        while status_of(raw_request(sock, http("GET", "/_ping"))) != 200:
            assert time.monotonic() < deadline, "the guard did not recover"
    busy = [rec for rec in caplog.records if "guard busy" in rec.getMessage()]
    over = [rec for rec in caplog.records if "burst over" in rec.getMessage()]
    assert len(busy) == 1, "one line per burst"
    assert len(over) == 1
    assert int(over[0].getMessage().split()[3]) >= 20  # and any retries while closing


GUARD_UNDER_ULIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from supervisor.guard import main
sys.exit(main(sys.argv[1:]))
"""


def test_accept_failures_back_off_and_never_end_the_listener(
    tmp_path: Path, engine: FakeDockerd
) -> None:
    """EMFILE on accept(): the cap is set above the fd limit on purpose."""
    sock = tmp_path / "g.sock"
    log = (tmp_path / "guard.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", GUARD_UNDER_ULIMIT, "--socket", str(sock), "--upstream",
         str(engine.path), "--stack", STACK, "--max-connections", "1000"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "guard did not start"
            time.sleep(0.05)
        held = []
        for _ in range(150):  # far beyond 64 fds
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(sock))  # queued in the backlog when accept() fails
            held.append(s)
        deadline = time.monotonic() + 20
        while b"cannot accept" not in (tmp_path / "guard.log").read_bytes():
            assert time.monotonic() < deadline, "no EMFILE seen"
            time.sleep(0.05)
        for s in held:
            s.close()
        assert proc.poll() is None, "the listener ended"
        deadline = time.monotonic() + 20
        while status_of(raw_request(sock, http("GET", "/_ping"), timeout=5)) != 200:
            assert time.monotonic() < deadline, "no answer after the flood"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


# --- the socket file -------------------------------------------------------------------------


def test_replaces_stale_socket(tmp_path: Path, engine: FakeDockerd) -> None:
    sock = tmp_path / "guard" / "docker.sock"
    sock.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # file left behind, nobody listening
    with running_guard(tmp_path, engine) as served:
        assert status_of(raw_request(served, http("GET", "/_ping"))) == 200


async def test_refuses_live_socket_and_regular_file(tmp_path: Path, engine: FakeDockerd) -> None:
    sock = tmp_path / "docker.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(sock))
    live.listen()
    policy = r.Policy(STACK, 30, 41)
    try:
        with pytest.raises(FileExistsError, match="live socket"):
            await serve_guard(sock, engine.path, policy, os.getgid())
    finally:
        live.close()
    sock.unlink()
    sock.write_text("not a socket")
    with pytest.raises(FileExistsError, match="not a socket"):
        await serve_guard(sock, engine.path, policy, os.getgid())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio
_ = anyio
