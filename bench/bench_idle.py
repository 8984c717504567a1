"""Idle footprint of the daemon supervising a healthy stack.

Run: python -m bench.bench_idle [--seconds 60] [--strace-seconds 20] [--drain]
Needs the engine and the stand-in images (bash tests/images/build.sh); `--drain` also the
replica of HyOS's server (bash tests/upstream/build-server.sh).

`--drain` (issue 24) measures three daemons one after the other: the stand-in stack idle
(today's figure), the replica of HyOS's server idle, and the replica with a drain pending
(one player on, `restart server` asked, the `[drain]` defaults: a REST poll every 10 s, a
warning at each offset): what waiting for players costs the daemon.

Measured here with `--seconds 30 --strace-seconds 10 --drain` (2026-12-07, four other
sessions building and testing on the machine):

| daemon | RSS max | CPU | wake-ups/s | epoll_wait in 10 s |
|---|---|---|---|---|
| stand-in stack, idle | 53.7 MB | 0.000 % | 0.07 | - |
| replica, idle | 53.8 MB | 0.000 % | 0.07 | - |
| replica, drain pending | 53.8 MB | 0.100 % | 2.13 | 21 |

A pending drain costs no memory; its poll (one exec of curl in the server every 10 s,
each a few engine round trips) is the wake-ups.

Samples the daemon's /proc/<pid>/status (VmRSS, VmHWM, voluntary context switches:
each one is a sleep that ended, i.e. a wake-up) and /proc/<pid>/stat (utime+stime) at
the start and end of the window, every second for RSS. Then, if strace is installed,
counts the event-loop waits (epoll_wait/poll/select) over a shorter window with
`strace -f -c` (attached separately: tracing inflates the CPU figure).
Goals (issue 3): RSS <= 60 MB, CPU <= 1 % of one core, no loop waking more often than
the safety-net reconcile (60 s) or the watchdog needs. The stand-in manager's and
server's health checks (every 1 s) make the engine emit no events while healthy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench._daemon import Supervised, supervised_stack, wait_for
from bench.bench_drain import drain_pending, players, restart
from tests.upstream.replica import injected_tokens, replica_env

TICKS = os.sysconf("SC_CLK_TCK")


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def kib(value: str) -> int:
    return int(value.split()[0])


def measure(daemon: Supervised, seconds: float, strace_seconds: float) -> dict[str, object]:
    pid = daemon.proc.pid
    time.sleep(2)  # let start-up work settle
    start_status, start_cpu, t0 = status(pid), cpu_seconds(pid), time.monotonic()
    rss_max = kib(start_status["VmRSS"])
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        rss_max = max(rss_max, kib(status(pid)["VmRSS"]))
    end_status, end_cpu, elapsed = status(pid), cpu_seconds(pid), time.monotonic() - t0
    wakeups = kib(end_status["voluntary_ctxt_switches"]) - kib(
        start_status["voluntary_ctxt_switches"]
    )
    syscalls = ""
    if shutil.which("strace") and strace_seconds > 0:
        out = Path(tempfile.mkstemp(prefix="hyos-strace-")[1])
        tracer = subprocess.Popen(
            ["strace", "-f", "-c", "-o", str(out), "-e", "trace=epoll_wait,epoll_pwait,poll,ppoll,select,pselect6", "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(strace_seconds)
        tracer.send_signal(2)
        tracer.wait(10)
        syscalls = out.read_text()
        out.unlink()
    return {
        "elapsed": elapsed,
        "rss_max_mb": rss_max / 1024,
        "hwm_mb": kib(end_status["VmHWM"]) / 1024,
        "cpu_s": end_cpu - start_cpu,
        "cpu_pct": (end_cpu - start_cpu) / elapsed * 100,
        "wakeups": wakeups,
        "threads": end_status["Threads"].strip(),
        "syscalls": syscalls,
    }


def report(label: str, m: dict[str, object], strace_seconds: float) -> None:
    elapsed = float(m["elapsed"])  # type: ignore[arg-type]
    wakeups = int(m["wakeups"])  # type: ignore[call-overload]
    print(f"== {label}: window {elapsed:.1f} s")
    print(f"RSS max {m['rss_max_mb']:.1f} MB (VmHWM {m['hwm_mb']:.1f} MB)")
    print(f"CPU {m['cpu_s']:.2f} s = {m['cpu_pct']:.3f} % of one core")
    print(f"wake-ups (voluntary context switches, {m['threads']} threads): {wakeups} "
          f"= {wakeups / elapsed:.2f}/s")  # fmt: skip
    if m["syscalls"]:
        print(f"event-loop waits over {strace_seconds:g} s (strace -f -c):")
        print(m["syscalls"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--strace-seconds", type=float, default=20)
    parser.add_argument("--drain", action="store_true", help="also the replica, idle and draining")
    args = parser.parse_args()
    with supervised_stack() as daemon:
        idle = measure(daemon, args.seconds, args.strace_seconds)
    report("healthy stand-in stack, defaults (reconcile every 60 s)", idle, args.strace_seconds)
    rss_ok = float(idle["rss_max_mb"]) <= 60  # type: ignore[arg-type]
    cpu_ok = float(idle["cpu_pct"]) <= 1  # type: ignore[arg-type]
    print(f"goals: RSS <= 60 MB {'met' if rss_ok else 'MISSED'}; "
          f"CPU <= 1 % {'met' if cpu_ok else 'MISSED'}")  # fmt: skip
    if not args.drain:
        return
    with supervised_stack(replica_env(injected_tokens())) as daemon:
        replica = measure(daemon, args.seconds, args.strace_seconds)
        players(f"{daemon.name}-server", ["Ann"])
        restart(daemon)
        wait_for(lambda: drain_pending(daemon), 30, "the drain")
        draining = measure(daemon, args.seconds, args.strace_seconds)
        assert drain_pending(daemon), "the drain ended during the window"
    report("the replica of HyOS's server, idle", replica, args.strace_seconds)
    report("the replica, a drain pending (one player on)", draining, args.strace_seconds)
    for key, unit in (("rss_max_mb", "MB"), ("cpu_pct", "% CPU")):
        before, during = float(replica[key]), float(draining[key])  # type: ignore[arg-type]
        print(f"drain pending vs idle: {key} {before:.2f} -> {during:.2f} {unit}")
    rate = {k: int(m["wakeups"]) / float(m["elapsed"]) for k, m in (("idle", replica), ("drain", draining))}  # type: ignore[call-overload,arg-type]  # fmt: skip
    print(f"drain pending vs idle: wake-ups {rate['idle']:.2f}/s -> {rate['drain']:.2f}/s")


if __name__ == "__main__":
    main()
