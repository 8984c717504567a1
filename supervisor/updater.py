"""The update transaction's shell (issue 26): carries out each phase the pure transaction
(supervisor/update.py) is in, persisting it first, so a supervisor killed at any point
resumes or rolls back (`recover`).

    stop      graceful, with the server's stop_timeout (the caller drained the players
              first; `mark_stop` tells the daemon's worker the exit is ours)
    snapshot  the backup engine (supervisor/backup.py: a restic snapshot of /data in the
              hardened helper, `pin:pre-update`, not pruned). Why restic and not a local
              copy: the snapshot must outlive what the update can break (a full disk, a
              half-written volume), be restorable with the same verified machinery as any
              backup (`backup restore`), and cost little: restic deduplicates against the
              last backup, so a stopped server's snapshot writes only what changed
              (bench/bench_update.py measures what it adds to the downtime).
    install   HyOS's own path: `/data/.state/.update-on-restart` (what its
              schedule-update.sh writes), then a start: its entrypoint downloads, verifies
              and unpacks the version as it always does
    gate      the new version is ready when its container runs, its health check says
              healthy, its REST `/health` answers, HyOS's server.json says `running` and
              `.version` is the target (HyOS starts the version it had when its install
              fails: that is a failed update); then it must stay so for `gate_s`
    rollback  the snapshot restored whole beside the world and swapped in (the restore's
              machinery: supervisor/backupjob.py's stage, swap, commit), the old version
              started and gated the same way

Everything that touches the server goes through the engine here; the daemon runs this in
the server's worker (one writer), the CLI runs it directly when no daemon runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from supervisor import alerts, hyos, retention, update
from supervisor.alertsender import Alerts, NoAlerts
from supervisor.backup import BackupError, Backups
from supervisor.backupjob import commit_request, discard_request, stage_request, swap_request
from supervisor.dockertypes import ContainerInfo, EngineError
from supervisor.logs import bind
from supervisor.ports import EnginePort
from supervisor.roles import Role
from supervisor.serverapi import ApiError, ServerApi
from supervisor.settings import Settings
from supervisor.statefile import ensure_dir, read_json, write_json_atomic
from supervisor.store import state_dir_for
from supervisor.tallies import UpdateFacts, UpdateResult
from supervisor.update import Outcome, Phase, Record, Resume, Source, Transaction

__all__ = ["UpdateRefused", "Updater", "journal_path", "update_view"]

log = logging.getLogger("supervisor.update")

PIN = retention.pin_tag(update.PIN_REASON)
SERVER_STATE_FILE = f"{hyos.STATE_DIR}/server.json"
VERSION_STATE_FILE = f"{hyos.STATE_DIR}/version.json"
POLL_S = 1.0
# How long a gate that lost the API or the state file waits to see whether the server exits
# (its exit code is then the reason given), and how often it looks.
EXIT_GRACE_S = 3.0
EXIT_POLL_S = 0.25
SNAPSHOT_ATTEMPTS = 3
SNAPSHOT_RETRY_S = 2.0
# A helper a killed supervisor left running (mid-snapshot, mid-restore) is waited for.
HELPER_WAIT_S = 600.0

# The metrics' closed set of results (an aborted update, which changed nothing, failed).
RESULT_OF = {
    Outcome.APPLIED.value: UpdateResult.APPLIED,
    Outcome.ROLLED_BACK.value: UpdateResult.ROLLED_BACK,
    Outcome.FAILED.value: UpdateResult.FAILED,
    Outcome.ABORTED.value: UpdateResult.FAILED,
}


class UpdateRefused(Exception):
    """No transaction was begun: one line for the operator (nothing was touched)."""


class GateFailed(Exception):
    """The version did not come up healthy, or did not stay so."""


def bad_version(text: str) -> str:
    return (
        f"--version: {text!r} is not a version; use HyOS's form, letters, digits and . _ + - "
        "(e.g. 2026.01.15-abc123)"
    )


def journal_path(settings: Settings) -> Path:
    return state_dir_for(settings) / f"{settings.stack}.update.json"


def _read(settings: Settings) -> tuple[Transaction | None, Record, dict[str, Any]]:
    data = read_json(journal_path(settings)) or {}
    return Transaction.from_json(data.get("tx")), Record.from_json(data.get("record")), data


def update_view(settings: Settings, now: float) -> dict[str, Any]:
    """`status`'s update section, read from the journal (never from Docker)."""
    tx, record, data = _read(settings)
    view: dict[str, Any] = {
        "current": data.get("current"),
        "available": record.available,
        "last_check": data.get("last_check"),
        "last": record.last,
        "bad_versions": list(record.bad),
        "pinned": [{"snapshot": s, "until": _iso(u)} for s, u in record.pinned],
        "transaction": None,
    }
    if tx is not None and (not tx.terminal or tx.phase is Phase.NEEDS_ATTENTION):
        view["transaction"] = {
            "version": tx.target,
            "previous": tx.previous,
            "source": tx.source.value,
            "phase": tx.phase.value,
            "since_s": round(max(0.0, now - (tx.steps[-1][1] if tx.steps else tx.began))),
            "steps": [name for name, _ in tx.steps],
            "reason": tx.reason,
            "snapshot": tx.snapshot,
        }
        if tx.phase is Phase.NEEDS_ATTENTION:
            view["needs_attention"] = {
                "snapshot": tx.snapshot,
                "restore": update.restore_command(tx.snapshot),
                "reason": tx.reason,
            }
    return view


def needs_attention(settings: Settings) -> bool:
    tx, _, _ = _read(settings)
    return tx is not None and tx.phase is Phase.NEEDS_ATTENTION


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Versions:
    current: str | None  # HyOS's .version
    available: str | None  # HyOS's version.json `latest`


def parse_latest(raw: bytes | None) -> str | None:
    """HyOS's version.json (`state_set_version`): `latest`, when it is a version."""
    try:
        data = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    return hyos.game_version(str(data.get("latest") or "").encode())


def parse_server_status(raw: bytes | None) -> str | None:
    try:
        data = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) else None


class Updater:
    def __init__(
        self,
        engine: EnginePort,
        settings: Settings,
        backups: Backups,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        tell: Alerts | None = None,
        facts: UpdateFacts | None = None,
        mark_stop: Callable[[str], None] = lambda container_id: None,
        api: Callable[[str], ServerApi] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.backups = backups
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.tell: Alerts = tell or NoAlerts()
        self.facts = facts or UpdateFacts()
        self.mark_stop = mark_stop
        self.api_for = api or backups.api_for
        # Bound fields and each call's own (a plain LoggerAdapter would drop the latter).
        self.log = bind(log, stack=settings.stack)

    # --- the journal -------------------------------------------------------------------

    def load(self) -> tuple[Transaction | None, Record]:
        tx, record, _ = _read(self.settings)
        return tx, record

    def _write(self, tx: Transaction | None, record: Record, **facts: Any) -> None:
        path = journal_path(self.settings)
        ensure_dir(path.parent)
        data = read_json(path) or {}
        data.update(facts)
        data["tx"] = None if tx is None else tx.to_json()
        data["record"] = record.to_json()
        write_json_atomic(path, data)

    def _persist(self, tx: Transaction) -> None:
        """Before the phase is taken: a supervisor killed now resumes it (`recover`)."""
        _, record = self.load()
        self._write(tx, record)
        self.log.info(
            f"update: {tx.phase.value}",
            extra={"phase": tx.phase.value, "version": tx.target, "previous": tx.previous},
        )

    def note_versions(self, versions: Versions) -> None:
        """What a look at the server found (status, metrics, the update_available alert)."""
        tx, record = self.load()
        now = self.clock()
        self.facts.game_version = versions.current
        self.facts.last_check = now
        available = versions.available
        newer = available is not None and update.newer(available, versions.current)
        self.facts.latest_version = available
        self.facts.available = newer and available not in record.bad
        record = replace(record, available=available if newer else None)
        if newer and available is not None and record.announced != available:
            record = replace(record, announced=available)
            self.tell.emit(
                alerts.update_available(
                    self.settings.stack,
                    now,
                    current=versions.current or "none",
                    available=available,
                )
            )
        self._write(tx, record, current=versions.current, last_check=now)

    # --- looking at the server -----------------------------------------------------------

    async def server(self) -> ContainerInfo | None:
        observed = await self.engine.list_stack(self.settings.stack)
        found = [o for o in observed if o.role == Role.SERVER]
        if not found:
            return None
        running = [o for o in found if o.running]
        return await self.engine.inspect((running or found)[0].id)

    async def versions(self, container_id: str) -> Versions:
        current = hyos.game_version(
            await self.engine.read_file(container_id, hyos.GAME_VERSION_FILE)
        )
        latest = parse_latest(await self.engine.read_file(container_id, VERSION_STATE_FILE))
        return Versions(current, latest)

    # --- beginning -----------------------------------------------------------------------

    async def prepare(
        self, source: Source, requested: str | None, container: ContainerInfo | None = None
    ) -> Transaction:
        """The transaction for `source` (not begun: nothing is persisted or touched);
        UpdateRefused with one line when there is nothing to do or it may not be done."""
        if requested is not None and hyos.game_version(requested.encode()) != requested:
            raise UpdateRefused(bad_version(requested))
        tx, record = self.load()
        if tx is not None and tx.phase is Phase.NEEDS_ATTENTION:
            raise UpdateRefused(
                f"the last update needs attention ({tx.reason}); restore with "
                f"`{update.restore_command(tx.snapshot)}`, then `hyos-supervisor update --resolved`"
            )
        if tx is not None and not tx.terminal:
            raise UpdateRefused(f"an update to {tx.target} is under way ({tx.phase.value})")
        info = container or await self.server()
        if info is None:
            raise UpdateRefused("the stack has no server container; run `up` first")
        versions = await self.versions(info.id)
        self.note_versions(versions)
        target = update.choose_target(
            source, versions.current, versions.available, requested, record.bad
        )
        if target.version is None:
            raise UpdateRefused(target.refused or "nothing to update")
        return update.begin(
            source,
            versions.current,
            target.version,
            info.id,
            self.clock(),
            stopped=not info.state.running,
        )

    # --- the transaction -------------------------------------------------------------------

    async def run(self, tx: Transaction) -> Transaction:
        """Carry `tx` out from its phase to its end; returns it ended. Never raises for
        what an update can do wrong: the outcome says it."""
        self.log.info(
            "update begins",
            extra={"version": tx.target, "previous": tx.previous, "source": tx.source.value},
        )
        await self.release_pins()
        return await self._drive(tx)

    async def _drive(self, tx: Transaction) -> Transaction:
        try:
            if tx.phase is Phase.STOP:
                self._persist(tx)
                await self._stop(tx.container)
                tx = update.advance(tx, self.clock())
            if tx.phase is Phase.SNAPSHOT:
                self._persist(tx)
                snapshot = await self._snapshot()
                tx = update.advance(tx, self.clock(), snapshot=snapshot)
            if tx.phase is Phase.INSTALL:
                self._persist(tx)
                await self._ask_hyos_to_install(tx)
                tx = update.advance(tx, self.clock())
            if tx.phase is Phase.START:
                self._persist(tx)
                await self.engine.start(tx.container)
                tx = update.advance(tx, self.clock())
            if tx.phase is Phase.GATE:
                self._persist(tx)
                ready_at = await self._gate(tx.container, tx.target)
                tx = update.finish(replace(tx, ready_at=ready_at), self.clock())
        except Exception as err:  # whatever failed, the files may be half new
            tx = update.fail(tx, _one_line(err), self.clock())
            self.log.warning(
                "update failed", extra={"version": tx.target, "reason": tx.reason, "then": tx.phase}
            )
            if not isinstance(err, GateFailed | BackupError | EngineError | OSError):
                self.log.debug("update failed unexpectedly", exc_info=err)
        if tx.phase is Phase.ABORTED:
            await self._start_as_it_was(tx)
        if tx.phase in (Phase.ROLLBACK, Phase.ROLLBACK_GATE):
            tx = await self._roll_back(tx)
        return self._ended(tx)

    async def _stop(self, container_id: str) -> None:
        info = await self.engine.inspect(container_id)
        if info is None:
            raise GateFailed("the server's container is gone")
        if info.state.running:
            self.mark_stop(container_id)
            await self.engine.stop(container_id, self.settings.stop_timeout(Role.SERVER))

    async def _snapshot(self) -> str:
        """The snapshot, tried SNAPSHOT_ATTEMPTS times (a second restic snapshot of a
        stopped server is as good as the first; an engine hiccup must not cost the update)."""
        for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
            await self._wait_for_helper()
            try:
                made = await self.backups.create(tag=PIN, prune=False)
                if not made.id:
                    raise BackupError("the snapshot reported no id")
                return made.id
            except (BackupError, EngineError) as err:
                if attempt == SNAPSHOT_ATTEMPTS:
                    raise
                self.log.warning(
                    "update: the snapshot failed; trying again",
                    extra={"error": str(err), "attempt": attempt},
                )
                await self.sleep(SNAPSHOT_RETRY_S)
        raise AssertionError("unreachable")

    async def _wait_for_helper(self) -> None:
        """A helper a killed supervisor left (mid-snapshot, mid-restore) ends first."""
        deadline = self.monotonic() + HELPER_WAIT_S
        while self.monotonic() < deadline:
            info = await self.engine.inspect(self.backups.name)
            if info is None or not info.state.running:
                return
            await self.sleep(POLL_S)

    async def _ask_hyos_to_install(self, tx: Transaction) -> None:
        body = {
            "scheduled_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "target_version": tx.target,
            "scheduled_by": "hyos-supervisor",
        }
        user = self.settings.server.user
        await self.engine.write_file(
            tx.container,
            hyos.UPDATE_ON_RESTART_FILE,
            (json.dumps(body) + "\n").encode(),
            user.uid,
            user.gid,
        )

    async def _start_as_it_was(self, tx: Transaction) -> None:
        """Aborted before anything changed: the old server runs again, as it was."""
        try:
            info = await self.engine.inspect(tx.container)
            was_running = not tx.stopped or tx.source in (Source.DASHBOARD, Source.EXIT_8)
            if info is not None and not info.state.running and was_running:
                await self.engine.start(tx.container)
        except EngineError as err:
            self.log.error("cannot start the server again", extra={"error": str(err)})

    # --- the gate --------------------------------------------------------------------------

    async def _gate(self, container_id: str, version: str | None) -> float:
        """Ready within `ready_s`, then still ready `gate_s` later; GateFailed otherwise.
        Returns when it was first ready (wall clock)."""
        settings = self.settings.update
        deadline = self.monotonic() + settings.ready_s
        why = "not started"
        while True:
            info = await self._running(container_id, "before it was ready")
            health = info.state.health_status
            if health == "unhealthy":
                raise GateFailed("the server turned unhealthy before it was ready")
            if health in (None, "healthy"):
                not_ready = await self._not_ready(container_id, version)
                if not_ready is None:
                    break
                why = not_ready
            else:
                why = f"health {health}"
            if self.monotonic() >= deadline:
                raise GateFailed(f"not ready within {settings.ready_s:.0f} s ({why})")
            await self.sleep(POLL_S)
        started = info.state.started_at
        ready_at = self.clock()
        self.log.info(
            "update: ready; holding the gate", extra={"version": version, "gate_s": settings.gate_s}
        )
        held_from = self.monotonic()
        next_ask = held_from
        while (left := settings.gate_s - (self.monotonic() - held_from)) > 0:
            await self.sleep(min(POLL_S, left))
            held = round(self.monotonic() - held_from)
            info = await self._running(container_id, f"{held} s into the gate")
            if info.state.started_at != started:
                raise GateFailed(f"the server restarted {held} s into the gate")
            if info.state.health_status == "unhealthy":
                raise GateFailed(f"the server turned unhealthy {held} s into the gate")
            if self.monotonic() >= next_ask:
                next_ask = self.monotonic() + 10
                lost = await self._not_ready(container_id, version)
                if lost is not None:
                    await self._exit_explains(container_id, f"{held} s into the gate")
                    raise GateFailed(f"{lost}, {held} s into the gate")
        return ready_at

    async def _exit_explains(self, container_id: str, when: str) -> None:
        """A server whose API or state file just went away is often one on its way out
        (the JVM exits, then HyOS's entrypoint): when its exit comes within
        EXIT_GRACE_S, that exit (GateFailed with its code) is the reason to report."""
        deadline = self.monotonic() + EXIT_GRACE_S
        while self.monotonic() < deadline:
            await self._running(container_id, when)
            await self.sleep(EXIT_POLL_S)

    async def _running(self, container_id: str, when: str) -> ContainerInfo:
        info = await self.engine.inspect(container_id)
        if info is None:
            raise GateFailed(f"the server's container was removed {when}")
        if not info.state.running:
            raise GateFailed(f"the server exited with code {info.state.exit_code} {when}")
        return info

    async def _not_ready(self, container_id: str, version: str | None) -> str | None:
        """Why the running server is not ready yet; None when it is."""
        status = parse_server_status(await self.engine.read_file(container_id, SERVER_STATE_FILE))
        if status != "running":
            return f"server.json says {status or 'nothing'}"
        if version is not None:
            installed = hyos.game_version(
                await self.engine.read_file(container_id, hyos.GAME_VERSION_FILE)
            )
            if installed != version:
                # HyOS got past its install (server.json is `running`): it started what
                # it had. Not a wait: a failed install.
                raise GateFailed(f"the install failed: {installed} runs, not {version}")
        try:
            with anyio.fail_after(15):
                await self.api_for(container_id).health()
        except ApiError as err:
            return f"REST /health: {err.failure.value}"
        except TimeoutError:
            return "REST /health did not answer"
        return None

    # --- the rollback ----------------------------------------------------------------------

    async def _roll_back(self, tx: Transaction) -> Transaction:
        self.log.warning("update: rolling back", extra={"version": tx.target, "reason": tx.reason})
        try:
            if tx.phase is Phase.ROLLBACK:
                self._persist(tx)
                if tx.snapshot is None:
                    raise BackupError("no snapshot was taken")
                await self._stop(tx.container)
                await self._wait_for_helper()
                await self._job(discard_request() + stage_request(tx.snapshot), "staging")
                await self._job(swap_request(), "the swap")
                await self.engine.start(tx.container)
                tx = update.advance(tx, self.clock())
            self._persist(tx)
            ready_at = await self._gate(tx.container, tx.previous)
            await self._job(commit_request(), "the clean-up")
            tx = update.finish(replace(tx, ready_at=ready_at), self.clock())
        except Exception as err:  # a rollback that failed, for any reason
            tx = update.fail(tx, _one_line(err), self.clock())
            if not isinstance(err, GateFailed | BackupError | EngineError | OSError):
                self.log.debug("rollback failed unexpectedly", exc_info=err)
            await self._leave_stopped(tx)
        return tx

    async def _job(self, steps: list[dict[str, Any]], what: str) -> None:
        answer = await self.backups.run_job(steps, writable=True)
        if not answer.ok:
            raise BackupError(f"{what} failed: {answer.failure()}")

    async def _leave_stopped(self, tx: Transaction) -> None:
        """A failed rollback: the server stays stopped (never a crash loop on broken files)."""
        try:
            info = await self.engine.inspect(tx.container)
            if info is not None and info.state.running:
                self.mark_stop(tx.container)
                await self.engine.stop(tx.container, self.settings.stop_timeout(Role.SERVER))
        except EngineError as err:
            self.log.error("cannot stop the server", extra={"error": str(err)})

    # --- the end ---------------------------------------------------------------------------

    def _ended(self, tx: Transaction) -> Transaction:
        _, record = self.load()
        record = record.ended(tx, self.settings.update.keep_days)
        current = tx.target if tx.phase is Phase.DONE else tx.previous
        if tx.phase is Phase.DONE and record.available == tx.target:
            record = replace(record, available=None)
        self._write(tx, record, current=current)
        outcome = tx.outcome
        assert outcome is not None
        self.facts.ended(RESULT_OF[outcome.value])
        self.facts.game_version = current
        self.facts.available = False
        now, stack = self.clock(), self.settings.stack
        fields = {"version": tx.target, "previous": tx.previous, "reason": tx.reason}
        if outcome is Outcome.APPLIED:
            self.log.info("update: done", extra={**fields, "snapshot": tx.snapshot})
            self.tell.emit(
                alerts.update_applied(stack, now, previous=tx.previous or "none", version=tx.target)
            )
        elif outcome is Outcome.ROLLED_BACK:
            self.log.warning("update: rolled back", extra=fields)
            self.tell.emit(
                alerts.update_rolled_back(
                    stack,
                    now,
                    previous=tx.previous or "none",
                    attempted=tx.target,
                    reason=tx.reason or "unknown",
                )
            )
        elif outcome is Outcome.FAILED:
            self.log.error(
                "update: the rollback failed; the server is stopped. Restore with "
                f"`{update.restore_command(tx.snapshot)}`",
                extra={**fields, "snapshot": tx.snapshot},
            )
            self.tell.emit(
                alerts.update_needs_attention(
                    stack,
                    now,
                    attempted=tx.target,
                    reason=tx.reason or "unknown",
                    restore=update.restore_command(tx.snapshot),
                )
            )
        else:
            self.log.warning("update: aborted, nothing was changed", extra=fields)
        return tx

    def resolve(self) -> bool:
        """The operator restored by hand: the transaction that needed attention is closed."""
        tx, record = self.load()
        if tx is None or tx.phase is not Phase.NEEDS_ATTENTION:
            return False
        self._write(None, record)
        return True

    async def release_pins(self) -> tuple[str, ...]:
        """Pre-update snapshots whose keep_days are over go back to normal retention."""
        tx, record = self.load()
        due = update.release_due(record.pinned, self.clock())
        if not due:
            return ()
        try:
            answer = await self.backups.run_job(
                [{"op": "restic", "args": ["tag", "--remove", PIN, *due]}]
            )
        except (BackupError, EngineError) as err:
            self.log.warning("update: could not release a pin", extra={"error": str(err)})
            return ()
        if not answer.ok:
            self.log.warning("update: could not release a pin", extra={"error": answer.failure()})
            return ()
        _, record = self.load()
        record = replace(record, pinned=tuple(p for p in record.pinned if p[0] not in due))
        self._write(tx, record)
        return due

    # --- after a supervisor's death -----------------------------------------------------

    async def recover(self) -> Transaction | None:
        """Finish or roll back what a killed supervisor left; None when nothing was left.
        Never starts a half-installed server."""
        tx, _ = self.load()
        if tx is None or tx.terminal:
            return None
        info = await self.engine.inspect(tx.container)
        running = info is not None and info.state.running
        action = update.resume(tx, running)
        self.log.warning(
            "update: an interrupted update found",
            extra={"phase": tx.phase.value, "version": tx.target, "resume": action.value},
        )
        if info is None:
            # Removed meanwhile: nothing to resume on. Before any change: aborted; after,
            # the files may be half new: needs attention (the snapshot says how to restore).
            gone = "the server's container is gone"
            tx = update.fail(tx, gone, self.clock())
            if not tx.terminal:
                tx = update.fail(tx, gone, self.clock())
            return self._ended(tx)
        if action is Resume.FROM_STOP:
            tx = replace(tx, phase=Phase.STOP)
            return await self._drive(tx)
        if action is Resume.INSTALL:
            return await self._drive(tx)
        if action is Resume.GATE:
            tx = replace(tx, phase=Phase.GATE)
            return await self._drive(tx)
        if tx.phase in (Phase.INSTALL, Phase.START, Phase.GATE):
            tx = update.fail(
                tx, f"the supervisor was stopped during {tx.phase.value}", self.clock()
            )
        elif tx.phase is Phase.ROLLBACK_GATE:
            tx = replace(tx, phase=Phase.ROLLBACK)  # restore again: each step repeats safely
        return self._ended(await self._roll_back(tx))


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__
