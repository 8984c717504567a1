"""Pure: which of HyOS's game logs to compress and which to delete (issue 27), given
their names, sizes and mtimes and the time now. No I/O: supervisor/gamelogs.py lists the
files and carries the plan out through a one-shot helper container.

HyOS never prunes `Server/logs` (one file per server start) nor `/data/logs`, and its
dashboard re-reads every log file on each request. The rules, per directory:
- the newest file is never touched: the server may still be writing it (compressing an
  open log would send its next lines to an unlinked file);
- a log (not `.gz`) older than `compress_after` is gzipped beside itself;
- any file older than `remove_after` is deleted;
- then, while the directories together hold more than `max_bytes`, the oldest file is
  deleted (a file to be compressed counted at its size now: the next run, with the real
  `.gz` sizes, deletes only what is still too much).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Action", "LogFile", "LogPolicy", "plan"]

# Where HyOS's server runs (its SERVER_DIR, the JVM's cwd: lib/download.sh finds the game
# at /data/Server, the common layout, or /data/game/Server; entrypoint.sh's default is
# /data/server): each one's logs/ holds a <date>_server.log per start.
SERVER_DIRS = ("/data/Server", "/data/game/Server", "/data/server")
SERVER_LOG_DIRS = tuple(f"{d}/logs" for d in SERVER_DIRS)
# HyOS's own logs (cmd/auto-update.sh's auto-update.log, the class-loading log).
HYOS_LOG_DIR = "/data/logs"
DIRS = (*SERVER_LOG_DIRS, HYOS_LOG_DIR)


@dataclass(frozen=True, slots=True)
class LogFile:
    path: str
    size: int
    mtime: float

    @property
    def directory(self) -> str:
        return self.path.rpartition("/")[0]

    @property
    def compressed(self) -> bool:
        return self.path.endswith(".gz")


@dataclass(frozen=True, slots=True)
class LogPolicy:
    compress_after_s: float = 86400.0
    remove_after_s: float = 7 * 86400.0
    max_bytes: int = 200 * 1000**2


@dataclass(frozen=True, slots=True)
class Action:
    op: str  # gzip | delete
    path: str
    why: str  # age | total

    def step(self) -> dict[str, str]:
        return {"op": self.op, "path": self.path}


def _newest_per_dir(files: Iterable[LogFile]) -> set[str]:
    newest: dict[str, LogFile] = {}
    for f in files:
        best = newest.get(f.directory)
        if best is None or (f.mtime, f.path) > (best.mtime, best.path):
            newest[f.directory] = f
    return {f.path for f in newest.values()}


def plan(files: Sequence[LogFile], now: float, policy: LogPolicy) -> list[Action]:
    """The actions, deletions by age first, then compressions, then deletions for the
    total (oldest first)."""
    live = _newest_per_dir(files)
    actions: list[Action] = []
    remaining: list[LogFile] = []
    for f in sorted(files, key=lambda f: (f.mtime, f.path)):
        age = now - f.mtime
        if f.path in live:
            remaining.append(f)
        elif age > policy.remove_after_s:
            actions.append(Action("delete", f.path, "age"))
        else:
            if not f.compressed and age > policy.compress_after_s:
                actions.append(Action("gzip", f.path, "age"))
            remaining.append(f)
    total = sum(f.size for f in remaining)
    for f in remaining:  # oldest first
        if total <= policy.max_bytes:
            break
        if f.path in live:
            continue
        actions = [a for a in actions if a.path != f.path]
        actions.append(Action("delete", f.path, "total"))
        total -= f.size
    order = {"age": 0, "total": 2}
    return sorted(
        actions,
        key=lambda a: (order[a.why] if a.op == "delete" else 1, a.path),
    )
