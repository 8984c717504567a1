"""The safe walk behind :func:`entrypoint.perms.prepare_tree`, and the types it shares
with :mod:`entrypoint.perms_parallel`: make a tree owned by uid:gid without trusting its
contents.

The tree is attacker-writable (a game server writes it), so the walk assumes any entry
can be swapped at any moment:

- every call is relative to an open directory fd (``dir_fd``) and never follows a
  symlink: subdirectories are opened with ``O_NOFOLLOW | O_DIRECTORY`` and checked to be
  the inode that was listed; owners change with ``fchown``/``lchown``-style calls; modes
  with ``fchmod`` on the directory fd or ``fchmodat(AT_SYMLINK_NOFOLLOW)``;
- it never leaves the starting filesystem (``st_dev``) nor enters a mount point listed
  in ``/proc/self/mountinfo`` (bind mounts of the same filesystem keep ``st_dev``);
- entries that vanish mid-walk are skipped, not errors;
- a regular file with several names is changed only when all of its names were found
  inside the tree; otherwise another name (``/etc/shadow`` on a bind-mounted host
  directory) would become ours. Such files are left exactly as they are;
- device nodes are never chowned (owning a device node is owning the device);
- only entries whose owner or mode differs are touched, so a second run does nothing.

Speed: with ``trust_before_ns`` (the file-system time a previous complete prepare of the
same uid:gid finished, see :mod:`entrypoint.stamp`), a non-secret directory that is
already correct and whose ctime is older has its non-directory entries counted but not
stat'ed: adding, removing or renaming an entry would have changed that ctime. What this
misses is an owner or mode changed in place on an existing file afterwards; skipping it
only ever leaves something unfixed (never grants anything), secret directories are
always checked in full, and ``--full`` ignores the stamp.

Parallel: :mod:`entrypoint.perms_parallel` splits a large tree between forked
workers (same rules, same checks); this module is the plain sequential walk, and
:mod:`entrypoint.perms` chooses between them (imports point one way: perms ->
perms_parallel -> permwalk).

Modes: directories ``.auth/`` and ``.hyos/secrets/`` (at any depth) and everything
below them get 0700 (dirs) / 0600 (files); ``.hyos/machine-id`` gets 0444; everything
else is made owner-writable (dirs ``u+rwx``, files ``u+rw``) with all other bits kept,
except that set-uid/set-gid bits are removed from non-directories.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import Any, Final, NamedTuple

__all__ = [
    "MAX_REPORTED",
    "NORMAL",
    "Deferred",
    "Hook",
    "PrepareResult",
    "Task",
    "Walker",
    "desired_mode",
]

# Called as hook(event, path): "listed" after a directory's entries were read,
# "enter" just before a subdirectory is opened. Tests use it to race the walk.
Hook = Callable[[str, str], None]

# Entry classes: what rules apply to a name depends on its parent's class. Plain ints,
# not an enum: the hot loop compares them for every entry.
NORMAL: Final = 0
_HYOS: Final = 1
_SECRET: Final = 2
_MACHINE_ID: Final = 3  # only ever a file class

_S_IFMT = 0o170000
_S_IFDIR = stat.S_IFDIR
_S_IFREG = stat.S_IFREG
_S_IFLNK = stat.S_IFLNK
_DEVICES = (stat.S_IFCHR, stat.S_IFBLK)
_PERM_BITS = 0o7777
_NO_SETID = ~(stat.S_ISUID | stat.S_ISGID)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_MAX_DEFERRED = 256  # open O_PATH fds kept for multi-link files; beyond that they are skipped
MAX_REPORTED = 20  # skipped/failed paths listed in the result (counts are always exact)
_GONE = (errno.ENOENT, errno.ESTALE)


class Task(NamedTuple):
    """A listed subdirectory not entered yet (one per directory, not per entry)."""

    parent_fd: int
    name: str
    st: os.stat_result  # lstat as listed: the directory opened must be this inode
    path: str
    cls: int  # the subtree's entry class


class Deferred:
    """A multi-link file, fixed at the end only if all its names were found in the tree."""

    __slots__ = ("cls", "fd", "path", "seen")

    def __init__(self, fd: int, seen: int, path: str, cls: int) -> None:
        self.fd, self.seen, self.path, self.cls = fd, seen, path, cls


class PrepareResult:
    """Counts of one walk. ``skipped`` entries were deliberately left alone; ``trusted``
    ones were counted in ``scanned`` but not stat'ed (their directory is unchanged since
    the last complete prepare)."""

    # A plain class, not a dataclass: importing dataclasses costs ~6 ms per container start.
    def __init__(self, path: str, uid: int, gid: int) -> None:
        self.path, self.uid, self.gid = path, uid, gid
        self.scanned = self.changed = self.skipped = self.failed = self.trusted = 0
        self.skipped_paths: list[str] = []
        self.failures: list[str] = []

    def skip(self, path: str, reason: str) -> None:
        self.skipped += 1
        if len(self.skipped_paths) < MAX_REPORTED:
            self.skipped_paths.append(f"{path} ({reason})")

    def fail(self, path: str, err: OSError | str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_REPORTED:
            reason = err if isinstance(err, str) else (err.strerror or str(err))
            self.failures.append(f"{path}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "uid": self.uid,
            "gid": self.gid,
            "scanned": self.scanned,
            "changed": self.changed,
            "skipped": self.skipped,
            "failed": self.failed,
            "trusted": self.trusted,
            "skipped_paths": self.skipped_paths,
            "failures": self.failures,
        }


def _child_class(parent: int, name: str, is_dir: bool) -> int:
    if parent == _SECRET:
        return _SECRET
    if parent == _HYOS:
        if is_dir and name == "secrets":
            return _SECRET
        if not is_dir and name == "machine-id":
            return _MACHINE_ID
        return NORMAL if not (is_dir and name == ".auth") else _SECRET
    if is_dir and name == ".auth":
        return _SECRET
    if is_dir and name == ".hyos":
        return _HYOS
    return NORMAL


def desired_mode(mode: int, cls: int = NORMAL) -> int:
    """Permission bits an entry with ``st_mode`` ``mode`` should have (never wider)."""
    is_dir = mode & _S_IFMT == _S_IFDIR
    perm = mode & _PERM_BITS
    if cls == _SECRET:
        return 0o700 if is_dir else 0o600
    if cls == _MACHINE_ID:
        return 0o444
    if is_dir:
        return perm | 0o700
    return (perm | 0o600) & ~(stat.S_ISUID | stat.S_ISGID)


def _mountpoints_below(root: str) -> frozenset[str]:
    """Mount points strictly below ``root`` (same-device bind mounts included)."""
    prefix = root.rstrip("/") + "/"
    found: set[str] = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) < 5:
                    continue
                point = _unescape_mountinfo(fields[4])
                if point.startswith(prefix):
                    found.add(point.rstrip("/"))
    except OSError:
        pass  # no /proc: st_dev still guards against other filesystems
    return frozenset(found)


def _unescape_mountinfo(field_: str) -> str:
    if "\\" not in field_:
        return field_
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


class Walker:
    """One sequential walk; state kept on the instance so the hot loop uses locals."""

    def __init__(
        self, root: str, uid: int, gid: int, hook: Hook | None, trust_before_ns: int | None
    ) -> None:
        self.root = root
        self.trust_ns = trust_before_ns
        self.uid = uid
        self.gid = gid
        self.hook = hook
        self.dev = 0  # the root's st_dev, set by run()
        self.result = PrepareResult(path=root, uid=uid, gid=gid)
        self.mounts = _mountpoints_below(root)
        self.deferred: dict[tuple[int, int], Deferred] = {}

    def run(self) -> PrepareResult:
        res = self.result
        try:
            fd = os.open(self.root, _DIR_FLAGS)
        except OSError as err:
            if err.errno == errno.ELOOP or err.errno == errno.ENOTDIR:
                res.fail(self.root, "not a directory (or a symlink); refusing")
            else:
                res.fail(self.root, err)
            return res
        try:
            st = os.fstat(fd)
            self.dev = st.st_dev
            res.scanned += 1
            trusted = self._fix_dir(fd, st, NORMAL, self.root)
            self._walk_below_root(fd, trusted)
        finally:
            os.close(fd)
        self._finish_deferred()
        return res

    def _walk_below_root(self, root_fd: int, trusted: bool) -> None:
        """Everything below the (fixed) root; the parallel walker splits this."""
        self._walk(root_fd, self.root, NORMAL, trusted)

    def _enter(self, task: Task) -> tuple[int, bool] | None:
        """Open and fix a listed subdirectory: (its fd, trusted), or None if it is gone."""
        parent, name, st, path, cls = task
        if self.hook is not None:
            self.hook("enter", path)
        sub = self._open_dir(parent, name, st, path)
        if sub < 0:
            return None
        return sub, self._fix_dir(sub, st, cls, path)

    def _run_task(self, task: Task) -> None:
        got = self._enter(task)
        if got is not None:
            sub, trusted = got
            try:
                self._walk(sub, task.path, task.cls, trusted)
            finally:
                os.close(sub)

    def _fix_dir(self, fd: int, st: os.stat_result, cls: int, path: str) -> bool:
        """Fix a directory through its own fd (no name to swap); True if its files are
        trusted: correct, not secret, unchanged since the last complete prepare."""
        want = desired_mode(st.st_mode, cls)
        own = st.st_uid != self.uid or st.st_gid != self.gid
        mod = st.st_mode & _PERM_BITS != want
        if not (own or mod):
            return self.trust_ns is not None and cls == NORMAL and st.st_ctime_ns < self.trust_ns
        try:
            if own:
                os.fchown(fd, self.uid, self.gid)
            if mod:
                os.fchmod(fd, want)
        except OSError as err:
            self.result.fail(path, err)
            return False
        self.result.changed += 1
        return False

    def _walk(
        self,
        top_fd: int,
        top_path: str,
        top_cls: int,
        top_trusted: bool,
        pending: list[Task] | None = None,
    ) -> None:
        """Depth-first below ``top_fd`` (owned by the caller); with ``pending``, only this
        directory: its subdirectories are checked and appended there, not entered."""
        res = self.result
        uid, gid, dev, mounts = self.uid, self.gid, self.dev, self.mounts
        chown, chmod = os.chown, os.chmod
        # Depth-first; each stack level keeps one open directory fd.
        stack: list[tuple[int, str, int, bool, list[os.DirEntry[str]], int]] = []
        fd, path, cls, trusted = top_fd, top_path, top_cls, top_trusted
        entries = self._list(fd, path)
        i = 0
        # Counted in locals, added to the result once (also on an unexpected exception).
        scanned = changed = n_trusted = 0
        try:
            while True:
                if i >= len(entries):
                    if fd != top_fd:
                        os.close(fd)
                    if not stack:
                        return
                    fd, path, cls, trusted, entries, i = stack.pop()
                    continue
                entry = entries[i]
                i += 1
                # d_type only (no syscall unless the filesystem lacks it).
                if trusted and not entry.is_dir(follow_symlinks=False):
                    n_trusted += 1
                    continue
                name = entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as err:
                    self._os_error(f"{path}/{name}", err)
                    continue
                scanned += 1
                mode = st.st_mode
                fmt = mode & _S_IFMT
                if fmt == _S_IFDIR:
                    child = f"{path}/{name}"
                    if st.st_dev != dev or (mounts and child in mounts):
                        res.skip(child, "other filesystem")
                        continue
                    task = Task(fd, name, st, child, _child_class(cls, name, True))
                    if pending is not None:
                        pending.append(task)
                        continue
                    got = self._enter(task)
                    if got is None:
                        continue
                    stack.append((fd, path, cls, trusted, entries, i))
                    fd, trusted = got
                    path, cls, entries, i = child, task.cls, self._list(fd, child), 0
                    continue
                own = st.st_uid != uid or st.st_gid != gid
                if fmt == _S_IFREG and cls == NORMAL:
                    # The common case, desired_mode() inlined.
                    want = ((mode & _PERM_BITS) | 0o600) & _NO_SETID
                elif fmt == _S_IFLNK:
                    # A symlink has no mode of its own; its owner is changed, never its
                    # target's.
                    if own:
                        try:
                            chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
                            changed += 1
                        except OSError as err:
                            self._os_error(f"{path}/{name}", err)
                    continue
                elif fmt in _DEVICES:
                    res.skip(f"{path}/{name}", "device node")
                    continue
                else:
                    ccls = _child_class(cls, name, False) if cls == _HYOS else cls
                    want = desired_mode(mode, ccls)
                mod = mode & _PERM_BITS != want
                if not (own or mod):
                    continue
                if st.st_nlink > 1:
                    ccls = _child_class(cls, name, False) if cls == _HYOS else cls
                    self._defer(fd, name, st, ccls, f"{path}/{name}")
                    continue
                try:
                    if own:
                        chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
                    # After chown: the kernel may clear set-id bits, and we drop them anyway.
                    if mod:
                        chmod(name, want, dir_fd=fd, follow_symlinks=False)
                    changed += 1
                except OSError as err:
                    self._os_error(f"{path}/{name}", err)
                except (ValueError, NotImplementedError):
                    # fchmodat(AT_SYMLINK_NOFOLLOW) refused: the name became a symlink.
                    res.skip(f"{path}/{name}", "replaced by a symlink")
        finally:
            res.scanned += scanned + n_trusted
            res.trusted += n_trusted
            res.changed += changed
            if stack:  # only after an exception: close the fds still open below the top
                os.close(fd)
                for level in stack[1:]:
                    os.close(level[0])

    def _list(self, fd: int, path: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(fd) as it:
                entries = list(it)
        except OSError as err:
            self._os_error(path, err)
            return []
        if self.hook is not None:
            self.hook("listed", path)
        return entries

    def _open_dir(self, parent: int, name: str, st: os.stat_result, path: str) -> int:
        """Open a listed subdirectory, or return -1 if it is no longer that directory."""
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                self.result.skip(path, "replaced by a symlink or file")
            else:
                self._os_error(path, err)
            return -1
        now = os.fstat(sub)
        if now.st_ino != st.st_ino or now.st_dev != st.st_dev:
            os.close(sub)
            self.result.skip(path, "replaced during the walk")
            return -1
        return sub

    def _os_error(self, path: str, err: OSError) -> None:
        if err.errno in _GONE:
            self.result.skip(path, "vanished")
        else:
            self.result.fail(path, err)

    def _defer(self, dfd: int, name: str, st: os.stat_result, cls: int, path: str) -> None:
        """Remember a multi-link file; it is fixed at the end if all its names are ours."""
        key = (st.st_dev, st.st_ino)
        seen = self.deferred.get(key)
        if seen is not None:
            seen.seen += 1
            return
        if st.st_mode & _S_IFMT != _S_IFREG or len(self.deferred) >= _MAX_DEFERRED:
            self.result.skip(path, "hard link")
            return
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as err:
            self._os_error(path, err)
            return
        self.deferred[key] = Deferred(fd, 1, path, cls)

    def _finish_deferred(self) -> None:
        res = self.result
        for (_dev, ino), entry in self.deferred.items():
            fd, seen, path, cls = entry.fd, entry.seen, entry.path, entry.cls
            try:
                st = os.fstat(fd)
                if st.st_ino != ino or not stat.S_ISREG(st.st_mode):
                    res.skip(path, "replaced during the walk")
                elif st.st_nlink != seen:
                    res.skip(path, "hard link with names outside the tree")
                else:
                    # An O_PATH fd cannot be fchown'ed; its /proc link names the same inode.
                    proc = f"/proc/self/fd/{fd}"
                    if st.st_uid != self.uid or st.st_gid != self.gid:
                        os.chown(proc, self.uid, self.gid)
                    os.chmod(proc, desired_mode(st.st_mode, cls))  # noqa: PTH101
                    res.changed += 1
            except OSError as err:
                res.fail(path, err)
            finally:
                os.close(fd)
        self.deferred.clear()
