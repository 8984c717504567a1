"""The backups' shell (issue 25): runs the restic helper through the engine, saves the
world through the server's REST API first, keeps a record of each backup, applies the
retention plan. What to ask restic and what its answers mean is supervisor/backupjob.py;
what to keep is supervisor/retention.py.

One backup or restore at a time per stack: the helper's container is named
`<stack>-backup`, and the engine refuses a second container of one name. A second request
is refused with one line while the first runs.

A backup never leaves the server stopped: `mode = "stop"` starts it again in a `finally`
that a cancellation cannot skip, whatever the helper did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import anyio

from entrypoint.contract import LABEL_ROLE
from supervisor import backupkey, drain, hyos, policy, retention
from supervisor.backupjob import (
    JobAnswer,
    SnapshotInfo,
    Step,
    check_request,
    create_request,
    find,
    forget_request,
    list_request,
    parse_answer,
    parse_snapshots,
    request,
    verify_request,
)
from supervisor.dockertypes import EngineError, Observed, owned_by, ownership_labels
from supervisor.drain import Kind
from supervisor.drainer import Drainer
from supervisor.ports import EnginePort
from supervisor.roles import Role
from supervisor.secretspec import BY_NAME
from supervisor.serverapi import ApiError, ExecTransport, ServerApi
from supervisor.settings import Settings
from supervisor.stack import Mount, data_mount
from supervisor.statefile import ensure_dir, read_json, write_json_atomic
from supervisor.store import state_dir_for

__all__ = ["BackupError", "Backups", "records_path"]

log = logging.getLogger("supervisor.backup")

JOB_TIMEOUT_S = 6 * 3600.0  # a first backup of a large world to a slow remote


class BackupError(Exception):
    """A backup verb could not do what was asked: one line for the operator."""


def records_path(settings: Settings) -> Path:
    return state_dir_for(settings) / f"{settings.stack}.backups.json"


ApiFactory = Callable[[str], ServerApi]
# Tells the daemon supervising the stack (when one runs) that the server's coming stop is
# asked for, before it is made: its worker must not take the exit for a crash and start
# the server in the middle of a stopped-server backup or a restore's swap. The same mark
# the dashboard's Stop button makes (supervisor/stopmarks.py); a later start clears it.
StopMarker = Callable[[str], Awaitable[None]]


async def no_daemon(container_id: str) -> None:
    """The marker where no daemon supervises the stack: nothing to tell."""


@dataclass
class Created:
    snapshot: SnapshotInfo | None
    id: str
    files: int
    bytes: int
    added: int
    tags: tuple[str, ...]
    verified: bool
    seconds: float
    forgotten: tuple[str, ...]
    steps: dict[str, float | None]


class Backups:
    """The `backup` verbs against one stack."""

    def __init__(
        self,
        engine: EnginePort,
        settings: Settings,
        api: ApiFactory | None = None,
        clock: Callable[[], float] = time.time,
        mark_stop: StopMarker = no_daemon,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.api_for = api or self._default_api
        self.mark_stop = mark_stop

    async def drain(self, container_id: str, action: str) -> Kind:
        """Players warned and waited for before `action` stops the server (the drain
        policy's `[drain]` settings), then the world saved; ACT when it may go ahead."""
        policy = self.settings.drain.policy()
        drainer = Drainer(policy, self.api_for(container_id), time.time, log)
        return await drainer.run(drain.start(action, time.time(), policy))

    async def stop_server(self, container_id: str) -> None:
        """A graceful stop (the world saved), asked for: the daemon leaves it stopped."""
        await self.mark_stop(container_id)
        await self.engine.stop(container_id, self.settings.stop_timeout(Role.SERVER))

    # --- the helper ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.container_name(Role.BACKUP)

    async def run_job(
        self, steps: list[Step], writable: bool = False, timeout: float = JOB_TIMEOUT_S
    ) -> JobAnswer:
        settings = self.settings
        repo = settings.backup.repository_for(settings.stack)
        password, _ = backupkey.password(settings)
        if not await self.engine.image_exists(settings.helper_image):
            raise BackupError(
                f"the helper image {settings.helper_image} is missing; build or pull it "
                "(helper_image) and try again"
            )
        mount: Mount | None = None
        location = repo.location
        if repo.kind == "volume":
            await self.engine.ensure_volume(
                repo.location, {**ownership_labels(settings.stack), LABEL_ROLE: Role.BACKUP.value}
            )
            mount, location = Mount("volume", repo.location, policy.BACKUP_REPO_MOUNT), "/repo"
        elif repo.kind == "path":
            mount, location = Mount("bind", repo.location, policy.BACKUP_REPO_MOUNT), "/repo"
        spec = policy.BackupJobSpec(
            stack=settings.stack,
            image=settings.helper_image,
            uid=settings.server.user.uid,
            gid=settings.server.user.gid,
            data=data_mount(settings),
            repository=mount,
            network=repo.needs_network,
            data_writable=writable,
            log_max_size=settings.log_max_size,
        )
        await self._clear_leftover()
        stdin = request(
            password.get_secret_value(), location, steps, settings.backup.backend_credentials()
        )
        try:
            code, out, err = await self.engine.run_once(
                self.name, policy.build_backup_body(spec), stdin, timeout
            )
        except EngineError as failure:
            if "already in use" in str(failure) or "Conflict" in str(failure):
                raise BackupError(self._busy()) from None
            raise BackupError(f"the backup helper could not run: {failure}") from None
        return parse_answer(code, out, err, steps)

    def _busy(self) -> str:
        return (
            f"a backup or restore of stack {self.settings.stack} is running "
            f"(container {self.name}); wait for it to end"
        )

    async def _clear_leftover(self) -> None:
        leftover = await self.engine.inspect(self.name)
        if leftover is None:
            return
        if not owned_by(leftover.labels, self.settings.stack):
            raise BackupError(f"a container named {self.name!r} exists but is not this stack's")
        if leftover.state.running:
            raise BackupError(self._busy())
        await self.engine.remove(leftover.id)

    # --- the server ----------------------------------------------------------------

    async def server(self) -> Observed | None:
        found = [
            o for o in await self.engine.list_stack(self.settings.stack) if o.role == Role.SERVER
        ]
        running = [o for o in found if o.running]
        return running[0] if running else (found[0] if found else None)

    def _default_api(self, container_id: str) -> ServerApi:
        engine, settings = self.engine, self.settings

        async def credentials() -> tuple[str, str]:
            supplied = settings.supplied_secrets()
            values = []
            for name in ("api_client_id", "api_client_secret"):
                value = supplied.get(name)
                if value is None:
                    raw = await engine.read_file(container_id, BY_NAME[name].path)
                    value = (raw or b"").decode(errors="replace").strip()
                values.append(value)
            return values[0], values[1]

        return ServerApi(ExecTransport(engine, lambda: container_id), credentials, self.clock)

    async def _quiesce(self, server: Observed | None) -> tuple[str, bool]:
        """Save the world before a `save` backup: the tag the snapshot gets."""
        if server is None or not server.running:
            return "stopped", True
        try:
            with anyio.fail_after(120):
                await self.api_for(server.id).save()
        except ApiError as err:
            log.warning(
                "backup: the server did not save its world; the snapshot is marked unquiesced",
                extra={"stack": self.settings.stack, "failure": str(err.failure)},
            )
            return "unquiesced", False
        except TimeoutError:
            log.warning("backup: the save did not end in 120 s; the snapshot is unquiesced")
            return "unquiesced", False
        return "quiesced", True

    async def _game_version(self, server: Observed | None) -> str | None:
        """The installed game version (HyOS's `.version`), for the snapshot's tags."""
        if server is None:
            return None
        try:
            return hyos.game_version(await self.engine.read_file(server.id, hyos.GAME_VERSION_FILE))
        except EngineError:
            return None

    # --- the verbs -----------------------------------------------------------------

    async def create(
        self, tag: str | None = None, prune: bool = True, now: bool = False
    ) -> Created:
        """One backup. In stop mode a running server is drained first (`now`: not),
        stopped, and started again whatever happens."""
        settings = self.settings
        began = time.monotonic()
        server = await self.server()
        tags = [f"mode:{settings.backup.mode}"] + ([tag] if tag else [])
        # In the repository itself, so a fresh stack restoring it knows the version too.
        version = await self._game_version(server)
        if version is not None:
            tags.append(f"{VERSION_TAG}{version}")
        restart: str | None = None
        if settings.backup.mode == "save":
            tags.append((await self._quiesce(server))[0])
        else:
            if server is not None and server.running:
                if not now and (kind := await self.drain(server.id, "backup")) is not Kind.ACT:
                    raise BackupError(f"the drain ended with {kind.value}; nothing was stopped")
                await self.stop_server(server.id)
                restart = server.id
            tags.append("stopped")
        # Stopped for the backup: started again before the check (read-only, seconds on a
        # large world) so the check is not downtime.
        check_apart = restart is not None
        try:
            answer = await self.run_job(create_request(settings.stack, tags, check=not check_apart))
        finally:
            if restart is not None:
                with anyio.CancelScope(shield=True):
                    await self.engine.start(restart)
        if check_apart and answer.ok:
            answer = answer.then(await self.run_job(check_request()))
        backup = answer.restic("backup")
        summary: dict[str, Any] = {}
        if backup is not None and isinstance(backup.data.get("json"), dict):
            summary = backup.data["json"]
        snapshot_id = str(summary.get("snapshot_id") or "")
        compare = answer.step("compare")
        check = answer.restic("check")
        verified = bool(
            compare is not None and compare.code == 0 and check is not None and check.code == 0
        )
        record: dict[str, Any] = {
            "time": self.clock(),
            "ok": answer.ok,
            "snapshot": snapshot_id or None,
            "files": int(summary.get("total_files_processed") or 0),
            "bytes": int(summary.get("total_bytes_processed") or 0),
            "added": int(summary.get("data_added") or 0),
            "tags": tags,
            "verified": verified,
            "seconds": round(time.monotonic() - began, 3),
            "error": None if answer.ok else answer.failure(),
            # Where the time went, per step (`backup`, `check`, `manifest`, `compare`...).
            "steps": {str(s.data.get("verb") or s.op): s.data.get("seconds") for s in answer.steps},
        }
        if compare is not None:
            record["manifest"] = {
                k: compare.data.get(k) for k in ("files", "bytes", "changed", "extra", "ok")
            }
        self._record(record)
        if not answer.ok:
            raise BackupError(f"backup failed: {answer.failure()}")
        forgotten: tuple[str, ...] = ()
        if prune:
            forgotten = await self.prune(dry_run=False)
        return Created(
            None,
            snapshot_id,
            record["files"],
            record["bytes"],
            record["added"],
            tuple(tags),
            verified,
            record["seconds"],
            forgotten,
            record["steps"],
        )

    async def snapshots(self, own: bool = False) -> list[SnapshotInfo]:
        """Every snapshot in the repository (a fresh stack restores another's), or only
        this stack's (`--host <stack>`: what retention applies to)."""
        answer = await self.run_job(list_request())
        if not answer.ok:
            raise BackupError(f"cannot list the backups: {answer.failure()}")
        step = answer.restic("snapshots")
        host = self.settings.stack if own else None
        return parse_snapshots(step.data.get("json") if step else None, host)

    async def listing(self) -> list[dict[str, Any]]:
        """`backup list`: restic's snapshots joined with the records of each backup."""
        records = self.records().get("snapshots", {})
        rows = []
        for snap in await self.snapshots():
            record = records.get(_key(snap.id), {})
            rows.append(
                {
                    "id": snap.id,
                    "short_id": snap.short_id,
                    "time": snap.time,
                    "tags": list(snap.tags),
                    "host": snap.host,
                    "files": record.get("files"),
                    "size": record.get("bytes"),
                    "added": record.get("added"),
                    "verified": record.get("verified"),
                    "verified_at": record.get("verified_at"),
                    "game_version": _tagged_version(snap.tags),
                    "pinned": snap.for_retention().pinned,
                }
            )
        return rows

    async def verify(self, ref: str | None) -> str:
        """One snapshot read back whole, or (None) the whole repository."""
        snapshot_id: str | None = None
        if ref is not None:
            found = find(await self.snapshots(), ref)
            if found is None:
                raise BackupError(f"no backup {ref!r}; `backup list` shows the ids")
            snapshot_id = found.id
        answer = await self.run_job(verify_request(snapshot_id))
        ok = answer.ok
        data = self.records()
        now = self.clock()
        targets = [_key(snapshot_id)] if snapshot_id else list(data.get("snapshots", {}))
        for target in targets:
            entry = data.setdefault("snapshots", {}).setdefault(target, {})
            entry.update(verified=ok, verified_at=now)
        self._write(data)
        if not ok:
            raise BackupError(f"verification failed: {answer.failure()}")
        return snapshot_id or "all"

    async def prune(self, dry_run: bool) -> tuple[str, ...]:
        """Apply the retention plan: forget what it does not keep, then prune."""
        snaps = await self.snapshots(own=True)
        plan = retention.plan(
            [s.for_retention() for s in snaps], self.settings.backup.policy(), self._zone()
        )
        ids = tuple(s.id for s in plan.forget)
        self.last_plan = plan
        if dry_run or not ids:
            return ids
        answer = await self.run_job(forget_request(ids))
        if not answer.ok:
            raise BackupError(f"prune failed: {answer.failure()}")
        data = self.records()
        for gone in ids:
            data.get("snapshots", {}).pop(_key(gone), None)
        self._write(data)
        return ids

    async def forget(self, ref: str) -> str:
        snaps = await self.snapshots()
        found = find(snaps, ref)
        if found is None:
            raise BackupError(f"no backup {ref!r}; `backup list` shows the ids")
        if found.for_retention().pinned:
            raise BackupError(
                f"backup {found.short_id} is pinned ({', '.join(found.tags)}); release it first"
            )
        answer = await self.run_job(forget_request([found.id]))
        if not answer.ok:
            raise BackupError(f"forget failed: {answer.failure()}")
        data = self.records()
        data.get("snapshots", {}).pop(_key(found.id), None)
        self._write(data)
        return found.id

    def _zone(self) -> Any:
        return self.settings.schedule.zone if self.settings.schedule.timezone else UTC

    # --- records -------------------------------------------------------------------

    def records(self) -> dict[str, Any]:
        return read_json(records_path(self.settings)) or {}

    def _write(self, data: dict[str, Any]) -> None:
        path = records_path(self.settings)
        ensure_dir(path.parent)
        write_json_atomic(path, data)

    def _record(self, record: dict[str, Any]) -> None:
        data = self.records()
        data["last"] = record
        # Every backup's outcome, counted for good (the metrics' results by outcome).
        found = data.get("outcomes")
        outcomes: dict[str, Any] = found if isinstance(found, dict) else {}
        outcome = "ok" if record["ok"] else "failed"
        data["outcomes"] = {**outcomes, outcome: int(outcomes.get(outcome) or 0) + 1}
        if record["ok"]:
            data["last_ok"] = record
            if record["snapshot"]:
                data.setdefault("snapshots", {})[_key(record["snapshot"])] = {
                    k: record[k] for k in ("time", "files", "bytes", "added", "tags", "verified")
                } | {"verified_at": record["time"] if record["verified"] else None}
        self._write(data)


VERSION_TAG = "version:"


def _tagged_version(tags: tuple[str, ...]) -> str | None:
    return next((t[len(VERSION_TAG) :] for t in tags if t.startswith(VERSION_TAG)), None)


def _key(snapshot_id: str) -> str:
    """Records are keyed by restic's short id: `backup --json` (0.14) reports only that."""
    return snapshot_id[:8]


async def with_backups(
    settings: Settings, engine: EnginePort, job: Callable[[Backups], Awaitable[int]]
) -> int:
    return await job(Backups(engine, settings))
