"""Open a file's parent directory without following a symlink planted as that parent."""

from __future__ import annotations

import contextlib
import os

__all__ = ["open_parent"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def open_parent(path: str, *, create_mode: int = 0o755) -> tuple[int, str]:
    """Return (fd of the parent directory, base name). The parent's last component
    (e.g. ``.hyos`` in an attacker-writable ``/data``) is created if missing and must
    not be a symlink; the components above it belong to the image or the operator."""
    path = os.path.abspath(path)  # noqa: PTH100 - must not resolve symlinks
    parent, name = os.path.split(path)
    grand, last = os.path.split(parent)
    gfd = os.open(grand or "/", _DIR)
    try:
        if not last:
            return os.dup(gfd), name
        with contextlib.suppress(FileExistsError):
            os.mkdir(last, create_mode, dir_fd=gfd)
        return os.open(last, _DIR | os.O_NOFOLLOW, dir_fd=gfd), name
    finally:
        os.close(gfd)
