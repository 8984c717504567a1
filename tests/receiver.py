"""A real local HTTP receiver for notification tests: what Apprise's json:// URL posts to.

It records every POST (body, headers, arrival time) and can be taken down and brought
back up on the same port (`down()` closes the listening socket: connections are
refused, as when a webhook host is away)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.time() on arrival

    @property
    def key(self) -> str:
        return str(self.body.get("idempotency_key"))


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.lock = threading.Lock()
        self.got: list[Received] = []
        self.status = 200
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self.up()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                status = receiver.status
                if status == 200:
                    with receiver.lock:
                        receiver.got.append(
                            Received(self.path, dict(self.headers), json.loads(raw), time.time())
                        )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def up(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str = "/hook/s3cr3t-token-path") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.got)

    def keys(self) -> list[str]:
        return [r.key for r in self.received()]

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        """Poll (with a deadline) until `count` distinct keys arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(set(self.keys())) >= count:
                return self.received()
            time.sleep(0.02)
        raise AssertionError(f"{len(set(self.keys()))} of {count} notifications arrived")

    async def arrived(self, count: int, timeout: float) -> list[Received]:
        """`wait_for` inside an event loop (the sender runs in it)."""
        import anyio

        with anyio.fail_after(timeout):
            while len(set(self.keys())) < count:
                await anyio.sleep(0.02)
        return self.received()
