"""The backup repository's password: the operator's (`[backup] password[_file]`), else one
generated once and kept in the supervisor's state dir as `<stack>.backup-key` (0600 in
the 0700 state dir).

Why there: `down --volumes` removes the world and the system volume, never the state dir
(systemd's StateDirectory, or the supervisor container's own state volume), and the key
must outlive the world it protects. It is never put next to the repository (a copy of the
repository off-site must not carry its key) and never on a workload's volume.
`hyos-supervisor backup key` prints it for a restore on another machine.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from supervisor.secretspec import BACKUP_PASSWORD
from supervisor.settings import Settings
from supervisor.statefile import ensure_dir
from supervisor.store import state_dir_for

__all__ = ["BackupKeyError", "key_path", "password"]

_MODE = 0o600


class BackupKeyError(Exception):
    """The generated key file exists but cannot be used: one line naming the file."""


def key_path(settings: Settings) -> Path:
    return state_dir_for(settings) / f"{settings.stack}.backup-key"


def password(settings: Settings, create: bool = True) -> tuple[SecretStr, str]:
    """The repository password and where it came from (`setting`, `file <path>`,
    `generated <path>`). Generates and stores one when none exists and `create`."""
    supplied = settings.backup.supplied_password()
    if supplied is not None:
        file = settings.backup.password_file
        return supplied, "setting" if file is None else f"file {file.path}"
    path = key_path(settings)
    existing = _read(path)
    if existing is not None:
        return existing, f"generated {path}"
    if not create:
        raise BackupKeyError(
            f"no backup key: {path} does not exist and backup.password is unset; "
            "set HYOS_BACKUP__PASSWORD_FILE to the key `backup key` printed"
        )
    ensure_dir(path.parent)
    return _create(path), f"generated {path}"


def _read(path: Path) -> SecretStr | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise BackupKeyError(f"cannot read the backup key {path}: {err}") from None
    problem = BACKUP_PASSWORD.problem(text)
    if problem is not None:
        raise BackupKeyError(
            f"the backup key {path} is unusable ({problem}); restore it from a copy"
        )
    return SecretStr(text)


def _create(path: Path) -> SecretStr:
    """Write a new key without ever replacing one: a temp file born 0600, fsynced, then
    hard-linked to the name (which fails if another process made the key first: that
    key is the one read back and used)."""
    value = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, _MODE)
    try:
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        found = _read(path)
        if found is None:  # pragma: no cover - removed between link and read
            raise BackupKeyError(f"the backup key {path} vanished while it was made") from None
        return found
    finally:
        tmp.unlink(missing_ok=True)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return SecretStr(value)
