"""Raw-byte tools for the guard's tests: a blocking client that sends exact bytes, and a
fake engine that answers like Docker's HTTP server (keep-alive, hijack) and records every
request it parsed, so a test can prove what did or did not reach the engine."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SERVER_ID = "a" * 64
OTHER_ID = "b" * 64
EXEC_OK = "1" * 64
EXEC_ROOT = "2" * 64
STACK = "s1"
SERVER_LABELS = {"io.hyos.managed": "true", "io.hyos.stack": STACK, "io.hyos.role": "server"}
MANAGER_ID = "c" * 64
FOREIGN_ID = "d" * 64
UNMANAGED_ID = "e" * 64
EXEC_OTHER = "3" * 64
EXEC_PRIV = "4" * 64
# ref -> (full id, labels): what the fake engine's inspect answers.
CONTAINERS: dict[str, tuple[str, dict[str, str]]] = {
    "srv": (SERVER_ID, SERVER_LABELS),
    SERVER_ID: (SERVER_ID, SERVER_LABELS),
    SERVER_ID[:12]: (SERVER_ID, SERVER_LABELS),
    "other": (OTHER_ID, {}),
    OTHER_ID: (OTHER_ID, {}),
    "mgr": (MANAGER_ID, {**SERVER_LABELS, "io.hyos.role": "manager"}),
    "foreign": (FOREIGN_ID, {**SERVER_LABELS, "io.hyos.stack": "s2"}),
    "unmanaged": (UNMANAGED_ID, {"io.hyos.stack": STACK, "io.hyos.role": "server"}),
}
# exec id -> (container id, user, privileged)
EXECS: dict[str, tuple[str, str, bool]] = {
    EXEC_OK: (SERVER_ID, "", False),
    EXEC_ROOT: (SERVER_ID, "root", False),
    EXEC_OTHER: (OTHER_ID, "", False),
    EXEC_PRIV: (SERVER_ID, "", True),
}


def raw_request(sock_path: Path | str, data: bytes, *, half_close: bool = False,
                timeout: float = 10.0) -> bytes:  # fmt: skip
    """Send `data` on a fresh connection and read until the guard closes it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (a 503, a 403) and closed before we finished: read the answer
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def status_of(response: bytes) -> int:
    """The final status code (after any 100 Continue)."""
    while response.startswith(b"HTTP/1.1 100 "):
        response = response.partition(b"\r\n\r\n")[2]
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def http(method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
         version: str = "HTTP/1.1") -> bytes:  # fmt: skip
    lines = [f"{method} {target} {version}", "Host: docker"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body and not any(
        k.lower() in ("content-length", "transfer-encoding") for k in headers or {}
    ):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeDockerd:
    """A unix-socket HTTP server that behaves like dockerd where it matters here.

    - keeps connections alive unless asked to close, like Go's net/http: a second request
      on the same connection is parsed and recorded (the smuggling the guard must stop);
    - `exec_start`: "upgrade" answers 101 and echoes stdin back, "error" answers 400 as
      Docker does for a bad body or version, "detach" answers 200 with no body;
    - inspects answer for SERVER_ID ("srv") and two execs on it.
    """

    path: Path
    exec_start: str = "upgrade"
    seen: list[Seen] = field(default_factory=list)
    stdin: bytearray = field(default_factory=bytearray)
    delay_ping_s: float = 0.0
    _sock: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    def targets(self) -> list[str]:
        return [f"{s.method} {s.target}" for s in self.seen]

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(128)
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                raw_head, _, buf = buf.partition(b"\r\n\r\n")
                lines = raw_head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                body, buf = buf[:length], buf[length:]
                self.seen.append(Seen(method, target, headers, body))
                if self._answer(conn, method, target, headers, buf):
                    return
                if "close" in headers.get("connection", "").lower():
                    return

    def _answer(self, conn: socket.socket, method: str, target: str, headers: dict[str, str],
                pending: bytes) -> bool:  # fmt: skip
        """Write the response; True when the connection was taken over (hijack)."""
        path = target.split("?", 1)[0]
        segs = [s for s in path.split("/") if s]
        if segs and segs[0].startswith("v1."):
            segs = segs[1:]
        if segs == ["_ping"]:
            time.sleep(self.delay_ping_s)
            _send(conn, 200, b"OK", "text/plain")
        elif segs == ["version"]:
            _send(conn, 200, json.dumps({"ApiVersion": "1.41", "Version": "fake"}).encode())
        elif len(segs) == 3 and segs[0] == "containers" and segs[2] == "json":
            if segs[1] in CONTAINERS:
                cid, labels = CONTAINERS[segs[1]]
                doc = {"Id": cid, "Config": {"Labels": labels}}
                _send(conn, 200, json.dumps(doc).encode())
            else:
                _send(conn, 404, b'{"message":"No such container"}')
        elif len(segs) == 3 and segs[0] == "exec" and segs[2] == "json":
            if segs[1] not in EXECS:
                _send(conn, 404, b'{"message":"No such exec instance"}')
            else:
                cid, user, privileged = EXECS[segs[1]]
                doc = {
                    "ID": segs[1],
                    "ContainerID": cid,
                    "ProcessConfig": {"user": user, "privileged": privileged},
                }
                _send(conn, 200, json.dumps(doc).encode())
        elif len(segs) == 3 and segs[0] == "exec" and segs[2] == "start":
            if self.exec_start == "error":
                _send(conn, 400, b'{"message":"bad request"}')
            elif self.exec_start == "detach":
                _send(conn, 200, b"")
            else:
                conn.sendall(
                    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream"
                    b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                )
                data = pending
                while True:
                    if data:
                        self.stdin += data
                        conn.sendall(data)  # echo, like `cat`
                    data = conn.recv(65536)
                    if not data:
                        return True
        else:
            _send(conn, 200, b"{}")
        return False


def _send(conn: socket.socket, status: int, body: bytes, ctype: str = "application/json") -> None:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    conn.sendall(head.encode() + body)


@contextmanager
def fake_dockerd(
    tmp_path: Path, *, exec_start: str = "upgrade", delay_ping_s: float = 0.0
) -> Iterator[FakeDockerd]:
    """A FakeDockerd listening on tmp_path/engine.sock until the block ends."""
    engine = FakeDockerd(tmp_path / "engine.sock", exec_start, delay_ping_s=delay_ping_s)
    engine.start()
    try:
        yield engine
    finally:
        engine.close()
