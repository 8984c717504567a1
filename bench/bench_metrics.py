"""`/metrics` (issue 27): scrape latency, the calls a scrape makes, and the daemon's RSS
with metrics on against off.

Run: python -m bench.bench_metrics [--scrapes 1000] [--settle 5]
Needs the engine and the stand-in images (bash tests/images/build.sh).

Three stand-in stacks, one after the other:
1. off: `hyos-supervisor run` without `[metrics]`: its VmRSS once settled.
2. on: the same with `HYOS_METRICS__LISTEN=127.0.0.1:<port>`: its VmRSS once settled and
   again after the scrapes; each scrape is one connection, `GET /metrics`, the whole answer
   read (what Prometheus does), timed by the client: p50, p95, p99, max. REST calls are
   execs of curl in the server container (supervisor/serverapi.py), so `docker events`
   counts them: the `exec_start: curl` events of the server during the scrapes.
3. calls: the daemon in this process (supervisor.daemon.Daemon) with the real engine
   behind a counter of every call (tests/callcounter.py), and the REST client's own
   count (`ServerApi.calls`): the calls made during the scrapes, beside those made in an
   idle window as long without a scrape (the daemon's own work, for comparison).
Goals: p95 <= 5 ms; 0 Docker and 0 REST calls per scrape; RSS on <= off + 5 MB.

Measured here (2026-12-07, 2 CPUs shared with other test sessions, load average 5.4-9.5;
1000 scrapes a run, four runs): the page has 48 families (42 hyos_*), 114 series, 12.3 kB.
- calls: 0 engine calls and 0 REST calls during 1000 scrapes of the in-process daemon
  (and 0 and 0 in an idle 5 s window); 0 curl execs in the server during the live ones.
- the page's rendering in the daemon's loop: CPU p50 1.50-1.84 ms, p95 2.41-2.91 ms;
  wall p50 1.65-2.05 ms, p95 7.5-10.6 ms (the run queue of a loaded machine).
- client side, one connection a scrape: p50 2.41-8.06 ms, p95 13.3-29.8 ms (17.7 ms with
  the daemon and the scraper at nice -10) at that load: the tail is the wait for a CPU,
  not the page's ~2 ms of CPU.
- The same machine idle (load average 0.1-0.9, three runs of 1000 scrapes, 49 families,
  117 series): client side p50 3.05 / 1.67 / 2.63 ms, p95 4.24 / 3.13 / 3.89 ms (median
  3.89 ms: the 5 ms goal is met), p99 6.52 / 3.60 / 5.54 ms; rendering CPU p95 2.38-2.43
  ms; RSS on 56.1 MiB against off 54.6 MiB (+1.5 MiB).
- RSS settled: off 53.9 MiB, on 55.3-55.4 MiB (+1.4 to +1.5 MiB: prometheus_client is
  imported only when metrics are on), +1.5 to +1.6 MiB after the 1000 scrapes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import cast

import anyio

from bench._daemon import Events, docker, remove_stack, supervised_stack
from supervisor.daemon import Daemon
from supervisor.engine import Engine
from supervisor.notify import Notifier
from supervisor.ports import EnginePort
from supervisor.settings import load_settings
from tests.callcounter import CallCounter
from tests.standin import standin_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"scrape failed: {answer[:200]!r}")
    return answer


def timed_scrapes(port: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        scrape(port)
        out.append(time.perf_counter() - began)
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def off_and_on(scrapes: int, settle: float, renice: int | None) -> dict[str, float]:
    figures: dict[str, float] = {}
    with supervised_stack() as daemon:
        time.sleep(settle)  # a fixed window: start-up work settles
        figures["rss_off"] = rss_mib(daemon.proc.pid)
    port = free_port()
    with supervised_stack({"HYOS_METRICS__LISTEN": f"127.0.0.1:{port}"}) as daemon:
        time.sleep(settle)
        figures["rss_on"] = rss_mib(daemon.proc.pid)
        if renice is not None:
            # The daemon and this scraper ahead of other work on a shared machine: the
            # latency of the code, not of the machine's run queue.
            os.setpriority(os.PRIO_PROCESS, daemon.proc.pid, renice)
            os.setpriority(os.PRIO_PROCESS, 0, renice)
        server = f"{daemon.name}-server"
        events = Events(f"container={server}", "event=exec_start")
        try:
            time.sleep(1)  # `docker events` is following
            latencies = timed_scrapes(port, scrapes)
            time.sleep(1)  # events of the last scrape's moment arrive
            curl = 0
            while not events.queue.empty():
                if str(events.queue.get().get("Action", "")).startswith("exec_start: curl"):
                    curl += 1
        finally:
            events.proc.terminate()
        figures["rss_on_after"] = rss_mib(daemon.proc.pid)
        figures["rest_calls_live"] = curl
        page = scrape(port).partition(b"\r\n\r\n")[2].decode()
    figures["p50_ms"] = statistics.median(latencies) * 1000
    figures["p95_ms"] = quantile(latencies, 0.95) * 1000
    figures["p99_ms"] = quantile(latencies, 0.99) * 1000
    figures["max_ms"] = max(latencies) * 1000
    figures["families"] = page.count("# TYPE ")
    figures["hyos_families"] = page.count("# TYPE hyos_")
    figures["series"] = sum(1 for line in page.splitlines() if line and line[0] != "#")
    figures["bytes"] = len(page)
    return figures


async def calls_in_process(scrapes: int, idle_s: float) -> dict[str, float]:
    """The daemon in this process over a stand-in stack, its engine counted."""
    name = f"b{uuid.uuid4().hex[:10]}"
    tmp = Path(tempfile.mkdtemp(prefix="hyos-bench-"))
    port = free_port()
    env = standin_env(name, tmp / "state", HYOS_METRICS__LISTEN=f"127.0.0.1:{port}")
    os.environ.update({k: v for k, v in env.items() if k.startswith("HYOS_")})
    ready = anyio.Event()

    class Ready(Notifier):
        def ready(self) -> bool:
            ready.set()
            return super().ready()

    try:
        settings = load_settings()
        async with Engine.connect(settings.docker_host, settings.docker_retries) as engine:
            counted = CallCounter(engine)
            daemon = Daemon(settings, cast(EnginePort, counted), Ready(environ={}))
            rendering: list[float] = []
            cpu: list[float] = []
            render_page = daemon.metrics_page

            def timed_page() -> bytes:
                began, began_cpu = time.perf_counter(), time.thread_time()
                try:
                    return render_page()
                finally:
                    rendering.append(time.perf_counter() - began)
                    cpu.append(time.thread_time() - began_cpu)

            daemon.metrics_page = timed_page  # type: ignore[method-assign]
            async with anyio.create_task_group() as group:
                group.start_soon(daemon.run)
                with anyio.fail_after(90):
                    await ready.wait()
                    while any(s.health != "healthy" for s in daemon.sup.services.values()):
                        await anyio.sleep(0.1)
                await anyio.sleep(2)  # the healthy events' follow-ups settle
                idle_engine, idle_api = counted.count, daemon.drains.api.calls
                began = time.monotonic()
                await anyio.sleep(idle_s)
                idle_window = time.monotonic() - began
                idle = (counted.count - idle_engine, daemon.drains.api.calls - idle_api)
                engine_before, api_before = counted.count, daemon.drains.api.calls
                began = time.monotonic()
                await anyio.to_thread.run_sync(timed_scrapes, port, scrapes)
                scrape_window = time.monotonic() - began
                during = (counted.count - engine_before, daemon.drains.api.calls - api_before)
                served = daemon.metrics.scrapes if daemon.metrics is not None else 0
                daemon._work_scope.cancel()  # as the first SIGTERM does: the stack stops
    finally:
        remove_stack(name)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "idle_window_s": idle_window,
        "idle_engine_calls": idle[0],
        "idle_rest_calls": idle[1],
        "scrape_window_s": scrape_window,
        "scrape_engine_calls": during[0],
        "scrape_rest_calls": during[1],
        "scrapes_served": served,
        "render_p50_ms": statistics.median(rendering) * 1000,
        "render_p95_ms": quantile(rendering, 0.95) * 1000,
        "render_cpu_p50_ms": statistics.median(cpu) * 1000,
        "render_cpu_p95_ms": quantile(cpu, 0.95) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scrapes", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument(
        "--renice", type=int, default=None, help="nice value for the daemon and the scraper"
    )
    args = parser.parse_args()
    docker("version")  # the engine answers
    live = off_and_on(args.scrapes, args.settle, args.renice)
    counts = anyio.run(calls_in_process, args.scrapes, 5.0)
    print(f"page: {live['families']:.0f} families ({live['hyos_families']:.0f} hyos_*), "
          f"{live['series']:.0f} series, {live['bytes']:.0f} bytes")  # fmt: skip
    nice = "" if args.renice is None else f", daemon and scraper at nice {args.renice}"
    print(f"scrape latency over {args.scrapes} scrapes (client side, one connection each{nice}): "
          f"p50 {live['p50_ms']:.2f} ms, p95 {live['p95_ms']:.2f} ms, "
          f"p99 {live['p99_ms']:.2f} ms, max {live['max_ms']:.2f} ms")  # fmt: skip
    print(f"REST calls (curl execs in the server) during the live scrapes: "
          f"{live['rest_calls_live']:.0f}")  # fmt: skip
    print(f"in-process daemon: {counts['scrapes_served']:.0f} scrapes in "
          f"{counts['scrape_window_s']:.2f} s made {counts['scrape_engine_calls']:.0f} engine "
          f"calls and {counts['scrape_rest_calls']:.0f} REST calls; an idle "
          f"{counts['idle_window_s']:.1f} s window without scrapes made "
          f"{counts['idle_engine_calls']:.0f} and {counts['idle_rest_calls']:.0f}")  # fmt: skip
    print(f"in-process daemon, the page's rendering (collect + exposition, in the loop): "
          f"p50 {counts['render_p50_ms']:.2f} ms, p95 {counts['render_p95_ms']:.2f} ms wall, "
          f"p50 {counts['render_cpu_p50_ms']:.2f} ms, p95 {counts['render_cpu_p95_ms']:.2f} ms CPU; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    per_scrape = counts["scrape_engine_calls"] / max(1.0, counts["scrapes_served"])
    delta = live["rss_on"] - live["rss_off"]
    print(f"RSS settled: off {live['rss_off']:.1f} MiB, on {live['rss_on']:.1f} MiB "
          f"({delta:+.1f} MiB), on after the scrapes {live['rss_on_after']:.1f} MiB "
          f"({live['rss_on_after'] - live['rss_off']:+.1f} MiB)")  # fmt: skip
    worst = max(delta, live["rss_on_after"] - live["rss_off"])
    print(f"goals: p95 <= 5 ms {'met' if live['p95_ms'] <= 5 else 'MISSED'}; "
          f"0 Docker calls per scrape {'met' if per_scrape == 0 else 'MISSED'}; "
          f"0 REST calls {'met' if live['rest_calls_live'] == counts['scrape_rest_calls'] == 0 else 'MISSED'}; "
          f"RSS <= +5 MB {'met' if worst <= 5 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
