"""Shared by the daemon benchmarks: a uniquely named stack supervised by `hyos-supervisor
run` in a subprocess, its JSON log lines, and a `docker events` follower.

Needs the engine and the stand-in images (bash tests/images/build.sh).
"""

from __future__ import annotations

import json
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from supervisor import control  # noqa: E402
from tests.standin import (  # noqa: E402
    SERVER_IMAGE,
    json_lines,
    poll,
    remove_stack_objects,
    standin_env,
)

__all__ = [
    "SERVER_IMAGE",
    "Events",
    "Supervised",
    "docker",
    "log_time",
    "median_ms",
    "remove_stack",
    "seconds",
    "supervised_stack",
    "wait_for",
]


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=120
    ).stdout.strip()


def log_time(text: str) -> float:
    """The daemon's `...+00:00` log timestamps -> epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    return poll(check, timeout, what, interval)


class Supervised:
    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path, sock: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.sock = sock

    def lines(self, message: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in json_lines(self.log)
            if (message is None or line.get("message") == message)
            and all(line.get(k) == v for k, v in match.items())
        ]

    def view(self) -> dict[str, Any] | None:
        return control.live_view(self.sock)

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited:\n{self.log.read_text()[-2000:]}")
        view = self.view()
        return bool(view) and all(
            s["health"] == "healthy" and s["status"] == "running"
            for s in view["services"].values()  # type: ignore[index]
        )


remove_stack = remove_stack_objects


def _limit_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@contextmanager
def supervised_stack(
    nofile: int | None = None, healthy: bool = True, **settings: str
) -> Iterator[Supervised]:
    """A fresh stack under a daemon, healthy on entry (unless `healthy=False`); everything
    removed on exit. `nofile` caps the daemon's file descriptors (RLIMIT_NOFILE)."""
    name = f"b{uuid.uuid4().hex[:10]}"
    tmp = Path(tempfile.mkdtemp(prefix="hyos-bench-"))
    env = standin_env(name, tmp / "state", **settings)
    log = tmp / "daemon.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--log-format", "json", "run"],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=env,
            cwd=REPO,
            preexec_fn=None if nofile is None else partial(_limit_files, nofile),
        )
    daemon = Supervised(name, proc, log, tmp / "state" / f"{name}.{control.SOCKET_NAME}")
    try:
        if healthy:
            wait_for(daemon.healthy, 90, "a healthy stack", interval=0.1)
        yield daemon
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        remove_stack(name)
        shutil.rmtree(tmp, ignore_errors=True)


class Events:
    """`docker events --format '{{json .}}'` in the background; lines land in a queue."""

    def __init__(self, *filters: str) -> None:
        args = ["docker", "events", "--format", "{{json .}}"]
        for f in filters:
            args += ["--filter", f]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.queue.put(json.loads(line))

    def next(self, action: str, timeout: float = 30) -> dict[str, Any]:
        """The next event with this Action (others are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {action!r} event within {timeout} s")
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            if event.get("Action") == action or event.get("status") == action:
                return event

    def drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def seconds(event: dict[str, Any]) -> float:
    return int(event["timeNano"]) / 1e9


def median_ms(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    middle = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return middle * 1000
