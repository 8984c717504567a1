"""Recovery after the engine restarts: the supervisor beside Docker's own restart policy.

Run: python -m bench.bench_dockerd_restart [--rounds 5]
Needs root (it restarts THE dockerd of this machine, several times: nothing else may use the
engine meanwhile), the engine and the stand-in images (bash tests/images/build.sh).

Per round, dockerd is stopped with SIGTERM (it stops every container first) and started
again with its own command line; the clock starts when `docker version` answers again and
stops when both services are running and healthy by the engine's own health checks.
- Supervisor: a stand-in stack under `hyos-supervisor run`. Its containers have restart
  policy `no`, so the engine leaves them stopped and the daemon brings them back: it
  reconnects its event stream, runs a stack pass, starts the server, waits until it is
  healthy, then the manager. The breakdown comes from the daemon's log.
- Docker: the same two images with the same hardening and `--restart unless-stopped`,
  which the engine itself starts again when it comes up (both at once, no order).

Found with it: the exits a dockerd shutdown causes count as failures (the manager's exit
143), so a few dockerd restarts within the crash window put a service in a crash loop; the
bench lifts the limit to measure recovery alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from bench._daemon import docker, log_time, median_ms, supervised_stack, wait_for
from tests.harness import restart_dockerd
from tests.standin import MANAGER_IMAGE, SERVER_IMAGE

HARDENED = [
    "--user", "568:568", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
    "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,uid=568,gid=568,mode=0700",
    "--memory", "128m", "--memory-swap", "128m", "--cpus", "0.5", "--pids-limit", "2048",
    "--init", "--log-opt", "max-size=10m",
]  # fmt: skip


def healthy(*containers: str) -> bool:
    out = docker(
        "inspect", "-f", "{{.State.Running}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
        *containers, check=False,
    )  # fmt: skip
    lines = out.splitlines()
    return len(lines) == len(containers) and all(line == "true healthy" for line in lines)


def restart_and_time(log: Path, *containers: str) -> tuple[float, float]:
    """(engine back at, both healthy at), epoch seconds."""
    restart_dockerd(log)
    back = time.time()
    wait_for(lambda: healthy(*containers), 180, f"{containers} healthy", interval=0.05)
    return back, time.time()


def bench_supervisor(rounds: int, log: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"total": [], "reconnect": [], "server": [], "manager": []}
    # A dockerd shutdown stops the containers (exit 143 for a process that does not catch
    # SIGTERM), which the daemon counts as failures: rounds seconds apart would add up to
    # a crash loop. The limit is out of reach here; see the module doc.
    settings = {"HYOS_RESTART__BACKOFF_BASE_S": "0.1", "HYOS_RESTART__CRASH_LOOP_LIMIT": "100000"}
    with supervised_stack(settings) as daemon:
        server, manager = f"{daemon.name}-server", f"{daemon.name}-manager"
        wait_for(lambda: healthy(server, manager), 120, "the stack healthy")
        for n in range(1, rounds + 1):
            try:
                back, done = restart_and_time(log, server, manager)
            except TimeoutError:
                print(docker("ps", "-a", "--filter", f"name={daemon.name}", check=False))
                for line in daemon.lines()[-40:]:
                    print(line)
                raise
            found["total"].append(done - back)
            reconnected = daemon.wait_lines("event stream reconnected", n, 30)[n - 1]
            found["reconnect"].append(log_time(reconnected["timestamp"]) - back)
            found["server"].append(_started(server) - back)
            found["manager"].append(_started(manager) - back)
    return found


def _started(container: str) -> float:
    stamp = docker("inspect", "-f", "{{.State.StartedAt}}", container)
    # Docker's RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
    head, _, frac = stamp.rstrip("Z").partition(".")
    return log_time(f"{head}.{(frac + '000000')[:6]}+00:00")


def bench_docker(rounds: int, log: Path) -> dict[str, list[float]]:
    tag = uuid.uuid4().hex[:8]
    network = f"hyos-bench-net-{tag}"
    names = [f"hyos-bench-{tag}-server", f"hyos-bench-{tag}-manager"]
    docker("network", "create", network)
    try:
        for name, image in zip(names, (SERVER_IMAGE, MANAGER_IMAGE), strict=True):
            docker(
                "run", "-d", "--name", name, "--restart", "unless-stopped", "--network", network,
                *HARDENED, image,
            )  # fmt: skip
        wait_for(lambda: healthy(*names), 120, "the containers healthy")
        totals = []
        for _ in range(rounds):
            back, done = restart_and_time(log, *names)
            totals.append(done - back)
        return {"total": totals}
    finally:
        docker("rm", "-f", *names, check=False)
        docker("network", "rm", network, check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="hyos-bench-dockerd-")) / "dockerd.log"
    sup = bench_supervisor(args.rounds, log)
    dock = bench_docker(args.rounds, log)
    total, reference = median_ms(sup["total"]), median_ms(dock["total"])
    print(f"dockerd restarts per side: {args.rounds}; clock from `docker version` answering")
    print(
        f"headline: engine back -> both healthy, supervisor / docker --restart unless-stopped: "
        f"{total / reference:5.2f}x  ({total:.0f} ms / {reference:.0f} ms)"
    )
    print("supervisor, median from the engine answering again:")
    print(f"  event stream reconnected   {median_ms(sup['reconnect']):8.0f} ms")
    print(f"  server started             {median_ms(sup['server']):8.0f} ms")
    print(f"  manager started            {median_ms(sup['manager']):8.0f} ms")
    print(f"  both healthy               {total:8.0f} ms   (max {max(sup['total']) * 1000:.0f} ms)")
    print(
        f"docker: both healthy         {reference:8.0f} ms   (max {max(dock['total']) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
