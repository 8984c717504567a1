"""A connection flood on the manager's guard socket, against the real daemon.

Run: python -m bench.bench_guard_flood [--connections 1500] [--nofile 512] [--runs 3]
Starts `hyos-supervisor run` for a stand-in stack with RLIMIT_NOFILE as given (systemd's
default soft limit is 1024), opens that many idle connections to the guard (each sends a
head that never ends), and reports: how many the guard held and how many it refused with
503; then a burst of 60 complete requests by name (each a lookup) and 60 slowloris
connections past the head deadline; the daemon's peak RSS (VmHWM), the time from releasing the flood to the first
answered ping, and whether the daemon still restarts a crashed server. Medians of --runs.
It also counts the daemon's open descriptors before the flood, right after it, and once
they settle (up to --settle seconds), with what the extra ones are (socket, pipe, ...).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import resource
import socket
import statistics
import threading
import time
from pathlib import Path

from bench._daemon import docker, supervised_stack, wait_for


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def fds(pid: int) -> collections.Counter[str]:
    """The process's open descriptors by kind (socket, pipe, anon_inode:[eventpoll], file)."""
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            kinds[
                target.split(":[")[0]
                if ":[" in target and "anon" not in target
                else (target if target.startswith("anon") else "file")
            ] += 1
    return kinds


def settled_fds(pid: int, baseline: int, settle_s: float) -> collections.Counter[str]:
    deadline = time.monotonic() + settle_s
    while (now := fds(pid)).total() > baseline and time.monotonic() < deadline:
        time.sleep(0.25)
    return now


def ping(sock: Path) -> int:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        return int(s.recv(64).split(b" ", 2)[1])


def flood(sock: Path, n: int) -> list[socket.socket]:
    held: list[socket.socket] = []
    deadline = time.monotonic() + 120
    while len(held) < n:
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        try:
            s.connect(str(sock))
        except BlockingIOError:
            s.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(held)} connections in 120 s") from None
            time.sleep(0.001)
            continue
        with contextlib.suppress(OSError):
            s.sendall(b"GET /_ping HTTP/1.1\r\n")
        held.append(s)
    return held


def burst(sock: Path, target: str, n: int) -> int:
    """`n` complete requests at once (each needs a lookup by name); how many got a 200."""
    ok = []

    def one() -> None:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(sock))
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
            ok.append(s.recv(64).startswith(b"HTTP/1.1 200 "))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(ok)


def slowloris(sock: Path, n: int, seconds: float) -> None:
    """`n` connections sending one byte of a head every 0.5 s, past the head deadline."""
    conns = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        conns.append(s)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for s in conns:
            with contextlib.suppress(OSError):
                s.send(b"G")
        time.sleep(0.5)
    for s in conns:
        s.close()


def one_run(n: int, nofile: int, settle_s: float) -> dict[str, float]:
    with supervised_stack(nofile=nofile) as d:
        sock = Path(d.log_path.parent / "state" / "guard" / d.name / "docker.sock")
        assert ping(sock) == 200
        fds_before = fds(d.proc.pid)
        rss_before = status_kib(d.proc.pid, "VmRSS")
        started = time.perf_counter()
        held = flood(sock, n)
        opened_s = time.perf_counter() - started
        refused = 0
        for s in held:
            s.settimeout(0.2)
            with contextlib.suppress(OSError):
                refused += s.recv(64).startswith(b"HTTP/1.1 503 ")
        alive = d.proc.poll() is None
        for s in held:
            s.close()
        released = time.perf_counter()
        wait_for(lambda: ping(sock) == 200, 30, "a ping after the flood", interval=0.01)
        back_s = time.perf_counter() - released
        answered = burst(sock, f"/containers/{d.name}-server/json", 60)
        fds_burst = fds(d.proc.pid)
        slowloris(sock, 60, 12.0)
        fds_flooded = fds(d.proc.pid)
        fds_after = settled_fds(d.proc.pid, fds_before.total(), settle_s)
        print(f"  fds before {dict(fds_before)}, after the burst {dict(fds_burst)}, "
              f"after the slowloris {dict(fds_flooded)}, "
              f"settled {dict(fds_after)}")  # fmt: skip
        peak = status_kib(d.proc.pid, "VmHWM")
        docker("kill", f"{d.name}-server")
        crashed = time.perf_counter()
        wait_for(lambda: d.lines("restart issued", service="server"), 30, "a restart")
        restart_s = time.perf_counter() - crashed
        return {
            "held": n - refused, "refused": refused, "alive": float(alive),
            "open_s": opened_s, "rss_before_mib": rss_before / 1024, "peak_mib": peak / 1024,
            "ping_after_s": back_s, "restart_after_crash_s": restart_s,
            "burst_200": answered, "fds_before": fds_before.total(), "fds_after_burst": fds_burst.total(),
            "fds_after_slowloris": fds_flooded.total(),
            "fds_settled": fds_after.total(),
        }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=1500)
    ap.add_argument("--nofile", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=20.0, help="seconds for fds to settle")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections * 2 + 256), hard))
    runs = [one_run(args.connections, args.nofile, args.settle) for _ in range(args.runs)]
    print(f"flood: {args.connections} idle connections on the guard, daemon RLIMIT_NOFILE "
          f"{args.nofile}, median of {args.runs}")  # fmt: skip
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"  {key:22} {statistics.median(values):10.3f}   (runs: "
              + ", ".join(f"{v:.3f}" for v in values) + ")")  # fmt: skip
    return 0 if all(r["alive"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
