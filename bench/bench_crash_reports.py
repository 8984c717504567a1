"""Crash to crash report on disk, and what reports cost the restart.

Run: python -m bench.bench_crash_reports [--crashes 5] [--helper-image IMAGE] [--replica]
Needs the engine, the stand-in images (bash tests/images/build.sh) and the supervisor
image as the helper (IMAGE=hyos-supervisor:crashlog bash scripts/build-image.sh, or the
default helper_image).

A stand-in stack under `hyos-supervisor run` (the default 1 s backoff, a crash-loop limit
it never reaches). Each crash is a SIGKILL of the server's init from the host, once it runs
again and the previous report is written. With --replica the server is HyOS's replica
image (tests/upstream/build-server.sh: HyOS's own scripts, a fake java that writes
Server/logs/<date>_server.log) and each crash is its `java-exit` control (exit 1), once the
restarted server booted. Per crash:
- die -> report on disk: the engine's `die` event (timeNano) to the report file's mtime
  (one host clock). Goal (issue 27): median <= 3 s.
- die -> start: the engine's `start` event of the restart, with reports on, and on a
  second stack with `[crashes] enabled = false` run at the same time, their crashes
  interleaved (both see the same load): gathering must not delay the restart.
Every secret the supervisor generated (read from the volume) or was given (the join
password, a notification URL, a backup password and credential) is written into the
container's log, a server log file, a JVM error file and HyOS's health.json before the
crashes; every report is scanned for each of them. Goal: 0 found.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from datetime import datetime
from functools import partial
from pathlib import Path

from bench._daemon import Events, Supervised, docker, median_ms, seconds, supervised_stack, wait_for
from tests.harness import docker as docker_run
from tests.upstream.replica import injected_tokens, replica_env

PASSWORD = "bench-join-password-1"
NOTIFY_URL = "json://hyos:bench-notify-pass@127.0.0.1:9/bench-notify-token-0123"
BACKUP_PASSWORD = "bench-backup-password-0123456789"
CREDENTIAL = "bench-aws-secret-KEY-0123456789abcdef"
GIVEN = (PASSWORD, NOTIFY_URL, "bench-notify-pass", "bench-notify-token-0123", BACKUP_PASSWORD,
         CREDENTIAL)  # fmt: skip


def settings(helper_image: str, reports: bool, replica: bool) -> dict[str, str]:
    more = replica_env(injected_tokens()) if replica else {}
    return {
        **more,
        "HYOS_HELPER_IMAGE": helper_image,
        "HYOS_RESTART__CRASH_LOOP_LIMIT": "100000",
        "HYOS_RESTART__BACKOFF_FACTOR": "1",
        "HYOS_RESTART__RESTART_MANAGER_WITH_SERVER": "false",
        "HYOS_CRASHES__ENABLED": "true" if reports else "false",
        "HYOS_SERVER_PASSWORD": PASSWORD,
        "HYOS_NOTIFY__URLS": NOTIFY_URL,
        "HYOS_BACKUP__REPOSITORY": "s3:https://127.0.0.1:9/bucket",
        "HYOS_BACKUP__PASSWORD": BACKUP_PASSWORD,
        "HYOS_BACKUP__CREDENTIALS": f"AWS_SECRET_ACCESS_KEY={CREDENTIAL}",
    }


def running(container: str) -> bool:
    return docker("inspect", "-f", "{{.State.Running}}", container, check=False) == "true"


def kill_9(container: str) -> None:
    os.kill(int(docker("inspect", "-f", "{{.State.Pid}}", container)), signal.SIGKILL)


def reports_of(daemon: Supervised) -> list[Path]:
    directory = daemon.socket_path.parent / f"{daemon.name}.crashes"
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def at_least(daemon: Supervised, count: int) -> list[Path] | None:
    found = reports_of(daemon)
    return found if len(found) >= count else None


def secrets_of(server: str) -> list[str]:
    out = docker_run(
        "exec", server, "sh", "-c", 'for f in /data/.hyos/secrets/*; do cat "$f"; echo; done'
    ).stdout
    return [*(line.strip() for line in out.splitlines() if line.strip()), *GIVEN]


def spill(server: str, secrets: list[str]) -> None:
    text = " ".join(secrets)
    docker_run("exec", server, "sh", "-c", (
        "mkdir -p /data/Server/logs /data/.state && "
        f"echo 'leak: {text}' > /proc/1/fd/1 && "
        f"echo '[SEVERE] {text}' >> /data/Server/logs/2026-12-07_10-00-00_server.log && "
        f"echo 'SIGSEGV {text}' > /data/Server/hs_err_pid77.log && "
        f"echo '{{\"note\": \"{text}\"}}' > /data/.state/health.json"
    ))  # fmt: skip


def booted(server: str) -> bool:
    done = docker_run("logs", "--tail", "5", server, check=False)
    return "Hytale Server Booted!" in done.stdout + done.stderr


def crash(server: str, replica: bool) -> None:
    if not replica:
        kill_9(server)
        return
    docker_run("exec", server, "sh", "-c", "mkdir -p /data/.test && echo 1 > /data/.test/java-exit")


class Side:
    """One stack under its daemon, crashed one crash at a time."""

    def __init__(self, daemon: Supervised, reports: bool, replica: bool) -> None:
        self.daemon, self.reports, self.replica = daemon, reports, replica
        self.server = f"{daemon.name}-server"
        self.to_report: list[float] = []
        self.to_start: list[float] = []
        if reports:
            daemon.wait_lines("crash reports: the secret values to mask were read", 1, 30)
        self.events = Events(f"container={self.server}", "event=die", "event=start")

    def crash_once(self) -> None:
        wait_for(partial(running, self.server), 30, "the server running")
        if self.replica:
            wait_for(partial(booted, self.server), 60, "Java booted")
        self.events.drain()
        crash(self.server, self.replica)
        die = seconds(self.events.next("die"))
        self.to_start.append(seconds(self.events.next("start")) - die)
        if self.reports:
            n = len(self.to_report) + 1
            found = wait_for(partial(at_least, self.daemon, n), 30, "the report")
            newest = max(found, key=lambda p: p.name)
            self.to_report.append(newest.stat().st_mtime - die)

    def close(self) -> None:
        self.events.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crashes", type=int, default=5)
    parser.add_argument("--helper-image", default="hyos-supervisor:crashlog")
    parser.add_argument("--replica", action="store_true", help="HyOS's replica server image")
    args = parser.parse_args()
    # Both stacks at once, their crashes interleaved: the two sides see the same load.
    with (
        supervised_stack(settings(args.helper_image, True, args.replica)) as with_reports,
        supervised_stack(settings(args.helper_image, False, args.replica)) as without,
    ):
        secrets = secrets_of(with_reports.name + "-server")
        spill(with_reports.name + "-server", secrets)
        on = Side(with_reports, True, args.replica)
        off = Side(without, False, args.replica)
        try:
            for _ in range(args.crashes):
                on.crash_once()
                off.crash_once()
        finally:
            on.close()
            off.close()
        found = reports_of(with_reports)
        leaks = {p.name: [s for s in secrets if s in p.read_text()] for p in found}
        parts = [json.loads(p.read_text()) for p in found]
    how = "java-exit 1 of HyOS's replica" if args.replica else "SIGKILL of the stand-in's init"
    print(f"crashes: {args.crashes} per side, interleaved ({how}; backoff 1 s)")
    print(f"die -> report on disk            median {median_ms(on.to_report):7.1f} ms  "
          f"(max {max(on.to_report) * 1000:.1f} ms; goal <= 3000 ms)")  # fmt: skip
    print(f"die -> start, reports on         median {median_ms(on.to_start):7.1f} ms")
    print(f"die -> start, reports off        median {median_ms(off.to_start):7.1f} ms")
    print(f"reports written: {len(found)}; secrets scanned for: {len(secrets)}; "
          f"secret values found: {sum(len(v) for v in leaks.values())}")  # fmt: skip
    complete = sum(1 for p in parts if not p.get("missing") and p.get("server_log"))
    print(
        f"reports with every part (nothing missing, the server log there): {complete}/{len(parts)}"
    )
    stamp = datetime.now().isoformat(timespec="seconds")
    print(f"samples (s) at {stamp}: report {[round(x, 3) for x in on.to_report]}")


if __name__ == "__main__":
    main()
