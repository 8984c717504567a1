"""Pure: what the restic helper is asked to do for each `backup` verb, and what its answer
means. No I/O: supervisor/backup.py runs the job (through the engine) and keeps records.

Why restic (issue 25): encrypted, content-addressed and deduplicated (an incremental
backup of a world that changed 1 % writes about 1 %), compressed (repository v2), a tested
`check --read-data-subset`, and every off-site backend people ask for (S3, SFTP, a REST
server, B2, rclone) in one static binary that Debian ships. We decide what to keep
(supervisor/retention.py) and restic does the copying.

What a backup promises, and what it does not (`mode = "save"`): the server's
`POST /server/save` returns once Hytale has written its world (HyOS's REST plugin runs
the save command; `universe/` is consistent at that moment). The game keeps running and
may write again while restic reads (autosave, players): a file written after the backup
began may be newer in the snapshot than at the save. Restic reads each file once, so no
file is torn, but two files may come from two moments. `mode = "stop"` (drain, stop,
snapshot, start) gives a copy of a stopped server, at the price of downtime.

An API that does not answer (the plugin not up, the server not running) does not stop
the backup: the snapshot is taken and tagged `unquiesced` (a copy of what is on disk is
worth more than no copy; a server that is not running writes nothing, its snapshot is
tagged `stopped`, which is consistent). `backup list` shows the tag; retention treats
it like any other snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from entrypoint.contract import parse_events
from supervisor.retention import Snapshot

__all__ = [
    "CHECK_SUBSET",
    "TAG",
    "JobAnswer",
    "SnapshotInfo",
    "Step",
    "check_request",
    "commit_request",
    "create_request",
    "discard_request",
    "forget_request",
    "list_request",
    "parse_answer",
    "parse_snapshots",
    "rollback_request",
    "stage_request",
    "swap_request",
    "verify_request",
]

# Every snapshot the supervisor makes carries this tag (and `--host <stack>`).
TAG = "hyos"
# After each backup: read back this share of the repository's data (restic's syntax).
CHECK_SUBSET = "10%"
# Where the world is inside the helper (the data volume's mount point).
DATA = "/data"
# Where a restore works, on the data volume beside the world (entrypoint/resticjob.py);
# never part of a backup.
RESTORE_DIR = f"{DATA}/.hyos-restore"

Step = dict[str, Any]


def _restic(*args: str, json_out: bool = False, ok: tuple[int, ...] = ()) -> Step:
    step: Step = {"op": "restic", "args": list(args)}
    if json_out:
        step["json"] = True
    if ok:
        step["ok"] = list(ok)
    return step


def request(
    password: str,
    repository: str,
    steps: list[Step],
    credentials: Mapping[str, str] | None = None,
) -> bytes:
    """The job's stdin: one JSON line (the password and the backend's credentials travel
    here, nowhere else)."""
    job: dict[str, Any] = {"password": password, "repository": repository, "steps": steps}
    if credentials:
        job["env"] = dict(credentials)
    return (json.dumps(job) + "\n").encode()


def create_request(host: str, tags: Iterable[str], check: bool = True) -> list[Step]:
    """init when new, manifest, snapshot, compare the manifest, check a subset."""
    args = ["backup", "--json", "--host", host, "--tag", TAG, "--exclude", RESTORE_DIR]
    for tag in tags:
        args += ["--tag", tag]
    steps: list[Step] = [
        {"op": "init"},
        {"op": "manifest", "root": DATA},
        _restic(*args, DATA, json_out=True),
    ]
    if check:
        # Beside the comparison (both only read): the check's time hides the `ls`.
        steps.append({**_restic("check", f"--read-data-subset={CHECK_SUBSET}"), "background": True})
    steps.append({"op": "compare", "snapshot": "$snapshot"})
    return steps


def check_request() -> list[Step]:
    """A new snapshot's check when it runs apart from the backup (stop mode: after the
    server is started again, so the check is not downtime)."""
    return [_restic("check", f"--read-data-subset={CHECK_SUBSET}")]


def list_request() -> list[Step]:
    return [_restic("snapshots", "--json", json_out=True)]


def verify_request(snapshot: str | None) -> list[Step]:
    """One snapshot: the repository's structure, then every blob of that snapshot read
    and authenticated (`dump` of its whole tree, thrown away). None: `check --read-data`
    (everything the repository holds)."""
    if snapshot is None:
        return [_restic("check", "--read-data")]
    return [
        _restic("check"),
        {**_restic("dump", "--archive", "tar", snapshot, "/"), "discard": True},
    ]


def forget_request(ids: Iterable[str], prune: bool = True) -> list[Step]:
    steps = [_restic("forget", *ids)]
    if prune:
        steps.append(_restic("prune"))
    return steps


def discard_request() -> list[Step]:
    """Before an update's rollback stages its snapshot: HyOS's leftover download of the
    failed version goes (it may be what filled the disk; never part of a snapshot)."""
    return [{"op": "discard", "root": DATA, "names": ["game.zip"]}]


def stage_request(snapshot: str) -> list[Step]:
    """Restore the snapshot beside the world (the server keeps running meanwhile)."""
    return [
        {"op": "clean", "root": DATA},
        _restic("restore", snapshot, "--target", f"{RESTORE_DIR}/incoming"),
    ]


def swap_request() -> list[Step]:
    """Set the world aside and put the staged one in its place (renames only)."""
    return [{"op": "swap", "root": DATA}]


def rollback_request() -> list[Step]:
    """Put the set-aside world back (whatever the swap had done); safe to repeat."""
    return [{"op": "rollback", "root": DATA}]


def commit_request() -> list[Step]:
    """The restore is confirmed: the set-aside world and the staging go."""
    return [{"op": "commit", "root": DATA}]


@dataclass(frozen=True, slots=True)
class StepResult:
    step: int
    op: str
    code: int
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobAnswer:
    """The helper's answer: its exit code and each step's line."""

    code: int
    steps: tuple[StepResult, ...]
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0

    def then(self, later: JobAnswer) -> JobAnswer:
        """This answer and a later job's, as one: the first failure's code."""
        return JobAnswer(self.code or later.code, (*self.steps, *later.steps), later.stderr_tail)

    def step(self, op: str) -> StepResult | None:
        return next((s for s in self.steps if s.op == op), None)

    def restic(self, verb: str) -> StepResult | None:
        for s in self.steps:
            if s.op == "restic" and s.data.get("verb") == verb:
                return s
        return None

    def failure(self) -> str:
        """One line: which step failed and restic's last words."""
        failed = next((s for s in self.steps if s.code != 0), None)
        if failed is None:
            last = (self.stderr_tail.strip().splitlines() or ["no output"])[-1]
            return f"the helper exited {self.code}: {last}"
        text = str(failed.data.get("stderr") or "").strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        detail = lines[-1] if lines else ""
        if failed.op == "compare":
            detail = (
                f"{len(failed.data.get('missing', []))} files missing from the snapshot, "
                f"{len(failed.data.get('differ', []))} of another size"
            )
        name = failed.data.get("verb") or failed.op
        return f"{name} failed (exit {failed.code}): {detail or 'no output'}"


def parse_answer(code: int, stdout: str, stderr: str, steps: list[Step]) -> JobAnswer:
    results = []
    for event in parse_events(stdout, key="step"):
        index = int(event["step"])
        data = dict(event)
        if 0 <= index < len(steps) and steps[index].get("op") == "restic":
            data["verb"] = steps[index]["args"][0]
        results.append(StepResult(index, str(event.get("op")), int(event.get("code", 1)), data))
    return JobAnswer(code, tuple(results), stderr[-4000:])


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    id: str
    short_id: str
    time: float
    tags: tuple[str, ...]
    host: str
    paths: tuple[str, ...]

    def for_retention(self) -> Snapshot:
        return Snapshot(self.id, self.time, frozenset(self.tags))


def parse_time(text: str) -> float:
    """restic's RFC 3339 with nanoseconds (`2026-12-07T04:11:02.123456789+00:00`)."""
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_snapshots(data: Any, host: str | None = None) -> list[SnapshotInfo]:
    """`restic snapshots --json`, newest first; only the stack's when `host` is given."""
    found = []
    for item in data or []:
        if not isinstance(item, dict):
            continue
        info = SnapshotInfo(
            id=str(item["id"]),
            short_id=str(item.get("short_id") or item["id"][:8]),
            time=parse_time(str(item["time"])),
            tags=tuple(item.get("tags") or ()),
            host=str(item.get("hostname") or ""),
            paths=tuple(item.get("paths") or ()),
        )
        if host is None or info.host == host:
            found.append(info)
    return sorted(found, key=lambda s: (s.time, s.id), reverse=True)


def find(snapshots: list[SnapshotInfo], ref: str) -> SnapshotInfo | None:
    """A snapshot by its id or an unambiguous prefix (restic's short ids), or `latest`."""
    if ref == "latest":
        return snapshots[0] if snapshots else None
    matches = [s for s in snapshots if s.id.startswith(ref)]
    return matches[0] if len(matches) == 1 else None
