"""Memory of HyOS's real manager while a world is uploaded through its dashboard.

Run: python -m bench.bench_manager_upload [--mb 500] [--memory 512m] [--env K=V ...]
Needs the engine, the helper image (sh scripts/build-image.sh), HyOS's real manager
(bash tests/upstream/build-manager.sh) and the server replica (bash tests/upstream/build-server.sh).

Brings a stack up with `hyos-supervisor up` (the supervisor's hardening and settings;
`--memory` is the manager's limit, unset = the supervisor's default), creates the admin,
then POSTs a world zip of `--mb` MB to /api/worlds/slots (HyOS's world upload, which
accepts up to 500 MB) streamed from disk, while sampling the manager's cgroup. Prints
the outcome (the slot created, or the OOM kill), the wall time, the cgroup's high-water
mark (page cache included) and the peak of what cannot be reclaimed (rss + tmpfs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.harness import REPO, poll
from tests.standin import remove_stack_objects, standin_env
from tests.upstream.dashboard import (
    MANAGER_IMAGE,
    Dashboard,
    MemorySampler,
    world_zip,
)
from tests.upstream.replica import injected_tokens, replica_env

MIB = 1 << 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="size of the world zip (MB)")
    parser.add_argument("--memory", help="the manager's memory limit (default: the setting's)")
    parser.add_argument("--env", action="append", default=[], help="extra HYOS_* settings K=V")
    args = parser.parse_args()

    import subprocess

    stack = f"bench{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        env = standin_env(stack, Path(tmp) / "state")
        env.update(replica_env(injected_tokens()))
        env["HYOS_MANAGER__IMAGE"] = MANAGER_IMAGE
        env["HYOS_MANAGER__HEALTHCHECK"] = json.dumps({"interval": 1, "start_period": 0.001})
        env["HYOS_MANAGER__CPUS"] = "1.0"
        env.pop("HYOS_MANAGER__MEMORY")
        if args.memory:
            env["HYOS_MANAGER__MEMORY"] = args.memory
        env.update(item.split("=", 1) for item in args.env)
        world = world_zip(Path(tmp) / "world.zip", args.mb)
        try:
            up = subprocess.run(
                [sys.executable, "-m", "supervisor", "up", "--wait", "--timeout", "120"],
                env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            if up.returncode != 0:
                print(up.stdout + up.stderr, file=sys.stderr)
                return 1
            manager = f"{stack}-manager"
            info = json.loads(subprocess.check_output(["docker", "inspect", manager]))[0]
            limit = info["HostConfig"]["Memory"]
            dash = Dashboard.of(manager)
            poll(dash.answers, 60, "the dashboard")
            assert dash.setup().status == 200
            started = time.monotonic()
            with MemorySampler(info["Id"]) as sampler:
                try:
                    reply = dash.upload("/api/worlds/slots", world)
                    outcome = f"HTTP {reply.status} {reply.body[:200].decode(errors='replace')}"
                except OSError as err:
                    outcome = f"connection failed: {err!r}"
                elapsed = time.monotonic() - started
            state = json.loads(subprocess.check_output(["docker", "inspect", manager]))[0]["State"]
            peak = sampler.kernel_peak or 0
            print(
                f"world {args.mb} MB ({world.stat().st_size / MIB:.0f} MiB), manager limit "
                f"{limit / MIB:.0f} MiB, TMPDIR {dict(e.split('=', 1) for e in info['Config']['Env']).get('TMPDIR', '/tmp (tmpfs)')}\n"
                f"  outcome: {outcome}\n"
                f"  OOM killed: {state['OOMKilled']}, restarts: {state.get('RestartCount', 0)}, "
                f"exit code: {state['ExitCode']}, running: {state['Running']}\n"
                f"  time: {elapsed:.1f} s\n"
                f"  cgroup high-water mark (page cache included): {peak / MIB:.0f} MiB\n"
                f"  peak rss + tmpfs (cannot be reclaimed): {sampler.peak_unreclaimable / MIB:.0f} MiB"
            )
        finally:
            remove_stack_objects(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
