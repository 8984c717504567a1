"""HyOS's manager settings file: what the supervisor wires through the environment wins.

HyOS's manager merges defaults, its environment and ``/data/.state/manager-config.json``,
the file winning. Whenever it saves that file (first-run setup with the telemetry
opt-out, the settings page) it writes the whole merged config, and its update schema
(zod 4 applies ``.default()`` inside ``.partial()``) fills every absent key with HyOS's
defaults: ``serverHost``/``containerName`` ``hyos-server``, ``apiClientId``
``hyos-manager``, ``stateDir``, ``gamePort`` 30380, plus ``apiClientSecret`` copied from
the environment, mode 0644. From then on the dashboard ignores the supervisor's wiring
and a rotated API secret. The prepare step removes exactly those keys (the operator's
own choices, ``telemetryEnabled`` and the timestamps, stay) and keeps the file 0600.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from entrypoint.atomicfile import read_regular, replace_atomically
from entrypoint.contract import MANAGER_WIRED_KEYS

__all__ = ["WIRED_KEYS", "clean_manager_config"]

WIRED_KEYS = MANAGER_WIRED_KEYS
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(path: str) -> int | None:
    """The directory, every component opened without following a symlink; None if absent."""
    fd = os.open("/", _DIR)
    try:
        for part in [p for p in path.split("/") if p]:
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):
                return None
            os.close(fd)
            fd = child
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def clean_manager_config(path: str, owner: tuple[int, int] | None) -> dict[str, Any]:
    """Drop the wired keys from the file at `path` (atomically, 0600, owned by `owner`)
    and make it 0600 if nothing else; returns what was done, key names only."""
    result: dict[str, Any] = {"present": False, "dropped": [], "mode_fixed": False}
    directory, name = os.path.split(path)
    dfd = _open_dir(directory)
    if dfd is None:
        return result
    try:
        raw = read_regular(dfd, name)
        if raw is None:
            return result
        result["present"] = True
        try:
            config = json.loads(raw)
        except ValueError:
            config = None
        if not isinstance(config, dict):
            # Not HyOS's JSON object: the manager falls back to its environment anyway.
            result["unreadable"] = True
            return result
        dropped = [key for key in WIRED_KEYS if key in config]
        if dropped:
            kept = {k: v for k, v in config.items() if k not in WIRED_KEYS}
            data = (json.dumps(kept, indent=2) + "\n").encode()
            replace_atomically(dfd, name, data, 0o600, owner)
            result["dropped"] = dropped
            return result
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            # One name only: a hard link's other name may be outside the data (a host file).
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(fd, 0o600)
                result["mode_fixed"] = True
        finally:
            os.close(fd)
        return result
    finally:
        os.close(dfd)
