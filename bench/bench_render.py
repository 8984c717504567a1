"""`hyos-supervisor render kubernetes -o DIR`, end to end, as a user runs it.

Run: ``python bench/bench_render.py [--runs R]``. Each run is a fresh process (interpreter
start, imports, settings, render, Pod Security self-check, YAML, files); the median of R
runs is reported, plus the in-process render + check alone. Goal: median < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYOS_")}
    cli = [sys.executable, "-m", "supervisor", "render", "kubernetes", "-o"]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            started = time.perf_counter()
            subprocess.run([*cli, f"{tmp}/{run}"], env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    from supervisor import kubernetes, podsecurity
    from supervisor.settings import load_settings

    settings = load_settings()
    inner = []
    for _ in range(args.runs):
        started = time.perf_counter()
        for obj in kubernetes.render(settings):
            podsecurity.check(obj)
        inner.append(time.perf_counter() - started)
    result = {
        "runs": args.runs,
        "cli_median_s": round(statistics.median(times), 3),
        "cli_max_s": round(max(times), 3),
        "render_and_check_median_ms": round(statistics.median(inner) * 1000, 2),
        "goal_s": 1.0,
    }
    print(json.dumps(result))
    return 0 if result["cli_median_s"] < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
