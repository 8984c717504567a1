"""The contract of the supervisor's one-shot prepare step (pure; no I/O).

The supervisor runs, as root in its helper image::

    python3 -m entrypoint --user UID:GID --machine-id FILE --prepare PATH [--prepare PATH]...

and reads one JSON object per stdout line:

- ``{"event":"machine_id","path":FILE,"created":bool}``
- ``{"event":"prepared","path":P,"uid":U,"gid":G,"scanned":N,"changed":N,"skipped":N,
  "failed":N,"skipped_paths":[...],"failures":[...],"seconds":F}`` (lists hold at most
  20 examples; the counts are exact)
- ``{"event":"prepare_skipped","path":P,"reason":"not root","uid":U,"writable":bool}``

Exit code 0 means every path is prepared; otherwise see :mod:`entrypoint.errors`, and
stderr holds one line saying why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["PREPARE_ENTRYPOINT", "parse_events", "prepare_args", "prepare_command"]

# Set as the container's Entrypoint explicitly, so the step does not depend on the
# helper image's own ENTRYPOINT (today the same, but images change).
PREPARE_ENTRYPOINT: tuple[str, ...] = ("python3", "-m", "entrypoint")


def prepare_args(
    uid: int, gid: int, paths: Sequence[str], *, machine_id: str | None = None
) -> list[str]:
    """The container Cmd of the prepare step (arguments after PREPARE_ENTRYPOINT)."""
    args = ["--user", f"{uid}:{gid}"]
    if machine_id is not None:
        args += ["--machine-id", machine_id]
    for path in paths:
        args += ["--prepare", path]
    return args


def prepare_command(
    uid: int, gid: int, paths: Sequence[str], *, machine_id: str | None = None
) -> list[str]:
    """The whole argv, as one list (e.g. for ``docker run --entrypoint``-less use)."""
    return [*PREPARE_ENTRYPOINT, *prepare_args(uid, gid, paths, machine_id=machine_id)]


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """The JSON events from the prepare step's stdout; other lines are ignored."""
    events: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "event" in obj:
            events.append(obj)
    return events
