"""What the supervisor and the containers agree on, and the only module the supervisor
imports from this package: labels, in-container paths, the prepare step's argv (one
builder here, one parser: the entrypoint's own) and what it prints.

Its own code is pure. It also re-exports two helpers that do I/O, so the supervisor
writes files and makes secrets exactly as the prepare step does: `replace_atomically`
(writes a file) and `generate_secret` (reads the OS's randomness). The prepare step
runs, as root in the helper image::

    python3 -m entrypoint prepare --user UID:GID [--machine-id FILE] [--file-env-shim FILE]
        [--secrets DIR [--secret NAME]... [--forget NAME]... [--rotate NAME]...
         [--secrets-stdin]] [--manager-config FILE] --prepare PATH...

and prints one JSON object per stdout line (``{"event": ..., ...}``): `machine_id`,
`secrets`, `file_env_shim`, `manager_config`, `prepared`, `prepare_skipped`. Exit code 0
means every path is prepared; otherwise see :mod:`entrypoint.errors`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from entrypoint.atomicfile import replace_atomically
from entrypoint.file_env import SHIM
from entrypoint.secretfiles import generate_secret

__all__ = [
    "LABEL_MANAGED",
    "LABEL_ROLE",
    "LABEL_SPEC_HASH",
    "LABEL_STACK",
    "MANAGER_WIRED_KEYS",
    "PREPARE_ENTRYPOINT",
    "SHIM",
    "PrepareRequest",
    "generate_secret",
    "parse_events",
    "prepare_argv",
    "replace_atomically",
]

# Every object the supervisor makes carries these.
LABEL_MANAGED = "io.hyos.managed"
LABEL_STACK = "io.hyos.stack"
LABEL_ROLE = "io.hyos.role"
LABEL_SPEC_HASH = "io.hyos.spec-hash"

# Set as the container's Entrypoint explicitly, so the step does not depend on the
# helper image's own ENTRYPOINT.
PREPARE_ENTRYPOINT: tuple[str, ...] = ("python3", "-m", "entrypoint", "prepare")

# What the supervisor gives HyOS's manager through its environment (the wiring and the
# secret files): a copy saved in its manager-config.json only goes stale.
MANAGER_WIRED_KEYS = (
    "serverHost",
    "serverPort",
    "containerName",
    "apiClientId",
    "apiClientSecret",
    "stateDir",
    "gamePort",
)


@dataclass(frozen=True)
class PrepareRequest:
    """One run of the prepare step."""

    uid: int
    gid: int
    paths: tuple[str, ...]
    machine_id: str | None = None
    file_env_shim: str | None = None
    secrets_dir: str | None = None
    secrets: tuple[str, ...] = ()
    forget: tuple[str, ...] = ()
    rotate: tuple[str, ...] = ()
    secrets_on_stdin: bool = False
    manager_config: str | None = None


def prepare_argv(request: PrepareRequest) -> list[str]:
    """The container Cmd of the prepare step (the arguments after PREPARE_ENTRYPOINT)."""
    args = ["--user", f"{request.uid}:{request.gid}"]
    if request.machine_id is not None:
        args += ["--machine-id", request.machine_id]
    if request.file_env_shim is not None:
        args += ["--file-env-shim", request.file_env_shim]
    if request.secrets_dir is not None:
        args += ["--secrets", request.secrets_dir]
        for flag, names in (
            ("--secret", request.secrets),
            ("--forget", request.forget),
            ("--rotate", request.rotate),
        ):
            for name in names:
                args += [flag, name]
        if request.secrets_on_stdin:
            args.append("--secrets-stdin")
    if request.manager_config is not None:
        args += ["--manager-config", request.manager_config]
    for path in request.paths:
        args += ["--prepare", path]
    return args


def parse_events(stdout: str, key: str = "event") -> list[dict[str, Any]]:
    """The JSON events (objects with `key`) from a helper's stdout: the prepare step's
    (`event`), the backup helper's (`step`); other lines are ignored."""
    events: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and key in obj:
            events.append(obj)
    return events
