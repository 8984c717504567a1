"""Shared by the daemon benchmarks: a uniquely named stack supervised by `hyos-supervisor
run` in a subprocess, its JSON log lines, and a `docker events` follower.

Needs the engine and the stand-in images (bash tests/images/build.sh).
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from supervisor import control
from tests.harness import Daemon, poll
from tests.harness import docker_out as docker
from tests.standin import SERVER_IMAGE, remove_stack_objects, standin_env

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


def log_time(text: str) -> float:
    """The daemon's `...+00:00` log timestamps -> epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    return poll(check, timeout, what, interval)


@dataclass
class Supervised(Daemon):
    """A benchmark's daemon and the name of its stack."""

    name: str = ""


remove_stack = remove_stack_objects


@contextmanager
def supervised_stack(
    settings: Mapping[str, str] | None = None, *, nofile: int | None = None, healthy: bool = True
) -> Iterator[Supervised]:
    """A fresh stack under a daemon with these HYOS_* settings, healthy on entry (unless
    `healthy=False`); everything removed on exit. `nofile` caps the daemon's file
    descriptors (RLIMIT_NOFILE)."""
    name = f"b{uuid.uuid4().hex[:10]}"
    tmp = Path(tempfile.mkdtemp(prefix="hyos-bench-"))
    env = standin_env(name, tmp / "state", **(settings or {}))
    launched = Daemon.launch(
        env, tmp / "daemon.log", tmp / "state" / f"{name}.{control.SOCKET_NAME}", nofile
    )
    daemon = Supervised(launched.proc, launched.log_path, launched.socket_path, name)
    try:
        if healthy:
            wait_for(daemon.healthy, 90, "a healthy stack", interval=0.1)
        yield daemon
    finally:
        daemon.stop(timeout=60)
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
