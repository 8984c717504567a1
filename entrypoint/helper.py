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

__all__ = ["parse_events", "prepare_command"]


def prepare_command(
    uid: int,
    gid: int,
    paths: Sequence[str],
    *,
    machine_id: str | None = None,
    python: str = "python3",
) -> list[str]:
    """The container command (Cmd) of the prepare step."""
    cmd = [python, "-m", "entrypoint", "--user", f"{uid}:{gid}"]
    if machine_id is not None:
        cmd += ["--machine-id", machine_id]
    for path in paths:
        cmd += ["--prepare", path]
    return cmd


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
