"""Idle footprint of the daemon supervising a healthy stack.

Run: python -m bench.bench_idle [--seconds 60] [--strace-seconds 20]
Needs the engine and the stand-in images (bash tests/images/build.sh).

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

from bench._daemon import supervised_stack

TICKS = os.sysconf("SC_CLK_TCK")


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def kib(value: str) -> int:
    return int(value.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--strace-seconds", type=float, default=20)
    args = parser.parse_args()
    with supervised_stack() as daemon:
        pid = daemon.proc.pid
        time.sleep(2)  # let start-up work settle
        start_status, start_cpu, t0 = status(pid), cpu_seconds(pid), time.monotonic()
        rss_max = kib(start_status["VmRSS"])
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1)
            rss_max = max(rss_max, kib(status(pid)["VmRSS"]))
        end_status, end_cpu, elapsed = status(pid), cpu_seconds(pid), time.monotonic() - t0
        wakeups = kib(end_status["voluntary_ctxt_switches"]) - kib(
            start_status["voluntary_ctxt_switches"]
        )
        threads = end_status["Threads"].strip()
        syscalls = ""
        if shutil.which("strace"):
            out = Path(tempfile.mkstemp(prefix="hyos-strace-")[1])
            tracer = subprocess.Popen(
                ["strace", "-f", "-c", "-o", str(out), "-e", "trace=epoll_wait,epoll_pwait,poll,ppoll,select,pselect6", "-p", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(args.strace_seconds)
            tracer.send_signal(2)
            tracer.wait(10)
            syscalls = out.read_text()
            out.unlink()
    cpu_pct = (end_cpu - start_cpu) / elapsed * 100
    print(f"window: {elapsed:.1f} s, healthy stack, defaults (reconcile every 60 s)")
    print(f"RSS max {rss_max / 1024:.1f} MB (VmHWM {kib(end_status['VmHWM']) / 1024:.1f} MB)")
    print(f"CPU {end_cpu - start_cpu:.2f} s = {cpu_pct:.3f} % of one core")
    print(f"wake-ups (voluntary context switches, {threads} threads): {wakeups} "
          f"= {wakeups / elapsed:.2f}/s")  # fmt: skip
    rss_ok = rss_max / 1024 <= 60
    print(f"goals: RSS <= 60 MB {'met' if rss_ok else 'MISSED'}; "
          f"CPU <= 1 % {'met' if cpu_pct <= 1 else 'MISSED'}")  # fmt: skip
    if syscalls:
        print(f"event-loop waits over {args.strace_seconds:g} s (strace -f -c):")
        print(syscalls)


if __name__ == "__main__":
    main()
