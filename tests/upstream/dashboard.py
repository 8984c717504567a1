"""HyOS's real manager as its users reach it: an HTTP client for the dashboard's API
(session cookie, JSON, streamed multipart uploads), a world zip of a given size, and a
sampler of a container's cgroup memory. Plain helpers, no pytest: `bench/` uses them.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SESSION_COOKIE = "hyos_session"
ADMIN = {"username": "admin", "password": "correct-horse-battery-staple"}
MANAGER_IMAGE = os.environ.get("HYOS_UPSTREAM_MANAGER_IMAGE", "hyos-upstream/manager:local")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def set_cookie(self) -> str:
        """The raw Set-Cookie header of the session cookie ('' if none)."""
        for value in self.headers.get_all("Set-Cookie") or []:
            if value.startswith(f"{SESSION_COOKIE}="):
                return value
        return ""

    def session(self) -> str | None:
        cookie = self.set_cookie()
        return cookie.split(";", 1)[0].split("=", 1)[1] if cookie else None


@dataclass
class Dashboard:
    """The manager's HTTP API at host:port, with the session cookie once logged in."""

    host: str
    port: int
    session: str | None = None
    timeout: float = 60
    sent: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, container: str) -> Dashboard:
        """The manager container's published port 3000 (the engine picked the host port)."""
        out = subprocess.run(
            ["docker", "port", container, "3000/tcp"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        host, port = out.rsplit(":", 1)
        return cls(host, int(port))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.session is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.session}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            self.sent.append(f"{method} {path} -> {resp.status}")
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None, timeout: float | None = None) -> Reply:
        return self.request("POST", path, body, timeout=timeout)

    def answers(self) -> bool:
        try:
            return self.get("/api/health").status == 200
        except OSError:
            return False

    def setup(self, telemetry_opt_out: bool = False) -> Reply:
        """First-run setup: creates the admin and logs it in (the reply sets the cookie)."""
        reply = self.post("/api/auth/setup", {**ADMIN, "telemetryOptOut": telemetry_opt_out})
        self.session = reply.session() or self.session
        return reply

    def login(self) -> Reply:
        reply = self.post("/api/auth/login", ADMIN)
        self.session = reply.session() or self.session
        return reply

    def upload(self, path: str, file: Path, timeout: float = 600) -> Reply:
        """POST a multipart form with `file` as its `file` field, streamed from disk (a
        browser's upload: the client never holds the file in memory)."""
        boundary = f"----hyos{uuid.uuid4().hex}"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{file.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = len(head) + file.stat().st_size + len(tail)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.putrequest("POST", path)
            conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
            conn.putheader("Content-Length", str(size))
            if self.session is not None:
                conn.putheader("Cookie", f"{SESSION_COOKIE}={self.session}")
            conn.endheaders()
            conn.send(head)
            with file.open("rb") as source:
                while chunk := source.read(1 << 20):
                    conn.send(chunk)
            conn.send(tail)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()


def world_zip(path: Path, megabytes: int, file_mb: int = 16) -> Path:
    """A world as HyOS's slots take it (`universe/...`) of `megabytes` MB (10^6 bytes:
    HyOS's 500 MB limit is Next.js's "500mb", 500 MiB for the whole request): region
    files of random bytes (Hytale's are compressed already), stored without compression."""
    block = os.urandom(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("universe/worlds/default/config.json", '{"name": "default"}')
        left, index = megabytes * 1_000_000, 0
        while left > 0:
            size = min(file_mb * 1_000_000, left)
            with archive.open(f"universe/worlds/default/chunks/r.{index}.region.bin", "w") as out:
                written = 0
                while written < size:
                    # Every MiB differs (a counter in front), so nothing deduplicates.
                    piece = (written.to_bytes(8, "little") + block[8:])[: size - written]
                    out.write(piece)
                    written += len(piece)
            left, index = left - size, index + 1
    return path


def mod_jar(path: Path, name: str = "TestMod", version: str = "1.0.0") -> Path:
    """A minimal plugin jar with a manifest.json, as HyOS's mod inspector reads it."""
    with zipfile.ZipFile(path, "w") as jar:
        jar.writestr("manifest.json", json.dumps({"Name": name, "Version": version}))
        jar.writestr("com/example/Main.class", b"\xca\xfe\xba\xbe" + bytes(64))
    return path


class MemorySampler:
    """Peaks of a container's cgroup memory while running: the kernel's own high-water
    mark (v1 memory.max_usage_in_bytes / v2 memory.peak, page cache included) and, sampled
    every 20 ms, what cannot be reclaimed (anonymous memory plus tmpfs: rss + shmem)."""

    def __init__(self, container_id: str) -> None:
        self.dir = _cgroup_dir(container_id)
        self.peak_unreclaimable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stat = dict(
                    line.split() for line in (self.dir / "memory.stat").read_text().splitlines()
                )
            except OSError:
                return
            if "total_rss" in stat:  # cgroup v1
                now = int(stat["total_rss"]) + int(stat.get("total_shmem", 0))
            else:
                now = int(stat.get("anon", 0)) + int(stat.get("shmem", 0))
            self.peak_unreclaimable = max(self.peak_unreclaimable, now)
            time.sleep(0.02)

    @property
    def kernel_peak(self) -> int | None:
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            try:
                return int((self.dir / name).read_text())
            except OSError:
                continue
        return None


def _cgroup_dir(container_id: str) -> Path:
    for candidate in _cgroup_candidates(container_id):
        if (candidate / "memory.stat").exists():
            return candidate
    raise FileNotFoundError(f"no memory cgroup found for {container_id[:12]}")


def _cgroup_candidates(container_id: str) -> Iterator[Path]:
    root = Path("/sys/fs/cgroup")
    for base in (root / "memory", root):
        yield base / "docker" / container_id
        yield base / "system.slice" / f"docker-{container_id}.scope"
