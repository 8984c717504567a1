"""Pure: an update of the game as a transaction (issue 26).

Every way an update starts (`hyos-supervisor update`, the dashboard's update button,
Hytale's exit 8, an `[update] window`, the `auto` check) comes here as a `Source`, and
one transaction runs it, one phase at a time; the shell (supervisor/updater.py) carries
out each phase and persists the transaction *before* taking it::

    stop      the server stopped gracefully (after the drain: players warned, world saved)
    snapshot  a restic snapshot of /data (Server/, Assets.zip, .version, the world, mods,
              configs, HyOS's .state), tagged pin:pre-update
    install   HyOS asked to install on its next start (its `.update-on-restart` flag), so
              its download, verification and layout stay HyOS's
    start     the server started: HyOS's entrypoint installs, then starts Java
    gate      healthy, REST /health answering, server.json `running`, `.version` the
              target; then held so for `gate_s`
    done      the snapshot stays pinned for `keep_days`

A failure before `install` changes nothing on disk: the transaction is *aborted* and the
old server started as it was. A failure from `install` on rolls back::

    rollback  the server stopped, the snapshot restored whole (binaries AND world) beside
              the world and swapped in, the old version started, its own gate
    rolled_back   the version is marked bad: no automatic retry of it
    needs_attention   the rollback itself failed: the server stays stopped, the snapshot
              intact; the operator is told the snapshot id and the restore command

What a supervisor that died mid-transaction does next (`resume`): before the snapshot,
start over from the stop (nothing changed yet); at `install`, install again (HyOS has
not started installing: the server was not started since); at `start`/`gate`, resume the
gate if the server runs, else roll back; during a rollback, roll back again from the
start (each of its steps is safe to repeat). A half-installed server is never started.

No I/O and no clock reads here: every function takes `now` (wall-clock seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

__all__ = [
    "PIN_REASON",
    "Outcome",
    "Phase",
    "Record",
    "Resume",
    "Source",
    "Target",
    "Transaction",
    "abort",
    "advance",
    "begin",
    "choose_target",
    "fail",
    "finish",
    "is_automatic",
    "newer",
    "release_due",
    "restore_command",
    "resume",
]

PIN_REASON = "pre-update"  # the snapshot's tag is retention.pin_tag(PIN_REASON)


class Source(StrEnum):
    CLI = "cli"  # `hyos-supervisor update [--version V]`
    DASHBOARD = "dashboard"  # HyOS's update button: exit 143, update.json `downloading`
    EXIT_8 = "exit8"  # Hytale asked for an update
    WINDOW = "window"  # an `[update] window`
    AUTO = "auto"  # the `auto` check found a newer version


def is_automatic(source: Source) -> bool:
    """Everything but the operator's explicit `update`: never retries a bad version."""
    return source is not Source.CLI


class Phase(StrEnum):
    STOP = "stop"
    SNAPSHOT = "snapshot"
    INSTALL = "install"
    START = "start"
    GATE = "gate"
    DONE = "done"
    ABORTED = "aborted"
    ROLLBACK = "rollback"
    ROLLBACK_GATE = "rollback_gate"
    ROLLED_BACK = "rolled_back"
    NEEDS_ATTENTION = "needs_attention"


TERMINAL = frozenset({Phase.DONE, Phase.ABORTED, Phase.ROLLED_BACK, Phase.NEEDS_ATTENTION})
# From here on the files on disk may be the new version's: a failure rolls back.
_CHANGED = frozenset({Phase.INSTALL, Phase.START, Phase.GATE})
_ROLLING_BACK = frozenset({Phase.ROLLBACK, Phase.ROLLBACK_GATE})
# Phases in order of a good update (status shows the steps taken).
ORDER = (Phase.STOP, Phase.SNAPSHOT, Phase.INSTALL, Phase.START, Phase.GATE, Phase.DONE)


class Outcome(StrEnum):
    """How a transaction ended (tallies.UpdateResult's words, plus aborted)."""

    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # needs attention: the rollback failed
    ABORTED = "aborted"  # nothing was changed (the stop or the snapshot failed)


_OUTCOME = {
    Phase.DONE: Outcome.APPLIED,
    Phase.ROLLED_BACK: Outcome.ROLLED_BACK,
    Phase.NEEDS_ATTENTION: Outcome.FAILED,
    Phase.ABORTED: Outcome.ABORTED,
}


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str  # unique per attempt (the source and the moment it began)
    source: Source
    previous: str | None  # the version installed before (HyOS's .version)
    target: str  # the version asked for
    phase: Phase
    began: float
    container: str  # the server's container id
    stopped: bool = False  # the server was already stopped when it began (dashboard, exit 8)
    snapshot: str | None = None  # the pin:pre-update snapshot's id
    reason: str | None = None  # why it rolled back or aborted
    steps: tuple[tuple[str, float], ...] = ()  # each phase entered, once, with its moment
    gate_failed_at: float | None = None  # when the new version's gate failed
    ended: float | None = None
    # When the version being gated was first ready (healthy, /health, running): the end
    # of the downtime; for a rollback, the old version back (its gate's hold follows).
    ready_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    @property
    def outcome(self) -> Outcome | None:
        return _OUTCOME.get(self.phase)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source.value,
            "previous": self.previous,
            "target": self.target,
            "phase": self.phase.value,
            "began": self.began,
            "container": self.container,
            "stopped": self.stopped,
            "snapshot": self.snapshot,
            "reason": self.reason,
            "steps": [[name, at] for name, at in self.steps],
            "gate_failed_at": self.gate_failed_at,
            "ended": self.ended,
            "ready_at": self.ready_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> Transaction | None:
        """None for anything that is not a transaction this code wrote."""
        if not isinstance(data, Mapping):
            return None
        try:
            steps = tuple((str(name), float(at)) for name, at in data.get("steps") or ())
            return cls(
                id=str(data["id"]),
                source=Source(data["source"]),
                previous=_opt_str(data.get("previous")),
                target=str(data["target"]),
                phase=Phase(data["phase"]),
                began=float(data["began"]),
                container=str(data["container"]),
                stopped=bool(data.get("stopped", False)),
                snapshot=_opt_str(data.get("snapshot")),
                reason=_opt_str(data.get("reason")),
                steps=steps,
                gate_failed_at=_opt_float(data.get("gate_failed_at")),
                ended=_opt_float(data.get("ended")),
                ready_at=_opt_float(data.get("ready_at")),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def begin(
    source: Source, previous: str | None, target: str, container: str, now: float, *, stopped: bool
) -> Transaction:
    """A new transaction, at its first phase: the stop (skipped, but entered, when the
    server is already stopped)."""
    tx = Transaction(
        id=f"{source.value}-{int(now * 1000)}",
        source=source,
        previous=previous,
        target=target,
        phase=Phase.STOP,
        began=now,
        container=container,
        stopped=stopped,
    )
    return replace(tx, steps=((Phase.STOP.value, now),))


_NEXT = {
    Phase.STOP: Phase.SNAPSHOT,
    Phase.SNAPSHOT: Phase.INSTALL,
    Phase.INSTALL: Phase.START,
    Phase.START: Phase.GATE,
    Phase.GATE: Phase.DONE,
    Phase.ROLLBACK: Phase.ROLLBACK_GATE,
    Phase.ROLLBACK_GATE: Phase.ROLLED_BACK,
}


def _enter(tx: Transaction, phase: Phase, now: float) -> Transaction:
    ended = now if phase in TERMINAL else tx.ended
    return replace(tx, phase=phase, steps=(*tx.steps, (phase.value, now)), ended=ended)


def advance(tx: Transaction, now: float, *, snapshot: str | None = None) -> Transaction:
    """The current phase succeeded: on to the next one (`snapshot`: the id it made)."""
    nxt = _NEXT.get(tx.phase)
    if nxt is None:
        raise ValueError(f"no phase follows {tx.phase.value}")
    if tx.phase is Phase.SNAPSHOT:
        if not snapshot:
            raise ValueError("the snapshot phase ends with a snapshot id")
        tx = replace(tx, snapshot=snapshot)
    return _enter(tx, nxt, now)


def fail(tx: Transaction, reason: str, now: float) -> Transaction:
    """The current phase failed: what comes next.

    - before anything changed on disk (stop, snapshot): aborted, the old server started;
    - the new version (install, start, gate): roll back from the snapshot;
    - the rollback itself: needs attention (server stopped, snapshot intact)."""
    if tx.terminal:
        raise ValueError(f"the transaction already ended ({tx.phase.value})")
    if tx.phase in (Phase.STOP, Phase.SNAPSHOT):
        return replace(_enter(tx, Phase.ABORTED, now), reason=reason)
    if tx.phase in _CHANGED:
        gate_failed = now if tx.phase is Phase.GATE else tx.gate_failed_at
        rolled = replace(tx, reason=reason, gate_failed_at=gate_failed)
        return _enter(rolled, Phase.ROLLBACK, now)
    why = f"{tx.reason}; the rollback failed: {reason}" if tx.reason else reason
    return replace(_enter(tx, Phase.NEEDS_ATTENTION, now), reason=why)


def abort(tx: Transaction, reason: str, now: float) -> Transaction:
    """Given up before anything changed (a supervisor restart found it at the stop)."""
    return replace(_enter(tx, Phase.ABORTED, now), reason=reason)


def finish(tx: Transaction, now: float) -> Transaction:
    """The gate held: done (also the end of a rollback's own gate)."""
    if tx.phase not in (Phase.GATE, Phase.ROLLBACK_GATE):
        raise ValueError(f"nothing to finish at {tx.phase.value}")
    return advance(tx, now)


class Resume(StrEnum):
    """What a supervisor that finds an unfinished transaction does."""

    NOTHING = "nothing"  # it ended
    FROM_STOP = "from_stop"  # nothing changed yet: stop (if running), snapshot, go on
    INSTALL = "install"  # snapshot taken, not started since: ask HyOS again, start
    GATE = "gate"  # the new version runs: hold its gate
    ROLL_BACK = "roll_back"  # restore the snapshot, start the old version


def resume(tx: Transaction, server_running: bool) -> Resume:
    if tx.terminal:
        return Resume.NOTHING
    if tx.phase in (Phase.STOP, Phase.SNAPSHOT):
        return Resume.FROM_STOP
    if tx.phase is Phase.INSTALL and not server_running:
        return Resume.INSTALL
    if tx.phase in (Phase.START, Phase.GATE) and server_running:
        return Resume.GATE
    if tx.phase is Phase.INSTALL:
        # Running although we never started it after the snapshot (someone else did):
        # what it installed is unknown. Roll back.
        return Resume.ROLL_BACK
    return Resume.ROLL_BACK  # START/GATE with the server down, or mid-rollback


def restore_command(snapshot: str | None) -> str:
    ref = (snapshot or "<id>")[:8]
    return f"hyos-supervisor backup restore {ref} --now"


# --- what to update to, and the record of attempts -----------------------------------


def _key(version: str) -> tuple[tuple[int, int | str], ...]:
    """HyOS's versions (`2026.01.15-abc123`) compare by their numbers, then text."""
    parts: list[tuple[int, int | str]] = []
    token = ""
    for char in version + ".":
        if char.isalnum() and not (token and token[-1].isdigit() != char.isdigit()):
            token += char
            continue
        if token:
            parts.append((0, int(token)) if token.isdigit() else (1, token))
        token = char if char.isalnum() else ""
    return tuple(parts)


def newer(candidate: str, than: str | None) -> bool:
    """Whether `candidate` is a newer version than `than` (None: anything is newer)."""
    if than is None:
        return True
    return candidate != than and _key(candidate) > _key(than)


@dataclass(frozen=True, slots=True)
class Target:
    """The version to update to, or why there is none (`refused`: one line)."""

    version: str | None
    refused: str | None = None


def choose_target(
    source: Source,
    current: str | None,
    available: str | None,
    requested: str | None,
    bad: Iterable[str],
) -> Target:
    """`requested` (the operator's `--version`) wins, bad or not; otherwise the available
    version, unless it is what runs or marked bad (automatic sources only skip bad
    versions; the operator's plain `update` is told to name it)."""
    bad_set = set(bad)
    if requested is not None:
        if requested == current:
            return Target(None, f"{requested} is already installed")
        return Target(requested)
    if available is None:
        return Target(None, "no newer version is known (HyOS's version.json has none)")
    if available == current:
        return Target(None, f"up to date ({current})")
    if available in bad_set:
        if is_automatic(source):
            return Target(None, f"{available} is marked bad after a failed update; not retried")
        return Target(
            None,
            f"{available} is marked bad after a failed update; "
            f"`hyos-supervisor update --version {available}` tries it again",
        )
    return Target(available)


@dataclass(frozen=True, slots=True)
class Record:
    """What the state dir keeps of updates beside the transaction: the bad versions, the
    last attempt, the snapshots pinned until a moment, the last version seen available."""

    bad: tuple[str, ...] = ()
    last: dict[str, Any] | None = None
    pinned: tuple[tuple[str, float], ...] = ()  # (snapshot id, release at)
    available: str | None = None
    announced: str | None = None  # the last version an update_available alert was sent for
    counts: dict[str, int] = field(default_factory=dict)  # ended transactions by outcome

    def to_json(self) -> dict[str, Any]:
        return {
            "bad": list(self.bad),
            "last": self.last,
            "pinned": [[s, until] for s, until in self.pinned],
            "available": self.available,
            "announced": self.announced,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_json(cls, data: Any) -> Record:
        if not isinstance(data, Mapping):
            return cls()
        try:
            pinned = tuple((str(s), float(u)) for s, u in data.get("pinned") or ())
        except (TypeError, ValueError):
            pinned = ()
        last = data.get("last")
        counts = data.get("counts")
        return cls(
            bad=tuple(str(v) for v in data.get("bad") or ()),
            last=dict(last) if isinstance(last, Mapping) else None,
            pinned=pinned,
            available=_opt_str(data.get("available")),
            announced=_opt_str(data.get("announced")),
            counts={str(k): int(v) for k, v in counts.items()}
            if isinstance(counts, Mapping)
            else {},
        )

    def ended(self, tx: Transaction, keep_days: float) -> Record:
        """The transaction ended: the last attempt, a bad version, the pin's release."""
        outcome = tx.outcome
        if outcome is None:
            raise ValueError("the transaction has not ended")
        bad = self.bad
        if outcome in (Outcome.ROLLED_BACK, Outcome.FAILED) and tx.target not in bad:
            bad = (*bad, tx.target)
        if outcome is Outcome.APPLIED:
            bad = tuple(v for v in bad if v != tx.target)
        pinned = self.pinned
        if outcome is Outcome.APPLIED and tx.snapshot:
            pinned = (*pinned, (tx.snapshot, (tx.ended or tx.began) + keep_days * 86400))
        last = {
            "version": tx.target,
            "previous": tx.previous,
            "source": tx.source.value,
            "result": outcome.value,
            "began": tx.began,
            "when": tx.ended,
            "reason": tx.reason,
            "snapshot": tx.snapshot,
            # From the failure to the old version ready again (its own gate's hold after).
            "rollback_s": (
                None
                if outcome is not Outcome.ROLLED_BACK or tx.ready_at is None
                else round(tx.ready_at - _entered(tx, Phase.ROLLBACK, tx.began), 1)
            ),
            "gate_failed_at": tx.gate_failed_at,
            "ready_at": tx.ready_at,
            "steps": [[name, at] for name, at in tx.steps],
        }
        counts = {**self.counts, outcome.value: self.counts.get(outcome.value, 0) + 1}
        return replace(self, bad=bad, last=last, pinned=pinned, counts=counts)


def _entered(tx: Transaction, phase: Phase, default: float) -> float:
    return next((at for name, at in tx.steps if name == phase.value), default)


def release_due(pinned: Iterable[tuple[str, float]], now: float) -> tuple[str, ...]:
    """The pinned snapshots whose `keep_days` are over: released to normal retention."""
    return tuple(snapshot for snapshot, until in pinned if until <= now)
