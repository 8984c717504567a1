"""Crash reports' shell (issue 27): gathers what a report holds through the engine,
writes it into the state dir (0600 files in a 0700 directory), applies retention, and
reads reports back for `crashes`, `crashes show` and `status`. What goes into a report,
its redaction and what is kept are decided by supervisor/crashreport.py.

A worker asks for a report after it has decided about a crash or an unhealthy run
(supervisor/accounting.py); the report is gathered in the worker's helper task group, so
the restart that decision left pending is never waited for. Gathering is bounded by
`[crashes] gather_s`, counted from the exit: whatever did not come in by then is named in
the report's `missing`, and the report is written at once (in a worker thread: its
fsyncs never hold up the daemon's loop). Parts still running then have COMPLETE_S more
to come in; if all do, the same report is written again, whole, with `completed_at`.

The parts, concurrently: the container's log up to the exit, its inspect and memory peak
(engine calls), the game's log files and HyOS's state files (one run of the game-log
helper container, supervisor/gamelogs.py, started once a restart due soon was issued),
and, only when the values known may be stale, the secret files (the archive endpoint).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio

from supervisor import backupkey, crashreport, gamelogs, logprune, roles, secretspec
from supervisor.crashreport import FileTail, Summary
from supervisor.dockertypes import EngineError
from supervisor.hyos import STATE_DIR
from supervisor.ports import EnginePort
from supervisor.settings import Settings
from supervisor.statefile import ensure_dir, write_json_atomic
from supervisor.store import state_dir_for

__all__ = ["CrashReporter", "Gathered", "list_reports", "load_report", "reports_dir"]

log = logging.getLogger("supervisor.crashes")

# HyOS's cached Hytale tokens (lib/auth.sh): their values are masked in every report.
TOKENS_FILE = "/data/.auth/tokens.json"
_SUFFIX = ".json"
_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z.-]*")
# The game-log helper's run (create, start, wait, logs: 0.5-0.7 s on a 2-CPU machine at
# load 2-4) must not overlap the restart's start. A restart due at least HELPER_AHEAD_S
# away (the default 1 s backoff) lets it run first; one due sooner (or under way) is
# waited for, up to the budget less HELPER_RESERVE_S, what the helper keeps for its run.
# bench/bench_crash_reports.py --replica at load 4: run first, die -> report median
# 814 ms and 5/5 reports complete, die -> start 1854 ms against 1849 ms for a stack
# without reports crashed in turn beside it; after the restart instead, 2862 ms and 2/5
# complete (the replica's start takes ~0.9 s); started beside the start, it slowed the
# start by ~0.2 s.
HELPER_AHEAD_S = 0.7
HELPER_RESERVE_S = 1.0
# How long parts still running at the deadline may take to complete the report.
COMPLETE_S = 30.0


def reports_dir(settings: Settings) -> Path:
    return state_dir_for(settings) / f"{settings.stack}.crashes"


@dataclass
class Gathered:
    """What came in before the deadline (None: not yet, or not at all)."""

    container_log: list[str] | None = None
    files: list[FileTail] | None = None
    state_files: dict[str, bytes | None] = field(default_factory=dict)
    inspect: dict[str, Any] | None = None
    memory_peak: int | None = None
    secrets: set[str] | None = None
    errors: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    done: set[str] = field(default_factory=set)

    def snapshot(self) -> Gathered:
        """A copy the parts still running no longer change."""
        return replace(
            self,
            state_files=dict(self.state_files),
            secrets=None if self.secrets is None else set(self.secrets),
            errors=list(self.errors),
            started=list(self.started),
            done=set(self.done),
        )

    def missing(self) -> list[str]:
        """The parts that failed, and those still running at the deadline."""
        failed = {error.partition(":")[0] for error in self.errors}
        late = [f"{what}: not read in time" for what in self.started if what not in self.done]
        return [*self.errors, *(m for m in late if m.partition(":")[0] not in failed)]


def _token_values(raw: bytes | None) -> set[str]:
    """Every string of 16 characters or more in HyOS's tokens.json."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and len(value) >= 16:
            found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    if raw:
        with contextlib.suppress(ValueError):
            walk(json.loads(raw))
    return found


def url_secrets(url: str) -> set[str]:
    """A notification URL and the parts of it that are credentials: its user info, and
    each path segment and query value long enough to be a token (Apprise's Discord,
    Telegram, ntfy and webhook URLs carry their tokens there)."""
    found = {url}
    try:
        parts = urlsplit(url)
        found.update(v for v in (parts.username, parts.password) if v)
    except ValueError:
        return found
    found.update(segment for segment in parts.path.split("/") if len(segment) >= 8)
    found.update(value for _, value in parse_qsl(parts.query) if len(value) >= 8)
    if len(parts.netloc.rpartition("@")[2]) >= 8 and parts.scheme not in ("http", "https"):
        # Apprise puts ids and tokens in the host part too (discord://ID/TOKEN, tgram://BOT).
        found.add(parts.netloc.rpartition("@")[2])
    return found


def given_secrets(settings: Settings) -> set[str]:
    """Every secret value the supervisor was given in its settings (or keeps in its state
    dir), stripped; never written anywhere."""
    found = set(settings.supplied_secrets().values())
    for url in settings.notify.targets():
        found |= url_secrets(url)
    found.update(settings.backup.backend_credentials().values())
    try:
        password, _ = backupkey.password(settings, create=False)
        found.add(password.get_secret_value())
    except backupkey.BackupKeyError:
        pass
    return {v.strip() for v in found if v and v.strip()}


class CrashReporter:
    """One stack's crash reports."""

    def __init__(
        self,
        engine: EnginePort,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        written: Callable[[str], None] = lambda role: None,
        complete_s: float = COMPLETE_S,
    ) -> None:
        self.engine = engine
        self.complete_s = complete_s
        self.written = written  # told each report written (the metrics' tally)
        self.settings = settings
        self.clock = clock
        self.directory = reports_dir(settings)
        # Every secret value seen so far (never written anywhere): a rotated-away value
        # stays masked, and a report whose secrets could not be read in time still masks
        # what was read before.
        self.known_secrets: set[str] = set()
        # When the last complete read of them began, and when the secret files last may
        # have changed (a rotation, a pass that created the volume or containers): a
        # report between the two reads them again.
        self.read_at: float | None = None
        self.changed_at: float | None = None

    def supplied_secrets(self) -> set[str]:
        """The values the supervisor was given or keeps itself: the settings' secrets,
        the notification URLs (and the credentials inside them), the backup password
        and the backup backend's credentials."""
        return given_secrets(self.settings)

    async def read_secrets(self, container_id: str) -> set[str]:
        """The generated secrets (and HyOS's tokens), read from the volume through the
        container, concurrently: each value the supervisor generated or was given."""
        found: set[str] = set()
        failed: list[str] = []

        async def read(path: str, tokens: bool) -> None:
            try:
                raw = await self.engine.read_file(container_id, path, 1 << 20)
            except EngineError as err:
                failed.append(f"{path}: {err}")
                return
            if tokens:
                found.update(_token_values(raw))
            elif raw:
                found.add(raw.decode("utf-8", "replace").strip())

        async with anyio.create_task_group() as group:
            for spec in secretspec.SECRETS:
                group.start_soon(read, spec.path, False)
            group.start_soon(read, TOKENS_FILE, True)
        if failed:
            # Some values unknown: none of this read is trusted to be complete.
            raise EngineError(f"cannot read the secrets to mask ({failed[0]})")
        return found

    def budget(self, died_at: float) -> float:
        """Seconds left for gathering: `gather_s` counts from the exit, not from now
        (judging the exit, HyOS's state files read through the engine, came first). At
        most half of it is lost that way: an exit found late, by a stack pass, gets half."""
        gather_s = self.settings.crashes.gather_s
        return gather_s - min(max(0.0, self.clock() - died_at), gather_s / 2)

    async def gather(
        self,
        got: Gathered,
        facts: crashreport.CrashFacts,
        budget: float,
        settled: Callable[[float, float], Awaitable[None]] | None = None,
    ) -> None:
        """The report's parts, concurrently, into `got` (the caller bounds it by
        `budget`). The helper container starts once `settled` returns (the worker's
        restart issued, when it is due soon), so that it never competes with the restart
        for the engine."""
        container_id, died_at = facts.container_id, facts.died_at
        game = roles.is_game(facts.role)
        lines = self.settings.crashes.lines

        async def part(what: str, job: Callable[[], Awaitable[None]]) -> None:
            got.started.append(what)
            try:
                await job()
            except Exception as err:  # a part that fails is named, never the report's end
                got.errors.append(f"{what}: {err}")
            got.done.add(what)

        async def container_log() -> None:
            got.container_log = await self.engine.logs_tail(container_id, lines, died_at + 1.0)

        async def inspect() -> None:
            got.inspect = await self.engine.inspect_document(container_id)

        async def memory() -> None:
            got.memory_peak = await self.engine.memory_peak(container_id)

        async def files() -> None:
            if settled is not None:
                # Before a restart due late enough, else after it (HELPER_AHEAD_S).
                await settled(max(0.0, budget - HELPER_RESERVE_S), HELPER_AHEAD_S)
            wanted = [
                *((d, crashreport.SERVER_LOG_GLOB) for d in logprune.SERVER_LOG_DIRS),
                *((d, crashreport.HS_ERR_GLOB) for d in logprune.SERVER_DIRS),
            ]
            names = list(crashreport.STATE_FILES)
            # 200 bytes a line is generous for Hytale's log; hs_err files are ~100 KB.
            found = await gamelogs.tails(
                self.engine, self.settings, wanted, lines * 400, (STATE_DIR, names)
            )
            by_path = {f.path: f.tail for f in found}
            got.state_files = {n: by_path.get(f"{STATE_DIR}/{n}") for n in names}
            got.files = [f for f in found if not f.path.startswith(f"{STATE_DIR}/")]

        async def secret_values() -> None:
            got.secrets = await self.read_secrets(container_id)

        async with anyio.create_task_group() as group:
            # No archive read of the crashed container while it restarts (the engine
            # holds the container's lock through one, and its start waits for it): the
            # secrets come from what was read before, unless none was yet or they
            # may have changed since (a run that died right after a rotation).
            if self._stale():
                group.start_soon(part, "secrets", secret_values)
            else:
                got.secrets = set()
            group.start_soon(part, "container log", container_log)
            group.start_soon(part, "inspect", inspect)
            group.start_soon(part, "memory", memory)
            if game:
                # The files through the game-log helper, which mounts the volume.
                group.start_soon(part, "server log files and HyOS's state", files)

    def _stale(self) -> bool:
        """Whether the values known may not be the volume's: none read yet, or read
        before the files may have changed."""
        if not self.known_secrets or self.read_at is None:
            return True
        return self.changed_at is not None and self.read_at < self.changed_at

    def secrets_changed(self) -> None:
        """The secret files may have been written (a rotation, a new volume): reports
        read them again until the next refresh (the restarted services' starts)."""
        self.changed_at = self.clock()

    async def refresh_secrets(self, container_id: str) -> None:
        """Read the secret values again (after a service's start: `secrets rotate`
        restarts what uses them), for the reports to come; a failure keeps the old."""
        began = self.clock()
        try:
            found = await self.read_secrets(container_id)
        except EngineError as err:
            log.debug("cannot read the secrets to mask", extra={"error": str(err)})
            return
        self.read_at = began if self.read_at is None else max(self.read_at, began)
        if not found <= self.known_secrets:
            # Once at the start and after each rotation: no value, only how many.
            self.known_secrets |= found
            log.info(
                "crash reports: the secret values to mask were read",
                extra={"count": len(self.known_secrets)},
            )

    async def report(
        self,
        facts: crashreport.CrashFacts,
        settled: Callable[[float, float], Awaitable[None]] | None = None,
    ) -> Path | None:
        """Gather, build, write, apply retention; the report's path (None when reports
        are off or it could not be written: logged, never raised into supervision)."""
        if not self.settings.crashes.enabled:
            return None
        try:
            got = Gathered()
            budget = self.budget(facts.died_at)
            async with anyio.create_task_group() as group:
                finished = anyio.Event()

                async def gather() -> None:
                    await self.gather(got, facts, budget, settled)
                    finished.set()

                group.start_soon(gather)
                with anyio.move_on_after(budget):
                    await finished.wait()
                # Written at the deadline with what came in: a part still running (the
                # helper's removal, shielded, takes a while on a loaded engine) is cut
                # after the report is on disk, not before.
                written_at = self.clock()
                path = await self._write_gathered(got, facts, written_at)
                self.written(facts.role)
                if not finished.is_set():
                    # A loaded engine starts the helper late: what it brings within
                    # COMPLETE_S completes the same report (its `completed_at` says so).
                    with anyio.move_on_after(self.complete_s):
                        await finished.wait()
                    if finished.is_set():
                        path = await self._write_gathered(got, facts, written_at, self.clock())
                group.cancel_scope.cancel()
            return path
        except Exception as err:  # a report must never cost supervision
            log.warning("cannot write a crash report", extra={"error": repr(err)})
            return None

    async def _write_gathered(
        self,
        got: Gathered,
        facts: crashreport.CrashFacts,
        written_at: float,
        completed_at: float | None = None,
    ) -> Path:
        taken = got.snapshot()
        self.known_secrets |= taken.secrets or set()
        secrets = sorted(self.known_secrets | self.supplied_secrets())
        # The values were to be read (none known, or they may have changed) and were
        # not: text from the container may hold one never seen before, so its logs and
        # files are withheld, not risked.
        withhold = taken.secrets is None
        # In a worker thread: the fsyncs must not hold up the daemon's loop.
        return await anyio.to_thread.run_sync(
            partial(self._write, taken, secrets, withhold, facts, written_at, completed_at)
        )

    def _write(
        self,
        got: Gathered,
        secrets: Sequence[str],
        withhold: bool,
        facts: crashreport.CrashFacts,
        written_at: float,
        completed_at: float | None,
    ) -> Path:
        """(In a worker thread.) Build, redact, write atomically, apply retention."""
        lines = self.settings.crashes.lines
        missing = got.missing()
        if withhold:
            missing.append("logs withheld: the secrets to mask could not be read")
        files = got.files or []
        died_at = facts.died_at
        server_log = crashreport.newest_before(files, crashreport.SERVER_LOG_GLOB, died_at)
        hs_err = crashreport.newest_before(files, crashreport.HS_ERR_GLOB, died_at)
        document = crashreport.build(
            facts=facts,
            written_at=written_at,
            completed_at=completed_at,
            container_log=[] if withhold else (got.container_log or []),
            server_log=None if withhold else server_log,
            hs_err=None if withhold else hs_err,
            state_files={} if withhold else got.state_files,
            inspect=got.inspect,
            memory={
                "peak_bytes": got.memory_peak,
                "limit_bytes": _memory_limit(got.inspect),
                "oom_killed": facts.judgement.get("oom_killed"),
            },
            lines=lines,
            missing=missing,
            secrets=secrets,
        )
        ensure_dir(self.directory)
        self.directory.chmod(0o700)
        path = self.directory / f"{facts.report_id}{_SUFFIX}"
        write_json_atomic(path, document)
        self._retain()
        return path

    def _retain(self) -> None:
        sizes = [(p.name.removesuffix(_SUFFIX), p.stat().st_size) for p in self._files()]
        crashes = self.settings.crashes
        for gone in crashreport.to_keep(sizes, crashes.keep, int(crashes.max_bytes)):
            (self.directory / f"{gone}{_SUFFIX}").unlink(missing_ok=True)

    def _files(self) -> list[Path]:
        return [p for p in self.directory.glob(f"*{_SUFFIX}") if not p.name.startswith(".")]


def _memory_limit(inspect: Mapping[str, Any] | None) -> int | None:
    limit = ((inspect or {}).get("HostConfig") or {}).get("Memory")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None


def list_reports(settings: Settings, limit: int | None = None) -> list[Summary]:
    """The reports in the state dir, newest first, at most `limit` of them (read
    directly: no daemon needed; `status` reads only the newest)."""
    directory = reports_dir(settings)
    found: list[Summary] = []
    for path in sorted(directory.glob(f"*{_SUFFIX}"), reverse=True):
        if limit is not None and len(found) >= limit:
            break
        if path.name.startswith("."):
            continue
        document = _read(path)
        if document is not None:
            found.append(crashreport.summary(document, path.stat().st_size))
    return found


def load_report(settings: Settings, report: str) -> dict[str, Any] | None:
    """One report by its id or an unambiguous prefix; None when there is none."""
    directory = reports_dir(settings)
    if not _ID.fullmatch(report):
        return None  # no path, no glob pattern: an id or a prefix of one
    matches = sorted(directory.glob(f"{report}*{_SUFFIX}"))
    exact = directory / f"{report}{_SUFFIX}"
    if exact in matches:
        return _read(exact)
    return _read(matches[0]) if len(matches) == 1 else None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
