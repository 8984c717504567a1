"""A stable machine-id file: 32 lowercase hex characters, mode 0444, written once."""

from __future__ import annotations

import os
import re
import secrets

from entrypoint.atomicfile import read_regular, replace_atomically
from entrypoint.errors import EXIT_MACHINE_ID, EntrypointError
from entrypoint.safedir import open_parent

__all__ = ["ensure_machine_id", "is_valid_machine_id"]

_VALID = re.compile(r"[0-9a-f]{32}")
_MODE = 0o444


def is_valid_machine_id(text: str) -> bool:
    value = text.strip()
    return bool(_VALID.fullmatch(value)) and value != "0" * 32


def _read_existing(dfd: int, name: str) -> str | None:
    # A symlink planted at the path reads as missing: it is replaced, never followed.
    data = read_regular(dfd, name, 128)
    return None if data is None else data.decode("ascii", "replace")


def ensure_machine_id(path: str, owner: tuple[int, int] | None = None) -> bool:
    """Create ``path`` unless it holds a valid id; return True when it was (re)written.

    The file appears atomically (temp file, fsync, rename) and never exists with a
    wider mode than 0444. An existing valid id is kept, its mode and owner corrected.
    The parent directory is created if missing and must not be a symlink.
    """
    try:
        dfd, name = open_parent(path)
        try:
            existing = _read_existing(dfd, name)
            if existing is not None and is_valid_machine_id(existing):
                _fix_existing(dfd, name, owner)
                return False
            _write_new(dfd, name, owner)
            return True
        finally:
            os.close(dfd)
    except OSError as err:
        raise EntrypointError(
            EXIT_MACHINE_ID, f"machine-id {path}: {err.strerror or err}"
        ) from None


def _fix_existing(dfd: int, name: str, owner: tuple[int, int] | None) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        st = os.fstat(fd)
        if owner is not None and (st.st_uid, st.st_gid) != owner:
            os.fchown(fd, *owner)
        if st.st_mode & 0o7777 != _MODE:
            os.fchmod(fd, _MODE)
    finally:
        os.close(fd)


def _write_new(dfd: int, name: str, owner: tuple[int, int] | None) -> None:
    replace_atomically(dfd, name, (secrets.token_hex(16) + "\n").encode("ascii"), _MODE, owner)
