"""Small files in a directory we hold by fd: read without following links, replace
atomically, never readable by others before their final mode is set."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable

__all__ = ["read_regular", "replace_atomically"]


def read_regular(dfd: int, name: str, limit: int = 64 * 1024) -> bytes | None:
    """The file's first `limit` bytes; None when missing, a symlink or not a regular file."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def replace_atomically(
    dfd: int,
    name: str,
    data: bytes | Callable[[int], bytes],
    mode: int,
    owner: tuple[int, int] | None = None,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """The one way small files are replaced, here and in the supervisor (its state file).

    A temp file born 0600 (umask 077, O_CREAT|O_EXCL|O_NOFOLLOW: never through a planted
    file or link) is chowned and chmodded, then written (`data`, or `data(fd)` computed
    from the temp file, e.g. its ctime after the chown), fsynced and renamed over `name`;
    the directory is fsynced after, so the rename survives a power cut. On any failure the
    old file is untouched and the temp file removed."""
    # os.urandom, not the secrets module: its imports (hashlib, hmac, random) were a
    # measurable part of every prepare's start-up.
    tmp = f".{name}.{os.urandom(4).hex()}.tmp"
    old_umask = os.umask(0o077)
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600, dir_fd=dfd,
        )  # fmt: skip
    finally:
        os.umask(old_umask)
    try:
        try:
            if owner is not None:
                os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            view = memoryview(data(fd) if callable(data) else data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_rename is not None:
            before_rename()
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    os.fsync(dfd)
