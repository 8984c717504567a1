"""Prepare (python -m entrypoint prepare) vs `chown -R` on 100,000 wrongly owned files.

Run as root: ``python bench/bench_perms.py [--files N] [--runs R] [--dir PARENT]``.
Both tools run as fresh processes, warm cache, on the same tree state; the median of R
runs is reported. First pass: every entry has the wrong owner. Second pass: the tree
is already correct after a prepare (the common boot), so the stamp lets unchanged
directories go un-stat'ed; `--full` (every entry stat'ed) is shown for comparison.
The prepare forks one walker per CPU; chown -R is single-threaded, so the load average
is printed: on a busy machine the ratio is worse than on a quiet one.
Goals: first <= 1.5x chown -R, second <= 0.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UID = GID = 568
WRONG = 1000


def build_tree(root: Path, files: int, per_dir: int = 100) -> int:
    """A world-like tree: nested dirs, files of a few bytes. Returns the entry count."""
    count = 0
    for d in range((files + per_dir - 1) // per_dir):
        sub = root / f"region{d // 50:03d}" / f"chunk{d:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(min(per_dir, files - d * per_dir)):
            fd = os.open(sub / f"f{f:03d}.bin", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"x")
            os.close(fd)
            count += 1
    return count + sum(1 for _ in root.rglob("*") if _.is_dir()) + 1


def set_owner(root: Path, uid: int) -> None:
    subprocess.run(["chown", "-R", f"{uid}:{uid}", str(root)], check=True)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None, help="parent directory of the tree (default: TMPDIR)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_perms: needs root (it chowns)", file=sys.stderr)
        return 2
    parent = Path(tempfile.mkdtemp(prefix="hyos-bench-perms-", dir=args.dir))
    root = parent / "data"
    root.mkdir()
    env_py = [
        sys.executable,
        "-m",
        "entrypoint",
        "prepare",
        "--user",
        f"{UID}:{GID}",
        "--prepare",
        str(root),
    ]
    chown = ["chown", "-R", f"{UID}:{GID}", str(root)]
    try:
        entries = build_tree(root, args.files)
        load_start = os.getloadavg()[0]
        first: dict[str, list[float]] = {"prepare": [], "chown": []}
        second: dict[str, list[float]] = {"prepare": [], "chown": [], "full": []}
        for _ in range(args.runs):
            # Alternate the order so neither tool always runs right after a reset.
            for tool in ("prepare", "chown") if _ % 2 == 0 else ("chown", "prepare"):
                set_owner(root, WRONG)
                first[tool].append(timed(env_py if tool == "prepare" else chown))
        set_owner(root, WRONG)
        timed(env_py)  # a complete prepare: correct tree and a fresh stamp
        for _ in range(args.runs):
            second["prepare"].append(timed(env_py))
            second["full"].append(timed([*env_py, "--full"]))
        for _ in range(args.runs):
            second["chown"].append(timed(chown))
        med = {
            "first_prepare": statistics.median(first["prepare"]),
            "first_chown": statistics.median(first["chown"]),
            "second_prepare": statistics.median(second["prepare"]),
            "second_chown": statistics.median(second["chown"]),
            "second_full": statistics.median(second["full"]),
        }
        r1 = med["first_prepare"] / med["first_chown"]
        r2 = med["second_prepare"] / med["first_chown"]
        r2b = med["second_prepare"] / med["second_chown"]
        load_end = os.getloadavg()[0]
        print(f"tree: {args.files} files, {entries} entries, median of {args.runs} runs")
        # The prepare splits the walk over every CPU, chown -R uses one: other work on the
        # machine slows the prepare more, so the ratio only means something on a quiet one.
        print(
            f"cpus {os.cpu_count()}, 1-min load average {load_start:.2f} at start,"
            f" {load_end:.2f} at end"
        )
        print(
            f"first pass   prepare {med['first_prepare']:.3f}s  chown -R {med['first_chown']:.3f}s"
            f"  ratio {r1:.2f}x (goal <= 1.5x)  {'OK' if r1 <= 1.5 else 'MISSED'}"
        )
        print(
            f"second pass  prepare {med['second_prepare']:.3f}s  vs chown -R on the wrong tree"
            f" {r2:.2f}x (goal <= 0.5x)  {'OK' if r2 <= 0.5 else 'MISSED'};"
            f" vs chown -R on the correct tree ({med['second_chown']:.3f}s) {r2b:.2f}x"
        )
        print(
            f"second pass with --full (every entry stat'ed) {med['second_full']:.3f}s"
            f"  {med['second_full'] / med['first_chown']:.2f}x"
        )
        print(
            json.dumps(
                {
                    "files": args.files,
                    "entries": entries,
                    "runs": args.runs,
                    "load_avg": [round(load_start, 2), round(load_end, 2)],
                    **{k: round(v, 4) for k, v in med.items()},
                    "ratio_first": round(r1, 3),
                    "ratio_second": round(r2, 3),
                    "ratio_second_vs_chown_correct": round(r2b, 3),
                }
            )
        )
        return 0
    finally:
        shutil.rmtree(parent)


if __name__ == "__main__":
    raise SystemExit(main())
