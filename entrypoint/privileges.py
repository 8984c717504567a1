"""Resolve the target user and drop to it for good: no way back to root."""

from __future__ import annotations

import grp
import os
import pwd
from typing import Any, NamedTuple

from entrypoint.errors import (
    EXIT_DROP_FAILED,
    EXIT_GROUP_OF,
    EXIT_ROOT_REFUSED,
    EXIT_UNKNOWN_USER,
    EXIT_USAGE,
    EntrypointError,
)

__all__ = ["User", "drop_privileges", "group_of", "resolve_user", "set_no_new_privs"]

PR_SET_NO_NEW_PRIVS = 38


class User(NamedTuple):
    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str | None = None
    home: str | None = None


def _lookup_group(spec: str) -> int:
    if spec.isdigit():
        return int(spec)
    try:
        return grp.getgrnam(spec).gr_gid
    except KeyError:
        raise EntrypointError(EXIT_UNKNOWN_USER, f"unknown group {spec!r}") from None


def resolve_user(spec: str) -> User:
    """``UID[:GID]`` or ``NAME[:GROUP]``; numeric ids need no passwd entry.

    An unknown name is an error: falling back to root (as su-exec once did) is
    exactly what this must never do.
    """
    user_part, sep, group_part = spec.partition(":")
    if not user_part or (sep and not group_part):
        raise EntrypointError(
            EXIT_USAGE, f"invalid --user {spec!r}: want UID[:GID] or NAME[:GROUP]"
        )
    entry: pwd.struct_passwd | None
    if user_part.isdigit():
        uid = int(user_part)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
    else:
        try:
            entry = pwd.getpwnam(user_part)
        except KeyError:
            raise EntrypointError(EXIT_UNKNOWN_USER, f"unknown user {user_part!r}") from None
        uid = entry.pw_uid
    if group_part:
        gid = _lookup_group(group_part)
    elif entry is not None:
        gid = entry.pw_gid
    else:
        gid = uid  # numeric uid without passwd entry: never default to group 0
    if entry is not None:
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid))))
        return User(uid, gid, groups, entry.pw_name, entry.pw_dir)
    return User(uid, gid, (gid,))


def group_of(path: str) -> int:
    """The gid owning ``path`` (e.g. the docker socket, whose gid varies per host)."""
    try:
        return os.stat(path).st_gid  # noqa: PTH116 - pathlib import costs start-up time
    except OSError as err:
        raise EntrypointError(EXIT_GROUP_OF, f"--group-of {path}: {err.strerror}") from None


def _libc() -> Any:
    import ctypes  # only when dropping: ~5 ms of start-up otherwise

    return ctypes.CDLL(None, use_errno=True)


def set_no_new_privs(libc: Any = None) -> None:
    libc = libc if libc is not None else _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise EntrypointError(EXIT_DROP_FAILED, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")


def drop_privileges(user: User, *, allow_root: bool = False) -> None:
    """setgroups, setgid, setuid, no_new_privs; then prove root cannot come back."""
    if user.uid == 0 and not allow_root:
        raise EntrypointError(
            EXIT_ROOT_REFUSED, "refusing to run the command as root without --allow-root"
        )
    # Load everything before the switch: the new user may not read the interpreter's files.
    libc = _libc()
    try:
        os.setgroups(list(user.groups))
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as err:
        raise EntrypointError(
            EXIT_DROP_FAILED, f"cannot switch to {user.uid}:{user.gid}: {err.strerror}"
        ) from None
    set_no_new_privs(libc)
    if os.getresuid() != (user.uid,) * 3 or os.getresgid() != (user.gid,) * 3:
        raise EntrypointError(EXIT_DROP_FAILED, "uid/gid did not change as requested")
    if user.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise EntrypointError(
                EXIT_DROP_FAILED, "setuid(0) still succeeds after the drop; refusing to run"
            )
    _set_user_env(user)


def _set_user_env(user: User) -> None:
    # Like gosu/su-exec: a HOME of root's makes no sense for the new user.
    if user.home:
        os.environ["HOME"] = user.home
    elif os.environ.get("HOME") in (None, "/root"):
        os.environ["HOME"] = "/"
    if user.name:
        os.environ["USER"] = os.environ["LOGNAME"] = user.name
