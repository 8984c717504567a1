"""The daemon's state file: atomic JSON writes and forgiving reads.

A kill -9 at any instant must leave either the old or the new file, never a torn
one: write a private temp file in the same directory, fsync it, rename it over the
target, then fsync the directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entrypoint.contract import replace_atomically

__all__ = [
    "DEFAULT_STATE_DIR",
    "default_state_dir",
    "ensure_dir",
    "read_json",
    "remove_stale_temp_files",
    "write_json_atomic",
]

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path("/var/lib/hyos-supervisor")
_TMP_SUFFIX = ".tmp"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$STATE_DIRECTORY (systemd's StateDirectory=; first entry if several), else
    /var/lib/hyos-supervisor."""
    env = os.environ if environ is None else environ
    first = env.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(first) if first else DEFAULT_STATE_DIR


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    """Create the state directory if missing (private by default); leaves an existing
    directory's mode alone (systemd or the operator chose it)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    return path


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically, mode 0600 (the entrypoint's
    writer: temp file, fsync, rename, directory fsync).

    Raises on failure (full disk, bad data); the previous file is then untouched and
    the temp file removed.
    """
    path = Path(path)
    # Serialise first: a value that cannot be encoded must not cost us a temp file.
    payload = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        replace_atomically(dfd, path.name, payload, 0o600)
    finally:
        os.close(dfd)


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object stored at ``path``; None when missing or unreadable.

    Never raises for a bad file: a corrupt state file is logged and the daemon starts
    from fresh state (it re-adopts containers by label anyway).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read state file %s: %s", path, exc, extra={"path": str(path)})
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("ignoring corrupt state file %s: %s", path, exc, extra={"path": str(path)})
        return None
    if not isinstance(data, dict):
        log.warning(
            "ignoring state file %s: top level is %s, not an object",
            path,
            type(data).__name__,
            extra={"path": str(path)},
        )
        return None
    return data


def remove_stale_temp_files(path: str | os.PathLike[str]) -> int:
    """Delete temp files a kill -9 left behind for ``path``; call once at startup
    (only one writer exists, so any such file is an orphan). Returns how many."""
    path = Path(path)
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*{_TMP_SUFFIX}"):
        try:
            tmp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
