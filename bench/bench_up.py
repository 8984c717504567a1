"""`hyos-supervisor up --wait` against `docker-compose up` + waiting until healthy.

Both bring up the same stand-in images with the same health checks, the same hardening
and the same order (server healthy, then manager), from nothing, and return when both
are healthy. Pairs compare like with like: without a permission step, and with the
supervisor's prepare step beside a compose one-shot `chown -R` service. Compose gets `depends_on: condition: service_healthy` and a 0.1 s inspect
poll for the last service (what a careful operator's script would do).

    python -m bench.bench_up [--runs 7]

Prints each tool's median wall time and the ratio supervisor / compose (goal <= 1.0).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.harness import REPO
from tests.standin import MANAGER_IMAGE as MANAGER
from tests.standin import SERVER_IMAGE as SERVER
from tests.standin import standin_env

COMPOSE = """\
version: "2.4"
services:
  server:
    image: {server}
    user: "568:568"
    read_only: true
    tmpfs: ["/tmp:uid=568,gid=568,mode=0700", "/home/hytale:uid=568,gid=568,mode=0700"]
    cap_drop: [ALL]
    security_opt: ["no-new-privileges:true"]
    mem_limit: 128m
    cpus: 0.5
    pids_limit: 2048
    init: true
    volumes: ["data:/data"]
    networks: [net]
  manager:
    image: {manager}
    user: "568:568"
    read_only: true
    tmpfs: ["/tmp:uid=568,gid=568,mode=0700"]
    cap_drop: [ALL]
    security_opt: ["no-new-privileges:true"]
    mem_limit: 64m
    cpus: 0.5
    pids_limit: 512
    init: true
    volumes: ["data:/data"]
    networks: [net]
    depends_on:
      server:
        condition: service_healthy
volumes:
  data: {{}}
networks:
  net: {{}}
"""

# What a compose user adds for the supervisor's prepare step: a one-shot root service that
# fixes /data's ownership before the server starts (compose 1.29 knows this condition).
PREPARE_SERVICE = """\
  prepare:
    image: {server}
    user: "0:0"
    command: ["chown", "-R", "568:568", "/data"]
    network_mode: none
    cap_drop: [ALL]
    cap_add: [CHOWN, FOWNER, DAC_OVERRIDE]
    security_opt: ["no-new-privileges:true"]
    read_only: true
    volumes: ["data:/data"]
"""


def compose_with_prepare(text: str) -> str:
    """The same file, with the server waiting for the prepare service to finish."""
    text = text.replace("services:\n", "services:\n" + PREPARE_SERVICE.format(server=SERVER), 1)
    return text.replace(
        "    networks: [net]\n  manager:",
        "    networks: [net]\n    depends_on:\n      prepare:\n"
        "        condition: service_completed_successfully\n  manager:",
        1,
    )


def run(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"{args} failed: {done.stderr.strip()[-2000:]}")


def healthy(name: str) -> bool:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() == "healthy"


def time_compose(compose_file: Path, project: str) -> float:
    start = time.perf_counter()
    run("docker-compose", "-p", project, "-f", str(compose_file), "up", "-d")
    while not healthy(f"{project}_manager_1"):
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    run("docker-compose", "-p", project, "-f", str(compose_file), "down", "-v", "-t", "5")
    return elapsed


def supervisor_env(stack: str, prepare: bool, state: Path) -> dict[str, str]:
    return standin_env(
        stack,
        state,
        HYOS_SERVER__PORTS="[]",
        HYOS_MANAGER__PORTS="[]",
        HYOS_PREPARE="true" if prepare else "false",
    )


def time_supervisor(env: dict[str, str]) -> float:
    command = [sys.executable, "-m", "supervisor", "--log-format", "json"]
    start = time.perf_counter()
    run(*command, "up", "--wait", env=env)
    elapsed = time.perf_counter() - start
    run(*command, "down", "--volumes", env=env)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    run("bash", "tests/images/build.sh")
    run("sh", "scripts/build-image.sh")
    with tempfile.TemporaryDirectory() as tmp:
        compose_file = Path(tmp) / "compose.yaml"
        compose_file.write_text(COMPOSE.format(server=SERVER, manager=MANAGER))
        prepared_file = Path(tmp) / "compose-prepare.yaml"
        prepared_file.write_text(compose_with_prepare(compose_file.read_text()))
        results: dict[str, list[float]] = {
            "compose": [],
            "supervisor": [],
            "compose+prepare": [],
            "supervisor+prepare": [],
        }
        for i in range(args.runs):
            # Interleaved, so machine noise hits every tool alike.
            results["compose"].append(time_compose(compose_file, f"benchup{i}"))
            plain = supervisor_env(f"benchup{i}", False, Path(tmp) / "state")
            results["supervisor"].append(time_supervisor(plain))
            results["compose+prepare"].append(time_compose(prepared_file, f"benchupc{i}"))
            full = supervisor_env(f"benchupp{i}", True, Path(tmp) / "state")
            results["supervisor+prepare"].append(time_supervisor(full))
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"runs: {args.runs} (interleaved), median wall time until both services are healthy")
    for name, median in medians.items():
        print(f"  {name:<20} {median:6.2f} s")
    print("like for like:")
    for ours, theirs in (("supervisor", "compose"), ("supervisor+prepare", "compose+prepare")):
        ratio = medians[ours] / medians[theirs]
        print(f"  {ours} / {theirs}: {ratio:4.2f}x (goal <= 1.0)")
    print(
        f"  supervisor+prepare / compose: {medians['supervisor+prepare'] / medians['compose']:4.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
