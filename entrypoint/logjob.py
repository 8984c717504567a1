"""``python -m entrypoint.logjob``: the game-log helper container's one job (issue 27).

The supervisor decides (supervisor/logprune.py plans, supervisor/crashreport.py picks);
this lists, tails, compresses and deletes files in HyOS's log directories, inside a
hardened one-shot container of the supervisor's own image (the workload's uid, no
capabilities, a read-only root, no network, the data volume read-only unless files are
to be changed). The supervisor never mounts the volume itself.

The request is one JSON object, as the first argument or on stdin::

    {"steps": [
        {"op": "list", "dir": "/data/Server/logs"},
        {"op": "tails", "dir": "/data/Server", "glob": "hs_err_pid*.log",
         "newest": 2, "bytes": 262144},
        {"op": "read", "dir": "/data/.state", "names": ["server.json"], "bytes": 65536},
        {"op": "gzip", "path": "/data/logs/old.log"},
        {"op": "delete", "path": "/data/logs/older.log.gz"}
    ]}

Each step prints one JSON line (`{"step", "op", "code", ...}`); `list` and `tails` give
`files`: path, size, mtime (and `tail`, base64, for tails and read). Only regular files
directly inside an allowed directory are ever read or changed (no symlink followed, no
subdirectory entered); a step that fails prints its error and the job goes on (the next
run plans again from what is there).
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import json
import os
import shutil
import stat
import sys
from typing import Any

# HyOS's server dirs (the JVM's cwd), as supervisor/logprune.py names them.
SERVER_DIRS = ("/data/Server", "/data/game/Server", "/data/server")
# gzip and delete only in the log directories: each server dir's logs/ and /data/logs.
WRITABLE_DIRS = (*(f"{d}/logs" for d in SERVER_DIRS), "/data/logs")
# The directories a step may name (the data volume's mount point inside the helper); the
# server dirs (a JVM error file) and HyOS's state files are only ever read.
ALLOWED_DIRS = (*WRITABLE_DIRS, *SERVER_DIRS, "/data/.state")
_MAX_TAIL = 4 << 20


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
    sys.stdout.flush()


def _real_dir(path: str, allowed: tuple[str, ...]) -> int:
    """An fd of `path`, one of `allowed`, refused when any part of it is a symlink."""
    if path not in allowed:
        raise PermissionError(f"{path} is not a directory this job may use")
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in path.strip("/").split("/"):
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _files(dfd: int, glob: str) -> list[tuple[str, os.stat_result]]:
    found = []
    for name in os.listdir(dfd):
        if name.startswith(".") or not fnmatch.fnmatch(name, glob):
            # Hidden: a compression's temp file (.NAME.gz.tmp) is never a log of its own.
            continue
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((name, st))
    return found


def _tail(dfd: int, name: str, size: int, keep: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
    with os.fdopen(fd, "rb") as handle:
        handle.seek(max(0, size - keep))
        return handle.read(keep)


def list_dir(step: dict[str, Any]) -> dict[str, Any]:
    directory = str(step["dir"])
    try:
        dfd = _real_dir(directory, ALLOWED_DIRS)
    except FileNotFoundError:
        return {"files": []}
    try:
        files = _files(dfd, str(step.get("glob", "*")))
        shown = [
            {"path": f"{directory}/{name}", "size": st.st_size, "mtime": st.st_mtime}
            for name, st in files
        ]
        newest = int(step.get("newest", 0))
        keep = min(int(step.get("bytes", 0)), _MAX_TAIL)
        if newest and keep:
            chosen = sorted(files, key=lambda f: (f[1].st_mtime, f[0]), reverse=True)[:newest]
            tails = {name: _tail(dfd, name, st.st_size, keep) for name, st in chosen}
            for item in shown:
                found = tails.get(str(item["path"]).rsplit("/", 1)[-1])
                if found is not None:
                    item["tail"] = base64.b64encode(found).decode()
        return {"files": shown}
    finally:
        os.close(dfd)


def read_files(step: dict[str, Any]) -> dict[str, Any]:
    """Named regular files of one directory, whole up to `bytes` each (their last bytes
    beyond); a missing file is left out."""
    directory = str(step["dir"])
    try:
        dfd = _real_dir(directory, ALLOWED_DIRS)
    except FileNotFoundError:
        return {"files": []}
    keep = min(int(step.get("bytes", 1 << 20)), _MAX_TAIL)
    shown = []
    try:
        for name in step.get("names") or ():
            if "/" in name or name in (".", ".."):
                raise PermissionError(f"{name!r} is not a file name")
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                data = _tail(dfd, name, st.st_size, keep)
                shown.append(
                    {"path": f"{directory}/{name}", "size": st.st_size, "mtime": st.st_mtime,
                     "tail": base64.b64encode(data).decode()}
                )  # fmt: skip
        return {"files": shown}
    finally:
        os.close(dfd)


def _split(path: str) -> tuple[int, str]:
    directory, _, name = path.rpartition("/")
    if not name or name in (".", ".."):
        raise PermissionError(f"{path} names no file")
    return _real_dir(directory, WRITABLE_DIRS), name


def compress(step: dict[str, Any]) -> dict[str, Any]:
    """`name` -> `name.gz` beside it, mtime kept: written to a temp file, fsynced,
    renamed, then the original unlinked (a crash midway leaves the original)."""
    dfd, name = _split(str(step["path"]))
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(f"{step['path']} is not a regular file")
        tmp = f".{name}.gz.tmp"
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640, dir_fd=dfd)
        with os.fdopen(src, "rb") as fin, os.fdopen(dst, "wb") as raw:
            with gzip.GzipFile(
                filename=name, mode="wb", fileobj=raw, mtime=int(st.st_mtime)
            ) as out:
                shutil.copyfileobj(fin, out, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
        os.utime(tmp, (st.st_atime, st.st_mtime), dir_fd=dfd, follow_symlinks=False)
        os.rename(tmp, f"{name}.gz", src_dir_fd=dfd, dst_dir_fd=dfd)
        os.unlink(name, dir_fd=dfd)
        size = os.stat(f"{name}.gz", dir_fd=dfd, follow_symlinks=False).st_size
        return {"size": size, "was": st.st_size}
    finally:
        os.close(dfd)


def delete(step: dict[str, Any]) -> dict[str, Any]:
    dfd, name = _split(str(step["path"]))
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(f"{step['path']} is not a regular file")
        os.unlink(name, dir_fd=dfd)
        return {"freed": st.st_size}
    finally:
        os.close(dfd)


OPS = {
    "list": list_dir,
    "tails": list_dir,
    "read": read_files,
    "gzip": compress,
    "delete": delete,
}


def main(argv: list[str]) -> int:
    raw = argv[1] if len(argv) > 1 else sys.stdin.readline()
    try:
        steps = json.loads(raw)["steps"]
    except (ValueError, KeyError, TypeError) as err:
        _emit({"step": -1, "op": "request", "code": 2, "error": f"bad request: {err}"})
        return 2
    failed = 0
    for index, step in enumerate(steps):
        op = str(step.get("op"))
        try:
            result = OPS[op](step)
            _emit({"step": index, "op": op, "code": 0, **result})
        except (OSError, KeyError, ValueError) as err:
            failed = 1
            _emit({"step": index, "op": op, "code": 1, "error": f"{type(err).__name__}: {err}"})
    return failed


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
