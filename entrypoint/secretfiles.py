"""Secret files: generated once, rotated on request, never wider than 0600, never torn.

Each secret is one file in a 0700 directory owned by the service user. A new value is
written to a temp file created 0600 under umask 077 with O_CREAT|O_EXCL, fsynced and
renamed over the old one; the old file's bytes are overwritten with zeros first, so a
rotation leaves no old value in the file system's live data (blocks a journal or an SSD
already copied are beyond any file API).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence

from entrypoint.atomicfile import read_regular, replace_atomically
from entrypoint.errors import EXIT_SECRETS, EntrypointError

__all__ = ["ensure_secrets", "generate_secret"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def generate_secret() -> str:
    """32 bytes from the OS's CSPRNG, URL-safe text (43 characters)."""
    return secrets.token_urlsafe(32)


def _open_dir_chain(base: str, parts: Sequence[str], owner: tuple[int, int] | None) -> int:
    """Open base/parts... creating missing parts 0700; no component may be a symlink."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=fd)
            child = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        st = os.fstat(fd)
        if owner is not None and (st.st_uid, st.st_gid) != owner:
            os.fchown(fd, *owner)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _read(dfd: int, name: str) -> str | None:
    data = read_regular(dfd, name)
    return None if data is None else data.decode("utf-8", "replace").strip()


def _scrub(dfd: int, name: str) -> None:
    """Overwrite the current value in place before it is replaced."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size:
            os.write(fd, b"\0" * st.st_size)
            os.fsync(fd)
    finally:
        os.close(fd)


def _write(dfd: int, name: str, value: str, owner: tuple[int, int] | None) -> None:
    replace_atomically(
        dfd,
        name,
        value.encode("utf-8") + b"\n",
        0o600,
        owner,
        before_rename=lambda: _scrub(dfd, name),
    )


def ensure_secrets(
    base: str,
    subdir: Sequence[str],
    names: Iterable[str],
    owner: tuple[int, int] | None,
    *,
    rotate: Iterable[str] = (),
    supplied: Mapping[str, str] | None = None,
    forget: Iterable[str] = (),
) -> dict[str, list[str]]:
    """Make every named secret exist under base/subdir, and none of `forget` (unless
    supplied); returns names (never values) grouped by what happened: created, rotated,
    supplied, kept, forgotten."""
    supplied = dict(supplied or {})
    rotate = set(rotate)
    wanted = list(dict.fromkeys([*names, *rotate, *supplied]))
    dropped = [name for name in dict.fromkeys(forget) if name not in wanted]
    for name in [*wanted, *dropped]:
        if not name or not set(name) <= _NAME_CHARS:
            raise EntrypointError(EXIT_SECRETS, f"secret name {name!r} must be [a-z0-9_]+")
    result: dict[str, list[str]] = {
        "created": [], "rotated": [], "supplied": [], "kept": [], "forgotten": []
    }  # fmt: skip
    try:
        dfd = _open_dir_chain(base, subdir, owner)
    except OSError as err:
        where = os.path.join(base, *subdir)  # noqa: PTH118
        raise EntrypointError(EXIT_SECRETS, f"secrets dir {where}: {err.strerror or err}") from None
    try:
        for name in wanted:
            current = _read(dfd, name)
            if name in supplied:
                if current != supplied[name]:
                    _write(dfd, name, supplied[name], owner)
                    result["supplied"].append(name)
                else:
                    result["kept"].append(name)
            elif name in rotate or not current:
                _write(dfd, name, generate_secret(), owner)
                result["rotated" if current and name in rotate else "created"].append(name)
            else:
                result["kept"].append(name)
        for name in dropped:
            if read_regular(dfd, name) is not None:
                _scrub(dfd, name)
                os.unlink(name, dir_fd=dfd)
                result["forgotten"].append(name)
    except OSError as err:
        raise EntrypointError(EXIT_SECRETS, f"secret {name}: {err.strerror or err}") from None
    finally:
        os.close(dfd)
    return result
