"""``python -m entrypoint.resticjob``: the backup helper container's one job (issue 25).

The supervisor decides (supervisor/backupjob.py builds the request); this runs restic,
step by step, inside a hardened one-shot container of the supervisor's own image: a
non-root uid, no capabilities, a read-only root, the world mounted read-only for a
backup, no network unless the repository is remote.

The request is one JSON line on stdin (the attach stream: never argv, Env or inspect)::

    {"password": "...", "repository": "/repo", "steps": [
        {"op": "init"},                             # `restic init` when there is none yet
        {"op": "manifest", "root": "/data"},        # files and sizes, before the snapshot
        {"op": "restic", "args": ["backup", ...]},  # any restic command; "$snapshot" is
        {"op": "compare", "snapshot": "$snapshot"}, #   the id the backup step made
    ]}

A restic step with `"background": true` runs beside the steps after it (the check beside
the comparison); its line is printed after theirs, and its failure fails the job too.

A lock left by a helper that was killed (SIGKILL, OOM, a host crash) would block every
exclusive restic command (check, prune) until restic deems it stale, and restic does that
only for a lock of its own host whose process is gone: never for a helper that ran in
another container. So each stack's helpers share one host name (the supervisor sets it),
and the supervisor runs at most one helper per stack at a time (the container name is the
mutex): when a command finds the repository locked and every lock in it carries our host
name, those locks are a dead helper's, and they are removed and the command run once more.
A lock of any other host is left alone (another stack or machine may be using the
repository): the command then fails with restic's own message.

The password goes to restic as a file on the container's tmpfs (0600, memory only) with
`--password-file`. The backend's credentials (`"env"`: AWS_*, B2_*...) go into restic's
environment only, never the container's. Each step prints one JSON line on stdout (`{"step", "op", "code", ...}`);
the job stops at the first failing step and exits with its code (0: all done). Nothing
printed ever holds the password.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESTIC = "restic"
KEY_FILE = "/tmp/restic.key"
_TAIL = 4000  # characters of a step's stderr (and of a text stdout) kept in its line
_SHOWN = 10  # paths listed of each kind of difference


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
    sys.stdout.flush()


# The request's backend credentials, for every restic this one-shot job runs.
BACKEND_ENV: dict[str, str] = {}


def _restic(repository: str, args: list[str], capture: bool = True) -> subprocess.Popen[bytes]:
    argv = [RESTIC, "--repo", repository, "--password-file", KEY_FILE, "--no-cache", *args]
    return subprocess.Popen(
        argv,
        env={**os.environ, **BACKEND_ENV},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


LOCKED = b"repository is already locked"


def clear_own_locks(repository: str, host: str) -> int:
    """Remove the repository's locks when every one of them was taken by `host` (a dead
    helper of this stack: see the module's docstring); how many were removed."""
    listing = _restic(repository, ["list", "locks", "--no-lock"])
    out, _ = listing.communicate()
    ids = out.decode(errors="replace").split()
    if listing.returncode != 0 or not ids:
        return 0
    for lock_id in ids:
        cat = _restic(repository, ["cat", "lock", lock_id, "--no-lock"])
        raw, _ = cat.communicate()
        try:
            owner = json.loads(raw).get("hostname") if cat.returncode == 0 else None
        except ValueError:
            owner = None
        if owner != host:
            return 0
    unlock = _restic(repository, ["unlock", "--remove-all"])
    unlock.communicate()
    return len(ids) if unlock.returncode == 0 else 0


def _tail(data: bytes) -> str:
    return data.decode(errors="replace")[-_TAIL:]


def walk(root: str) -> dict[str, tuple[int, int]]:
    """Every regular file under `root`: absolute path -> (size, mtime_ns). Never follows
    a symlink, never crosses into another filesystem."""
    found: dict[str, tuple[int, int]] = {}
    device = os.lstat(root).st_dev
    for directory, dirs, files in os.walk(root, followlinks=False):
        # str paths, not Path objects: a world has many thousands of files.
        dirs[:] = [
            d
            for d in dirs
            if os.lstat(os.path.join(directory, d)).st_dev == device  # noqa: PTH118
            and not (directory == root and d == RESTORE_DIR)  # a restore's work, not the world
        ]
        for name in files:
            path = os.path.join(directory, name)  # noqa: PTH118
            info = os.lstat(path)
            if (info.st_mode & 0o170000) == 0o100000:
                found[path] = (info.st_size, info.st_mtime_ns)
    return found


def snapshot_files(repository: str, snapshot: str) -> Iterator[tuple[str, int]]:
    """(path, size) of every regular file in a snapshot (`restic ls --json`, streamed)."""
    # --no-lock: the check may hold the repository's exclusive lock beside it (both read).
    proc = _restic(repository, ["ls", "--no-lock", "--json", snapshot])
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            node = json.loads(line)
        except ValueError:
            continue
        if node.get("struct_type") == "node" and node.get("type") == "file":
            yield str(node["path"]), int(node.get("size") or 0)
    proc.stdout.close()
    assert proc.stderr is not None
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise RuntimeError(f"restic ls exited {proc.returncode}: {_tail(err).strip()}")


# A restore works beside the world on the same volume, so every move is a rename (instant,
# atomic per entry): the backup is staged in `incoming` while the server still runs; the
# swap moves the world's entries to `aside` and the staged ones in; a rollback moves them
# back. The supervisor's own `.hyos` (this stack's secrets and machine state) never moves.
RESTORE_DIR = ".hyos-restore"
NEVER_MOVED = frozenset({".hyos", RESTORE_DIR})


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name not in NEVER_MOVED)
    except FileNotFoundError:
        return []


def _move_all(source: Path, target: Path) -> int:
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    moved = 0
    for entry in _entries(source):
        destination = target / entry.name
        if destination.is_symlink() or destination.exists():
            raise OSError(f"{destination} exists; a previous restore was not cleaned up")
        entry.rename(destination)
        moved += 1
    return moved


def _remove(path: Path) -> None:
    if path.is_symlink() or path.exists():
        shutil.rmtree(path)


def restore_op(op: str, root_text: str) -> dict[str, Any]:
    """The restore's moves on the data volume (`root` is /data); see RESTORE_DIR."""
    root = Path(root_text)
    work = root / RESTORE_DIR
    incoming = work / "incoming" / root_text.lstrip("/")  # restic keeps the full path
    aside = work / "aside"
    if op == "swap":
        if not incoming.is_dir():
            raise OSError("nothing staged to restore")
        return {"aside": _move_all(root, aside), "restored": _move_all(incoming, root)}
    if op == "rollback":
        # What a failed restore put in place goes to `failed` (kept for a look), the
        # set-aside world comes back. Safe to run again after a crash at any point.
        failed = work / "failed"
        _remove(failed)
        if not aside.is_dir():
            return {"back": 0, "failed": 0}
        moved_out = _move_all(root, failed)
        return {"back": _move_all(aside, root), "failed": moved_out}
    if op in ("commit", "clean"):
        _remove(work)
        return {}
    raise ValueError(op)


# What an update's rollback may delete before it stages the snapshot: HyOS's download of
# the failed version (lib/download.sh removes it after a good unzip, so it is never part
# of a snapshot) can be what filled the disk.
DISCARDABLE = frozenset({"game.zip"})


def discard_op(root_text: str, names: list[str]) -> dict[str, Any]:
    removed = []
    for name in names:
        if name not in DISCARDABLE:
            raise ValueError(f"{name} may not be discarded")
        path = Path(root_text, name)
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(name)
    return {"discarded": removed}


def compare(
    manifest: dict[str, tuple[int, int]], snapshot: dict[str, int], started_ns: int
) -> dict[str, Any]:
    """The manifest (taken before the snapshot) against the snapshot's files. A file
    written after the backup began (the server saves on its own schedule too) may differ:
    counted as `changed`, not a failure; any other difference is."""
    missing = sorted(p for p in manifest if p not in snapshot)
    extra = sorted(p for p in snapshot if p not in manifest)
    differ = sorted(p for p in manifest if p in snapshot and snapshot[p] != manifest[p][0])
    changed = []
    for path in [*missing, *differ]:
        try:
            now = os.lstat(path)
        except OSError:
            now = None
        if now is None or now.st_mtime_ns >= started_ns or now.st_mtime_ns != manifest[path][1]:
            changed.append(path)
    bad_missing = [p for p in missing if p not in changed]
    bad_differ = [p for p in differ if p not in changed]
    return {
        "files": len(manifest),
        "bytes": sum(size for size, _ in manifest.values()),
        "snapshot_files": len(snapshot),
        "snapshot_bytes": sum(snapshot.values()),
        "changed": len(changed),
        "extra": len(extra),
        "missing": bad_missing[:_SHOWN],
        "differ": bad_differ[:_SHOWN],
        "ok": not bad_missing and not bad_differ,
    }


def run(request: dict[str, Any]) -> int:
    repository = str(request["repository"])
    BACKEND_ENV.update({str(k): str(v) for k, v in (request.get("env") or {}).items()})
    fd = os.open(KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(str(request["password"]) + "\n")
    variables: dict[str, str] = {}
    background: list[Background] = []
    manifest: dict[str, tuple[int, int]] = {}
    started_ns = time.time_ns()
    for index, step in enumerate(request.get("steps", [])):
        op = step.get("op")
        event: dict[str, Any] = {"step": index, "op": op}
        began = time.monotonic()
        if op == "init" and repository.startswith("/") and Path(repository, "config").is_file():
            # A local repository that has its config: no restic process (each one pays
            # the key derivation, about 0.6 s here) just to learn that it exists.
            event.update(code=0, created=False)
        elif op == "init":
            probe = _restic(repository, ["cat", "config"])
            _, err = probe.communicate()
            if probe.returncode == 0:
                event.update(code=0, created=False)
            elif b"unable to open config file" in err or b"does not exist" in err:
                proc = _restic(repository, ["init"])
                _, init_err = proc.communicate()
                event.update(code=proc.returncode, created=proc.returncode == 0)
                event["stderr"] = _tail(init_err)
            else:
                event.update(code=probe.returncode or 1, stderr=_tail(err))
        elif op == "manifest":
            root = str(step.get("root", "/data"))
            started_ns = time.time_ns()
            manifest = walk(root)
            event.update(code=0, files=len(manifest), bytes=sum(s for s, _ in manifest.values()))
        elif op == "compare":
            snapshot = str(step["snapshot"]).replace("$snapshot", variables.get("snapshot", ""))
            try:
                files = dict(snapshot_files(repository, snapshot))
            except RuntimeError as failure:
                event.update(code=1, stderr=str(failure))
            else:
                result = compare(manifest, files, started_ns)
                event.update(result, code=0 if result["ok"] else 1)
        elif op == "restic":
            args = [
                str(a).replace("$snapshot", variables.get("snapshot", "")) for a in step["args"]
            ]
            if step.get("background"):
                # Runs beside the steps after it (the check beside the comparison: both
                # only read); its line is printed once they are done (`_collect`).
                background.append(Background(index, step, args, repository, began))
                continue
            event.update(_restic_step(repository, step, args))
            if step.get("json"):
                summary = event["json"]
                if isinstance(summary, dict) and summary.get("snapshot_id"):
                    variables["snapshot"] = str(summary["snapshot_id"])
        elif op in ("swap", "rollback", "commit", "clean"):
            try:
                event.update(restore_op(op, str(step.get("root", "/data"))), code=0)
            except OSError as failure:
                event.update(code=1, stderr=f"{op}: {failure}")
        elif op == "discard":
            try:
                names = [str(n) for n in step.get("names") or ()]
                event.update(discard_op(str(step.get("root", "/data")), names), code=0)
            except (OSError, ValueError) as failure:
                event.update(code=1, stderr=f"discard: {failure}")
        else:
            event.update(code=2, stderr=f"unknown step {op!r}")
        event["seconds"] = round(time.monotonic() - began, 3)
        _emit(event)
        if _failed(event, step):
            _collect(background)
            return int(event["code"]) or 1
    return _collect(background)


def _failed(event: dict[str, Any], step: dict[str, Any]) -> bool:
    allowed = event["op"] == "restic" and event["code"] in step.get("ok", [])
    return bool(event["code"] != 0 and not allowed)


def _restic_step(repository: str, step: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """One restic command, once more after a dead helper's locks are cleared: its code,
    stderr's tail and stdout (parsed when the step asks for `json`)."""
    # `discard`: read everything, keep nothing (`dump` of a snapshot, to verify it).
    proc = _restic(repository, args, capture=not step.get("discard"))
    out, err = proc.communicate()
    result: dict[str, Any] = {}
    if proc.returncode != 0 and LOCKED in err:
        removed = clear_own_locks(repository, socket.gethostname())
        if removed:
            result["stale_locks_removed"] = removed
            proc = _restic(repository, args, capture=not step.get("discard"))
            out, err = proc.communicate()
    result.update(code=proc.returncode, stderr=_tail(err))
    text = (out or b"").decode(errors="replace")
    if step.get("json"):
        result["json"] = _json_result(text)
    else:
        result["stdout"] = text[-_TAIL:]
    return result


class Background(threading.Thread):
    """A restic step run in a thread beside the steps after it."""

    def __init__(
        self, index: int, step: dict[str, Any], args: list[str], repository: str, began: float
    ) -> None:
        super().__init__(daemon=True)
        self.index, self.step, self.args, self.repository = index, step, args, repository
        self.began = began
        self.result: dict[str, Any] = {"code": 1, "stderr": "did not finish"}
        self.start()

    def run(self) -> None:
        self.result = _restic_step(self.repository, self.step, self.args)


def _collect(background: list[Background]) -> int:
    """Waits for the steps run beside the others (also after another step failed: a
    restic left to finish leaves no lock behind) and prints their lines: the first
    failure's code, or 0."""
    code = 0
    for job in background:
        job.join()
        event = {"step": job.index, "op": "restic", **job.result}
        event["seconds"] = round(time.monotonic() - job.began, 3)
        _emit(event)
        if not code and _failed(event, job.step):
            code = int(event["code"]) or 1
    return code


def _json_result(text: str) -> Any:
    """restic's --json answer: one document (snapshots, stats), or a stream of lines of
    which the last `summary` one is what matters (backup, restore)."""
    text = text.strip()
    try:
        return json.loads(text) if text else None
    except ValueError:
        pass
    summary = None
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("message_type") in ("summary", "error"):
            summary = item
    return summary


def main() -> int:
    line = sys.stdin.readline()
    try:
        request = json.loads(line)
    except ValueError:
        _emit({"step": -1, "op": "request", "code": 2, "stderr": "no JSON request on stdin"})
        return 2
    try:
        return run(request)
    except OSError as err:
        _emit({"step": -1, "op": "job", "code": 1, "stderr": f"{type(err).__name__}: {err}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
