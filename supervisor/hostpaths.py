"""Pure: host paths a workload must never see, for settings and for `audit` alike."""

from __future__ import annotations

import posixpath

# Binding any of these, or anything under them, hands the host over: its root, its
# configuration and kernel interfaces, the engine's state and sockets, runtime state.
SENSITIVE = (
    "/",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/proc",
    "/root",
    "/run",
    "/sys",
    "/usr",
    "/var/lib/docker",
    "/var/run",
)


def normalize(path: str) -> str:
    """`//etc/../etc/x/` -> `/etc/x` (POSIX normpath keeps a leading `//`: strip it first)."""
    return posixpath.normpath("/" + path.lstrip("/"))


def is_sensitive(path: str) -> bool:
    """The root itself, or one of SENSITIVE or anything below it (`/` only exactly)."""
    normal = normalize(path)
    return normal == "/" or any(
        normal == top or normal.startswith(top + "/") for top in SENSITIVE if top != "/"
    )
