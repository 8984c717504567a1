"""The optional parallel layer of :mod:`entrypoint.perms`: the walk of
:mod:`entrypoint.permwalk`, split.

On a machine with several CPUs, a large tree is split into subtrees that
forked worker processes walk (processes, not threads: each entry costs a few
microseconds of interpreter time between two tiny system calls, and threads would only
trade the GIL back and forth). The parent first walks the top of the tree breadth-first
until it has enough pending subdirectories, each checked exactly as in the plain walk
(same ``st_dev``, not a mount point); workers inherit the parent's directory fds, take
subtrees from a shared pipe, enter each one with the same ``O_NOFOLLOW`` open and inode
check, and send their counts and their multi-link files (the ``O_PATH`` fds themselves,
over a socket pair) back, so the hard-link rule still counts the names of the whole tree.
"""

from __future__ import annotations

import json
import os
from typing import Any

from entrypoint.permwalk import (
    MAX_REPORTED,
    NORMAL,
    Deferred,
    Hook,
    PrepareResult,
    Task,
    Walker,
)

__all__ = ["ParallelWalker", "default_workers"]

_MAX_WORKERS = 4  # processes, the parent included
_TASKS_PER_WORKER = 16  # pending subtrees wanted per worker before forking
_MAX_EXPAND = 64  # directories the parent walks breadth-first (their fds stay open)
_MAX_BATCHES = 1024  # 4-byte batch numbers in the work pipe: one page, one atomic write
_FDS_PER_MSG = 200  # below SCM_MAX_FD (253)


def default_workers() -> int:
    """The usable CPUs, at most _MAX_WORKERS."""
    return min(_cpus(), _MAX_WORKERS)


class ParallelWalker(Walker):
    """A Walker whose part below the root is shared with forked workers."""

    def __init__(
        self,
        root: str,
        uid: int,
        gid: int,
        hook: Hook | None,
        trust_before_ns: int | None,
        workers: int,
    ) -> None:
        super().__init__(root, uid, gid, hook, trust_before_ns)
        self.workers = workers

    def _walk_below_root(self, root_fd: int, trusted: bool) -> None:
        """Walk the top breadth-first, then share the pending subtrees with workers."""
        tasks: list[Task] = []
        self._walk(root_fd, self.root, NORMAL, trusted, tasks)
        opened: list[int] = []  # parents of pending tasks: closed once every worker is done
        try:
            want = _TASKS_PER_WORKER * self.workers
            while tasks and len(tasks) < want and len(opened) < _MAX_EXPAND:
                task = tasks.pop(0)
                got = self._enter(task)
                if got is not None:
                    opened.append(got[0])
                    self._walk(got[0], task.path, task.cls, got[1], tasks)
            if len(tasks) < 2:
                for task in tasks:
                    self._run_task(task)
            else:
                self._share(tasks)
        finally:
            for fd in opened:
                os.close(fd)

    def _share(self, tasks: list[Task]) -> None:
        """Fork workers; everyone (the parent too) takes batches of tasks from a pipe."""
        import socket  # only large trees pay for it

        size = -(-len(tasks) // _MAX_BATCHES)
        batches = -(-len(tasks) // size)
        rfd, wfd = os.pipe()
        try:
            # At most one page, written before any reader exists, then closed: every
            # read of 4 bytes gets one whole batch number, and an empty pipe means done.
            os.write(wfd, b"".join(i.to_bytes(4, "little") for i in range(batches)))
        finally:
            os.close(wfd)
        children: list[tuple[int, Any]] = []
        try:
            for _ in range(min(self.workers, batches) - 1):
                mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    pid = os.fork()
                except OSError:
                    mine.close()
                    theirs.close()
                    break  # fewer workers: the others take more batches
                if pid == 0:  # pragma: no cover - runs in the child, reported through pid
                    code = 1
                    try:
                        mine.close()
                        for _pid, other in children:
                            other.close()
                        self._worker(tasks, rfd, size, theirs)
                        code = 0
                    finally:
                        os._exit(code)
                theirs.close()
                children.append((pid, mine))
            self._take(tasks, rfd, size)
        finally:
            os.close(rfd)
            for pid, sock in children:
                self._collect(pid, sock, socket)

    def _take(self, tasks: list[Task], rfd: int, size: int) -> None:
        while True:
            got = os.read(rfd, 4)
            if not got:
                return
            start = int.from_bytes(got, "little") * size
            for task in tasks[start : start + size]:
                self._run_task(task)

    def _worker(self, tasks: list[Task], rfd: int, size: int, sock: Any) -> None:
        """In a forked worker: walk batches, then report counts and multi-link files."""
        import socket  # already imported by the parent

        # The parent's counts and deferred fds are its own; start from zero.
        self.result = res = PrepareResult(self.root, self.uid, self.gid)
        self.deferred = {}
        self._take(tasks, rfd, size)
        items = list(self.deferred.items())
        report = {
            "counts": [res.scanned, res.changed, res.skipped, res.failed, res.trusted],
            "skipped_paths": res.skipped_paths,
            "failures": res.failures,
            "deferred": [[dev, ino, d.seen, d.path, d.cls] for (dev, ino), d in items],
        }
        body = json.dumps(report).encode()
        sock.sendall(len(body).to_bytes(8, "little") + body)
        fds = [d.fd for _key, d in items]
        for i in range(0, len(fds), _FDS_PER_MSG):
            socket.send_fds(sock, [b"F"], fds[i : i + _FDS_PER_MSG])
        sock.close()

    def _collect(self, pid: int, sock: Any, socket: Any) -> None:
        """Merge one worker's report; a worker that did not report is a failure."""
        res = self.result
        fds: list[int] = []
        report: dict[str, Any] | None = None
        try:
            head = _recv_exact(sock, 8)
            report = json.loads(_recv_exact(sock, int.from_bytes(head, "little")))
            while len(fds) < len(report["deferred"]):
                msg, got, flags, _addr = socket.recv_fds(sock, 1, _FDS_PER_MSG)
                fds.extend(got)
                if not msg or flags & socket.MSG_CTRUNC:
                    raise EOFError
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            report = None
        finally:
            sock.close()
        try:
            _pid, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = -1
        if report is None or status != 0:
            for fd in fds:
                os.close(fd)
            res.fail(self.root, f"worker {pid} failed (status {status})")
            return
        scanned, changed, skipped, failed, trusted = report["counts"]
        res.scanned += scanned
        res.changed += changed
        res.skipped += skipped
        res.failed += failed
        res.trusted += trusted
        room = MAX_REPORTED - len(res.skipped_paths)
        res.skipped_paths.extend(report["skipped_paths"][: max(room, 0)])
        room = MAX_REPORTED - len(res.failures)
        res.failures.extend(report["failures"][: max(room, 0)])
        for (dev, ino, seen, path, cls), fd in zip(report["deferred"], fds, strict=True):
            have = self.deferred.get((dev, ino))
            if have is None:
                self.deferred[(dev, ino)] = Deferred(fd, seen, path, cls)
            else:
                have.seen += seen
                os.close(fd)


def _recv_exact(sock: Any, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        got = sock.recv(min(size - len(buf), 1 << 20))
        if not got:
            raise EOFError
        buf += got
    return bytes(buf)


def _cpus() -> int:
    """CPUs this process may use: affinity, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return n
