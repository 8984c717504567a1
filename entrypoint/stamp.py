"""The prepare stamp: when a complete prepare of a tree for uid:gid last finished.

Stored as JSON in ``<root>/.hyos/prepare-stamp.json``, owned by uid:gid so the walk
itself never has to change it. Times are file-system ctimes (the clock directory
ctimes are compared with), read from a freshly created file. The stamp lives in the
attacker-writable tree on purpose: a forged stamp can only make the walk do less
(see :mod:`entrypoint.perms`), never touch something it otherwise would not.
"""

from __future__ import annotations

import contextlib
import json
import os

from entrypoint.atomicfile import replace_atomically
from entrypoint.safedir import open_parent

__all__ = ["STAMP_NAME", "Stamp"]

STAMP_NAME = ".hyos/prepare-stamp.json"
_VERSION = 1


class Stamp:
    """Read the previous stamp, and write the next one once the walk succeeded."""

    def __init__(self, root: str, uid: int, gid: int) -> None:
        self.root, self.uid, self.gid = root, uid, gid
        self.path = os.path.join(root, STAMP_NAME)  # noqa: PTH118 - start-up time

    def previous_ns(self) -> int | None:
        """The trust time from the last complete prepare for this uid:gid, if any."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            data = json.loads(os.read(fd, 4096))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        ok = isinstance(data, dict) and data.get("version") == _VERSION
        if not ok or (data.get("uid"), data.get("gid")) != (self.uid, self.gid):
            return None
        value = data.get("finished_ns")
        return value if isinstance(value, int) else None

    def record(self) -> None:
        """Write the stamp with the current file-system time. Best effort: a failure
        only means the next run checks everything."""
        with contextlib.suppress(OSError):
            dfd, name = open_parent(self.path)
            try:
                self._write(dfd, name)
            finally:
                os.close(dfd)

    def _write(self, dfd: int, name: str) -> None:
        st = os.fstat(dfd)
        if (st.st_uid, st.st_gid) != (self.uid, self.gid):
            os.fchown(dfd, self.uid, self.gid)  # the walk would do it next time anyway

        def body(fd: int) -> bytes:
            now = os.fstat(fd).st_ctime_ns  # after the chown: nothing of ours is newer
            stamp = {"version": _VERSION, "uid": self.uid, "gid": self.gid, "finished_ns": now}
            return json.dumps(stamp).encode()

        replace_atomically(dfd, name, body, 0o600, (self.uid, self.gid))
