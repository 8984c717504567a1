"""The game-log helper's shell (issue 27): runs `entrypoint.logjob` in a hardened
one-shot container on the data volume (the supervisor never mounts the volume itself),
for the crash reports' tails and for bounding HyOS's logs, and the daemon's loop that
prunes once at its start and then every `[logs] every`. What to prune is decided by
supervisor/logprune.py.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from entrypoint.contract import parse_events
from supervisor import logprune, policy
from supervisor.crashreport import FileTail
from supervisor.dockertypes import EngineError
from supervisor.logs import BoundLogger
from supervisor.ports import EnginePort
from supervisor.roles import Role
from supervisor.settings import Settings
from supervisor.stack import data_mount
from supervisor.statefile import ensure_dir
from supervisor.store import state_dir_for

__all__ = [
    "LogJobError",
    "next_prune_in",
    "prune",
    "prune_once",
    "run_job",
    "run_schedule",
    "tails",
]

log = logging.getLogger("supervisor.gamelogs")

JOB_TIMEOUT_S = 600.0
# The largest number of files changed by one run (the request is the helper's argument).
BATCH = 200


class LogJobError(Exception):
    """The helper could not be run or did not answer."""


async def run_job(
    engine: EnginePort,
    settings: Settings,
    steps: list[dict[str, Any]],
    writable: bool = False,
    timeout: float = JOB_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """One helper run: each step's answer line, in order."""
    # A name of its own per run: a crash report's read-only run may meet the daily prune.
    name = f"{settings.container_name(Role.LOGS)}-{secrets.token_hex(3)}"
    spec = policy.LogJobSpec(
        stack=settings.stack,
        image=settings.helper_image,
        uid=settings.server.user.uid,
        gid=settings.server.user.gid,
        data=data_mount(settings),
        request=json.dumps({"steps": steps}),
        data_writable=writable,
        log_max_size=settings.log_max_size,
    )
    code, out, err = await engine.run_once(name, policy.build_logs_body(spec), None, timeout)
    answers = sorted(parse_events(out, key="step"), key=lambda e: int(e["step"]))
    if code not in (0, 1) or not answers:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise LogJobError(f"the log helper exited {code}: {last}")
    return [dict(a) for a in answers]


def _files(answer: dict[str, Any]) -> list[FileTail]:
    found = []
    for item in answer.get("files") or ():
        tail = base64.b64decode(item["tail"]) if item.get("tail") else b""
        found.append(FileTail(str(item["path"]), int(item["size"]), float(item["mtime"]), tail))
    return found


async def tails(
    engine: EnginePort,
    settings: Settings,
    wanted: list[tuple[str, str]],
    keep_bytes: int,
    read: tuple[str, list[str]] | None = None,
) -> list[FileTail]:
    """The two newest files matching each (directory, glob), with their last bytes; and
    the files `read` names (a directory and names), whole up to 1 MiB. One helper run."""
    steps: list[dict[str, Any]] = [
        {"op": "tails", "dir": d, "glob": g, "newest": 2, "bytes": keep_bytes} for d, g in wanted
    ]
    if read is not None:
        steps.append({"op": "read", "dir": read[0], "names": read[1], "bytes": 1 << 20})
    answers = await run_job(engine, settings, steps, timeout=30)
    return [f for a in answers if a.get("code") == 0 for f in _files(a)]


async def listing(engine: EnginePort, settings: Settings) -> list[logprune.LogFile]:
    answers = await run_job(engine, settings, [{"op": "list", "dir": d} for d in logprune.DIRS])
    return [
        logprune.LogFile(f.path, f.size, f.mtime)
        for a in answers
        if a.get("code") == 0
        for f in _files(a)
    ]


async def prune(
    engine: EnginePort, settings: Settings, now: Callable[[], float] = time.time
) -> dict[str, int]:
    """List, plan, act; again while the plan (now with the `.gz` sizes) is not empty, at
    most three times. Counts of what was done."""
    done = {"gzipped": 0, "deleted": 0, "failed": 0, "freed_bytes": 0}
    for _ in range(3):
        actions = logprune.plan(await listing(engine, settings), now(), settings.logs.policy())
        if not actions:
            break
        for start in range(0, len(actions), BATCH):
            batch = [a.step() for a in actions[start : start + BATCH]]
            for answer in await run_job(engine, settings, batch, writable=True):
                if answer.get("code") != 0:
                    done["failed"] += 1
                    log.warning(
                        "a log file could not be pruned", extra={"error": answer.get("error")}
                    )
                elif answer.get("op") == "gzip":
                    done["gzipped"] += 1
                    done["freed_bytes"] += int(answer.get("was", 0)) - int(answer.get("size", 0))
                else:
                    done["deleted"] += 1
                    done["freed_bytes"] += int(answer.get("freed", 0))
    return done


def _stamp_path(settings: Settings) -> Path:
    """The state dir's mark of the last prune (its mtime): `every` holds across daemon
    restarts, so a daemon restarted daily still prunes daily."""
    return state_dir_for(settings) / f"{settings.stack}.logs-pruned"


def next_prune_in(settings: Settings, now: float) -> float:
    """Seconds until the next prune: `[logs] every` after the last one, and never sooner
    than `[logs] first_after` (the stack settles first)."""
    first = float(settings.logs.first_after)
    try:
        last = _stamp_path(settings).stat().st_mtime
    except OSError:
        return first
    return max(first, last + float(settings.logs.every) - now)


def _mark_pruned(settings: Settings) -> None:
    path = _stamp_path(settings)
    try:
        ensure_dir(path.parent)
        path.touch(mode=0o600)
        os.utime(path)
    except OSError as err:
        log.warning("cannot mark the game logs pruned", extra={"error": str(err)})


async def prune_once(engine: EnginePort, settings: Settings, logger: BoundLogger) -> None:
    """One daily turn: prune, logged when it did something; a failure is logged and tried
    again at the next turn (the logs only grow meanwhile)."""
    try:
        if not await engine.image_exists(settings.helper_image):
            logger.warning(
                f"the helper image {settings.helper_image} is missing: game logs are not "
                "bounded; build or pull it (helper_image)"
            )
            return
        done = await prune(engine, settings)
        if done["gzipped"] or done["deleted"] or done["failed"]:
            logger.info("game logs bounded", extra=done)
    except (EngineError, LogJobError) as err:
        logger.warning("bounding the game logs failed", extra={"error": str(err)})
    finally:
        _mark_pruned(settings)


async def run_schedule(engine: EnginePort, settings: Settings, logger: BoundLogger) -> None:
    """Prune every `[logs] every` (daily), the first time `[logs] first_after` after the start
    unless the state dir says a prune was done less than `every` ago."""
    while True:
        await anyio.sleep(next_prune_in(settings, time.time()))
        await prune_once(engine, settings, logger)
