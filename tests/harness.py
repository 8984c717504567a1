"""What tests and benchmarks share to drive the real engine and the real daemon: the
docker CLI, polling with a deadline, the daemon's JSON log, and `hyos-supervisor run` as
a subprocess. Plain helpers with no pytest dependency, so `bench/` uses them as they are.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from supervisor import control

REPO = Path(__file__).resolve().parents[1]
DAEMON_COMMAND = (sys.executable, "-m", "supervisor", "--log-format", "json", "run")


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def docker_out(*args: str, check: bool = True) -> str:
    """A docker command's standard output, stripped."""
    return docker(*args, check=check).stdout.strip()


def inspect(ref: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(docker("inspect", ref).stdout)[0]
    return found


def poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects among a log file's lines."""
    found = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            found.append(line)
    return found


def _limit_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


class DaemonExited(RuntimeError):
    """The daemon under test exited while it was expected to run."""


@dataclass
class Daemon:
    """One `hyos-supervisor run` subprocess: its JSON log and its control socket."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    socket_path: Path

    @classmethod
    def launch(
        cls, env: dict[str, str], log_path: Path, socket_path: Path, nofile: int | None = None
    ) -> Daemon:
        """`nofile` caps the daemon's file descriptors (RLIMIT_NOFILE), as systemd does."""
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                DAEMON_COMMAND,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=REPO,
                preexec_fn=None if nofile is None else partial(_limit_files, nofile),
            )
        return cls(proc, log_path, socket_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self, message: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """The log lines with this message (any, if None) and these field values."""
        return [
            line
            for line in json_lines(self.log_path)
            if (message is None or line.get("message") == message)
            and all(line.get(k) == v for k, v in match.items())
        ]

    def wait_lines(
        self, message: str, count: int = 1, timeout: float = 15, **match: Any
    ) -> list[dict[str, Any]]:
        """Until at least `count` lines with this message (and these fields) were logged;
        TimeoutError at the deadline, DaemonExited if the daemon exits first."""

        def enough() -> list[dict[str, Any]] | None:
            self.check_alive()
            found = self.lines(message, **match)
            return found if len(found) >= count else None

        found: list[dict[str, Any]] = poll(enough, timeout, f"{count} x log {message!r} {match}")
        return found

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise DaemonExited(f"the daemon exited with {self.proc.returncode}:\n{tail}")

    def view(self) -> dict[str, Any] | None:
        """The daemon's live view over its control socket (what `status` merges)."""
        return control.live_view(self.socket_path)

    def healthy(self, roles: tuple[str, ...] = ("server", "manager")) -> bool:
        """Whether the daemon sees every role running and healthy, nothing pending."""
        self.check_alive()
        view = self.view()
        if view is None:
            return False
        return all(_settled(view["services"][r]) for r in roles)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal and wait; SIGKILL at the deadline. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _settled(row: dict[str, Any]) -> bool:
    """Running and healthy, with no restart of the daemon's pending or in flight."""
    idle = not row["busy"] and row["restart_in_s"] is None
    return bool(row["health"] == "healthy" and row["status"] == "running" and idle)


def _exited(proc: Path) -> bool:
    """Gone, or a zombie: a dockerd whose parent was its session's shell is reparented to
    this machine's init, which may reap it only much later."""
    try:
        stat = (proc / "stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _dockerd_pid() -> int | None:
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout
    pids = [int(p) for p in found.split() if not _exited(Path(f"/proc/{p}"))]
    return pids[0] if pids else None


def _engine_answers() -> bool:
    return docker("version", check=False, timeout=10).returncode == 0


def restart_dockerd(log_fallback: Path) -> None:
    """Restart THE engine: SIGTERM the running dockerd, wait for it to exit, start it
    again with the same command line, environment and working directory (in its own
    session, so it outlives the test), and wait until `docker version` answers.
    TimeoutError when it does not exit or does not answer again."""
    pid = _dockerd_pid()
    assert pid is not None, "no dockerd is running"
    proc = Path(f"/proc/{pid}")
    argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
    environ = dict(
        entry.decode(errors="replace").split("=", 1)
        for entry in (proc / "environ").read_bytes().split(b"\0")
        if b"=" in entry
    )
    cwd = os.readlink(proc / "cwd")
    log_target = Path(os.readlink(proc / "fd" / "2"))
    log_path = log_target if log_target.is_file() else log_fallback
    os.kill(pid, signal.SIGTERM)
    try:
        # dockerd stops every container first (its shutdown timeout is 15 s by default).
        poll(partial(_exited, proc), 90, "dockerd to exit", interval=0.2)
    finally:
        if _dockerd_pid() is None:
            with log_path.open("ab") as log:
                subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=environ,
                    cwd=cwd,
                    start_new_session=True,
                )
        poll(_engine_answers, 60, "the restarted engine to answer", interval=0.2)
