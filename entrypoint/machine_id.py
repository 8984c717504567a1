"""A stable machine-id file: 32 lowercase hex characters, mode 0444, written once."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat

from entrypoint.errors import EXIT_MACHINE_ID, EntrypointError
from entrypoint.safedir import open_parent

__all__ = ["ensure_machine_id", "is_valid_machine_id"]

_VALID = re.compile(r"[0-9a-f]{32}")
_MODE = 0o444


def is_valid_machine_id(text: str) -> bool:
    value = text.strip()
    return bool(_VALID.fullmatch(value)) and value != "0" * 32


def _read_existing(dfd: int, name: str) -> str | None:
    try:
        # O_NOFOLLOW: a symlink planted at the path is invalid and gets replaced.
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 128).decode("ascii", "replace")
    finally:
        os.close(fd)


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
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    old_umask = os.umask(0o077)
    try:
        fd = os.open(tmp, flags, _MODE, dir_fd=dfd)
    finally:
        os.umask(old_umask)
    try:
        try:
            os.write(fd, (secrets.token_hex(16) + "\n").encode("ascii"))
            if owner is not None:
                os.fchown(fd, *owner)
            os.fchmod(fd, _MODE)  # the umask made it 0400
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    os.fsync(dfd)
