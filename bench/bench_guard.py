"""Cost of the Docker API guard: added latency per inspect, and log streaming throughput.

Run: python -m bench.bench_guard [--requests 300] [--log-mb 50] [--runs 5]
Needs the engine on /var/run/docker.sock. The guard runs as a separate process
(`python -m supervisor.guard`, INFO logging as in production) like in deployment; each
request uses a new connection, as the docker CLI does.
Goals: added median latency <= 2 ms, log throughput >= 0.9x direct.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
UPSTREAM = "/var/run/docker.sock"
IMAGE = "hyos-test/server:1"  # tests/images/build.sh
LINE = "0123456789" * 10  # yes(1) prints it plus a newline: 101 bytes per line


def docker(*args: str) -> str:
    env = {**os.environ, "DOCKER_HOST": f"unix://{UPSTREAM}"}
    return subprocess.run(
        [DOCKER, *args], env=env, check=True, capture_output=True, text=True, timeout=600
    ).stdout.strip()


def ensure_image() -> None:
    """The stand-in server image is busybox enough; its commands are given below."""
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(["bash", str(repo / "tests/images/build.sh")], check=True)


def request(sock_path: str, target: str, bufsize: int = 65536) -> tuple[int, int]:
    """One GET on a fresh connection; (status, bytes received)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
        first = s.recv(bufsize)
        if os.environ.get("BENCH_SHOW_ERRORS") and not first.startswith(b"HTTP/1.1 200"):
            print(first[:400], file=sys.stderr)
        total = len(first)
        while chunk := s.recv(bufsize):
            total += len(chunk)
    return int(first.split(b" ", 2)[1]), total


def latency(sock_path: str, target: str) -> float:
    t0 = time.perf_counter()
    status, _ = request(sock_path, target)
    dt = time.perf_counter() - t0
    assert status == 200, (sock_path, target, status)
    return dt * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--log-mb", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    ensure_image()
    prefix = "hyos-guard-test-" + secrets.token_hex(4)
    labels = [
        "--label",
        "io.hyos.managed=true",
        "--label",
        f"io.hyos.stack={prefix}",
        "--label",
        "io.hyos.role=server",
    ]
    tmp = Path(tempfile.mkdtemp(prefix="hyos-guard-test-"))
    sock = str(tmp / "docker.sock")
    names = [f"{prefix}-srv", f"{prefix}-log"]
    guard: subprocess.Popen[bytes] | None = None
    try:
        cid = docker("run", "-d", "--name", names[0], *labels, IMAGE, "sleep", "3600")
        nbytes = args.log_mb * 1_000_000
        log_id = docker(
            "run",
            "-d",
            "--name",
            names[1],
            *labels,
            IMAGE,
            "sh",
            "-c",
            f"yes {LINE} | head -c {nbytes}",
        )
        guard = subprocess.Popen(
            [sys.executable, "-m", "supervisor.guard", "--socket", sock, "--stack", prefix],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not Path(sock).exists():
            if time.monotonic() > deadline or guard.poll() is not None:
                raise RuntimeError("guard did not start")
            time.sleep(0.02)
        docker("wait", log_id)

        print(
            f"latency: GET /containers/{{id}}/json, {args.requests} requests each, "
            "new connection per request"
        )
        for label, ref in (("full id", cid), ("name", names[0])):
            target = f"/v1.41/containers/{ref}/json"
            for _ in range(20):  # warm up both paths
                latency(UPSTREAM, target)
                latency(sock, target)
            direct, guarded = [], []
            for _ in range(args.requests):  # interleaved so drift hits both equally
                direct.append(latency(UPSTREAM, target))
                guarded.append(latency(sock, target))
            d, g = statistics.median(direct), statistics.median(guarded)
            print(
                f"  by {label:7}: direct {d:.3f} ms, guard {g:.3f} ms, added {g - d:.3f} ms "
                f"(goal <= 2 ms: {'ok' if g - d <= 2 else 'MISSED'})"
            )

        target = f"/v1.41/containers/{log_id}/logs?stdout=1&stderr=1"
        _, expect = request(UPSTREAM, target)
        print(f"throughput: {expect / 1e6:.1f} MB log (with stream framing), median of {args.runs}")
        rates: dict[str, list[float]] = {"direct": [], "guard": []}
        for _ in range(args.runs):
            for label, path in (("direct", UPSTREAM), ("guard", sock)):
                t0 = time.perf_counter()
                status, got = request(path, target, 1 << 20)
                dt = time.perf_counter() - t0
                assert status == 200 and got == expect, (label, status, got, expect)
                rates[label].append(got / dt / 1e6)
        d, g = statistics.median(rates["direct"]), statistics.median(rates["guard"])
        print(
            f"  direct {d:.0f} MB/s, guard {g:.0f} MB/s, ratio {g / d:.2f}x "
            f"(goal >= 0.9x: {'ok' if g / d >= 0.9 else 'MISSED'})"
        )
    finally:
        if guard is not None:
            guard.terminate()
            guard.wait(timeout=10)
        subprocess.run(
            [DOCKER, "-H", f"unix://{UPSTREAM}", "rm", "-f", *names],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
