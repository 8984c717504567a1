"""Restart decisions: exit classification, backoff and crash-loop accounting.

Pure: no Docker, no I/O, no clock reads. Every transition takes ``now`` explicitly.

``now`` is **wall-clock seconds** (``time.time()`` style), not monotonic time: the
state is persisted by the daemon and must keep its meaning after the daemon itself
restarts (monotonic clocks restart from an arbitrary origin). To stay safe when the
wall clock steps backwards, timestamps found in the future are clamped to ``now``
(they keep counting until the window has passed) instead of lingering forever.

Flow the daemon follows for one service::

    on_started  -> RUNNING
    on_healthy  -> records healthy_since (uptime that later resets the backoff)
    judge_exit  -> ExitJudgement: the one reading of an exit (kind, code, signal, reason)
    on_exit     -> Decision, from the judgement's kind: RESTART after backoff_s
                   | RECREATE | STOP_CRASH_LOOP | NEEDS_AUTH | NONE
    on_unhealthy-> Decision: RESTART (immediately) | STOP_CRASH_LOOP | NONE
    reset       -> operator's ``hyos-supervisor restart <service>``
    request     -> a step asked for from outside (operator, rotation, the dashboard)
    issue       -> the daemon carries the pending step out now
    cancel_pending -> the daemon abandons a pending restart (shutdown, ``down``)

Every decision that needs doing later is held in the state itself, as its ``pending``
step with the wall-clock time it is due: the daemon's worker carries it out when due,
and a daemon restarted in between resumes it from the state file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from supervisor import roles
from supervisor.hyos import ServerExit

__all__ = [
    "STATE_VERSION",
    "Action",
    "Decision",
    "ExitJudgement",
    "ExitKind",
    "Pending",
    "RestartPolicy",
    "ServiceRestartState",
    "ServiceStatus",
    "Step",
    "backoff_for",
    "cancel_pending",
    "classify_exit",
    "describe_exit",
    "issue",
    "judge_exit",
    "login_retry_message",
    "needs_auth_message",
    "on_exit",
    "on_healthy",
    "on_started",
    "on_unhealthy",
    "request",
    "reset",
]

STATE_VERSION = 1


class ExitKind(StrEnum):
    CLEAN = "clean"  # exit 0, or a stop the supervisor requested itself
    CRASH = "crash"  # any other non-zero exit
    OOM = "oom"  # the kernel OOM killer (Docker's State.OOMKilled)
    SIGNALLED = "signalled"  # 137/143 that nobody asked for
    UPDATE = "update"  # server exit 8: update requested -> recreate
    NEEDS_AUTH = "needs_auth"  # server exit 2: restarting cannot help
    LOGIN_ENDED = "login_ended"  # HyOS's login timed out or was refused (exit 1, auth.json)
    UPDATE_BUTTON = "update_button"  # HyOS's update stopped Java (exit 143, update.json)


# Exit kinds that count toward the crash-loop budget (unhealthy restarts count too).
_FAILURES = frozenset({ExitKind.CRASH, ExitKind.OOM, ExitKind.SIGNALLED})

# Hytale's documented exit codes; they mean something only for the game's role.
HYTALE_EXIT_REASONS: Mapping[int, str] = {
    0: "shutdown",
    1: "crash",
    2: "authentication failed",
    3: "world generation failed",
    4: "client gone",
    5: "missing required plugin",
    6: "validation error",
    7: "missing assets",
    8: "update requested",
}

_SIGNAL_NAMES: Mapping[int, str] = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    9: "SIGKILL",
    11: "SIGSEGV",
    13: "SIGPIPE",
    15: "SIGTERM",
}

# Only SIGKILL/SIGTERM are "somebody killed it"; 134 (abort), 139 (segv) are crashes.
_KILL_EXIT_CODES = frozenset({137, 143})


def classify_exit(
    role: str,
    exit_code: int,
    oom_killed: bool,
    stop_requested: bool,
    explained: ServerExit | None = None,
) -> ExitKind:
    """Classify one container exit.

    A stop we requested ourselves is clean whatever the code (docker stop ends in 143,
    or 137 after the grace period). OOM wins over the code: the OOM killer's SIGKILL
    shows up as 137, and "needs more memory" is the more useful reason. `explained` is
    what HyOS's state files say about a server exit (supervisor.hyos.explain_exit).
    """
    if stop_requested:
        return ExitKind.CLEAN
    if oom_killed:
        return ExitKind.OOM
    if exit_code == 0:
        return ExitKind.CLEAN
    game = roles.is_game(role)
    if game and explained is ServerExit.LOGIN_ENDED:
        return ExitKind.LOGIN_ENDED
    if game and explained is ServerExit.UPDATE:
        return ExitKind.UPDATE_BUTTON
    if game:
        if exit_code == 8:
            return ExitKind.UPDATE
        if exit_code == 2:
            return ExitKind.NEEDS_AUTH
    if exit_code in _KILL_EXIT_CODES:
        return ExitKind.SIGNALLED
    return ExitKind.CRASH


def describe_exit(
    role: str,
    exit_code: int,
    oom_killed: bool,
    stop_requested: bool,
    explained: ServerExit | None = None,
) -> str:
    """A one-line human reason for an exit, for the ``reason`` field of exit log lines."""
    return judge_exit(role, exit_code, oom_killed, stop_requested, explained).reason


def _signal_name(exit_code: int) -> str | None:
    """The signal a shell-style exit status > 128 names (137: SIGKILL), if one we name."""
    return _SIGNAL_NAMES.get(exit_code - 128) if exit_code > 128 else None


@dataclass(frozen=True, slots=True)
class ExitJudgement:
    """One exit, judged once: what the exit accounting counts, the restart decision
    takes, the `exited` log line says and `status` shows all read this value."""

    kind: ExitKind
    exit_code: int
    oom_killed: bool
    asked: bool  # a stop of ours or the dashboard's (a marked stop, or the daemon stopping)
    explained: ServerExit | None  # what HyOS's /data/.state files added to the code
    reason: str  # one line for people

    @property
    def signal(self) -> str | None:
        """The signal the status names (143: SIGTERM); None for a plain exit status."""
        return _signal_name(self.exit_code)

    @property
    def failure(self) -> bool:
        """Counts toward the crash-loop budget: a crash, an OOM kill, an unasked kill."""
        return self.kind in _FAILURES

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "oom_killed": self.oom_killed,
            "asked": self.asked,
            "explained": None if self.explained is None else self.explained.value,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Any) -> ExitJudgement | None:
        """Inverse of to_json (None: no exit judged yet). Raises ValueError on anything
        malformed."""
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise ValueError("last_exit must be an object or null")
        try:
            kind = ExitKind(data["kind"])
            explained = None if data.get("explained") is None else ServerExit(data["explained"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"bad last_exit: {exc}") from exc
        code, oom, asked = data.get("exit_code"), data.get("oom_killed"), data.get("asked")
        reason = data.get("reason", "")
        if isinstance(code, bool) or not isinstance(code, int):
            raise ValueError("last_exit.exit_code must be an int")
        if not isinstance(oom, bool) or not isinstance(asked, bool):
            raise ValueError("last_exit.oom_killed and last_exit.asked must be bools")
        if not isinstance(reason, str):
            raise ValueError("last_exit.reason must be a string")
        return cls(kind, code, oom, asked, explained, reason)


def judge_exit(
    role: str,
    exit_code: int,
    oom_killed: bool,
    asked: bool,
    explained: ServerExit | None = None,
) -> ExitJudgement:
    """Classify one exit (classify_exit) and explain it in one line, once."""
    kind = classify_exit(role, exit_code, oom_killed, asked, explained)
    return ExitJudgement(
        kind, exit_code, oom_killed, asked, explained, _reason(kind, role, exit_code, asked)
    )


def _reason(kind: ExitKind, role: str, exit_code: int, asked: bool) -> str:
    if kind is ExitKind.CLEAN and asked:
        return f"stopped by the supervisor (exit {exit_code})"
    if kind is ExitKind.OOM:
        return f"killed by the out-of-memory killer (exit {exit_code}); raise the memory limit"
    detail: str | None = None
    signal = _signal_name(exit_code)
    if roles.is_game(role) and exit_code in HYTALE_EXIT_REASONS:
        detail = HYTALE_EXIT_REASONS[exit_code]
    elif signal is not None:
        detail = f"killed by {signal}"
        if kind is ExitKind.SIGNALLED:
            detail += " that the supervisor did not send"
    elif exit_code == 0:
        detail = "exited normally"
    if kind is ExitKind.NEEDS_AUTH:
        detail = "authentication failed; the server needs an operator to log in"
    elif kind is ExitKind.LOGIN_ENDED:
        detail = "the Hytale login ran out before anyone approved it"
    elif kind is ExitKind.UPDATE_BUTTON:
        detail = "the dashboard's update stopped the server; it starts again to install it"
    elif kind is ExitKind.UPDATE:
        detail = "update requested; the container will be recreated"
    text = f"{kind.value}: {detail}" if detail else kind.value
    return f"{text} (exit {exit_code})"


def needs_auth_message(container: str) -> str:
    """What the operator must do when the server exits 2 (its tokens were refused)."""
    return (
        f"{container}: Hytale refused the server's tokens and it will not be restarted: "
        "run `hyos-supervisor restart server`, then `hyos-supervisor auth` shows the "
        "login URL and code to approve (or supply fresh tokens: hytale_session_token, "
        "hytale_identity_token)"
    )


def login_retry_message(container: str, retry_s: float) -> str:
    """What the operator sees when HyOS's login ran out (exit 1, auth.json timeout)."""
    return (
        f"{container}: the Hytale login was not approved in time; a fresh code comes in "
        f"{retry_s:g} s (or now with `hyos-supervisor restart server`); "
        "`hyos-supervisor auth` shows it"
    )


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Backoff and crash-loop limits. Defaults follow the issue (Kubernetes-like cap/reset)."""

    backoff_base_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_cap_s: float = 300.0
    reset_after_s: float = 600.0  # healthy uptime after which the backoff starts over
    crash_loop_limit: int = 5  # this many failures within the window -> crash_loop
    crash_loop_window_s: float = 600.0
    crash_loop_log_lines: int = 50  # how many log lines the daemon shows on crash_loop
    auth_retry_s: float = 60.0  # after a login ran out, start again for a fresh code

    def __post_init__(self) -> None:
        # Reject configs that would break the invariants tests rely on (finite,
        # non-decreasing backoff, a reachable crash-loop limit).
        for name in (
            "backoff_base_s", "backoff_cap_s", "reset_after_s", "crash_loop_window_s",
            "auth_retry_s",
        ):  # fmt: skip
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (math.isfinite(self.backoff_factor) and self.backoff_factor >= 1):
            raise ValueError(f"backoff_factor must be >= 1, got {self.backoff_factor!r}")
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be >= backoff_base_s")
        if self.crash_loop_limit < 1:
            raise ValueError("crash_loop_limit must be >= 1")
        if self.crash_loop_log_lines < 0:
            raise ValueError("crash_loop_log_lines must be >= 0")


def backoff_for(restart_count: int, policy: RestartPolicy) -> float:
    """Delay before the ``restart_count``-th consecutive restart: base * factor**(n-1), capped."""
    if restart_count <= 0:
        return 0.0
    exponent = restart_count - 1
    # Avoid float overflow for huge counts: once past the cap it stays at the cap.
    if policy.backoff_factor > 1 and exponent > 1100:
        return policy.backoff_cap_s
    return min(policy.backoff_cap_s, policy.backoff_base_s * policy.backoff_factor**exponent)


class ServiceStatus(StrEnum):
    RUNNING = "running"
    BACKOFF = "backoff"  # a restart is pending (waiting out the backoff, or in progress)
    CRASH_LOOP = "crash_loop"  # too many failures: no restart until `restart <service>`
    NEEDS_AUTH = "needs_auth"  # server exit 2: no restart until `restart server`
    STOPPED = "stopped"
    UPDATING = "updating"  # exit 8: the container is being recreated


class Action(StrEnum):
    """A decision's verdict on an exit or a failed health check: what becomes of the
    service and what the operator is told. Not a container operation: the operation a
    verdict leaves pending is a `Step` (`_STEP_OF`), and some leave none (NONE,
    STOP_CRASH_LOOP, NEEDS_AUTH). RESTART means the service runs again, which after an
    exit is Step.START (there is nothing left to stop)."""

    NONE = "none"
    RESTART = "restart"  # start the container again after backoff_s
    RECREATE = "recreate"  # remove and create again (pull first if configured)
    STOP_CRASH_LOOP = "stop_crash_loop"  # log the last lines; keep the container as is
    NEEDS_AUTH = "needs_auth"  # log `message`; do not restart
    RETRY_LOGIN = "retry_login"  # log `message`; start again after backoff_s for a new code
    INSTALL_UPDATE = "install_update"  # ask HyOS to install the update, then start at once


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    backoff_s: float = 0.0
    reason: str = ""
    message: str = ""  # operator-facing instruction (needs_auth, crash_loop)


_NOTHING = Decision(Action.NONE)


class Step(StrEnum):
    """The container operation a pending decision carries out when due (the worker's
    `_carry_out`); persisted in the state file as `pending.step`. Also asked for directly
    (the operator, a rotation, the manager following the server), with no `Action`."""

    START = "start"  # start the exited container again
    RESTART = "restart"  # stop it (as ours), then start it
    RECREATE = "recreate"  # a fresh container of the desired spec (pull first if set)
    INSTALL_UPDATE = "install_update"  # ask HyOS to install the update, then start


@dataclass(frozen=True, slots=True)
class Pending:
    step: Step
    due_at: float  # wall clock
    reason: str = ""
    backoff_s: float = 0.0  # how long it was put off when decided (for the logs)
    # Why, in a word from a closed set (the totals count restarts by it): an exit's kind,
    # "unhealthy", or what asked for it ("operator", "rotation", ...); "" in old state files.
    cause: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step.value,
            "due_at": self.due_at,
            "reason": self.reason,
            "backoff_s": self.backoff_s,
            "cause": self.cause,
        }

    @classmethod
    def from_json(cls, data: Any) -> Pending | None:
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise ValueError("pending must be an object or null")
        try:
            step = Step(data["step"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"bad pending step: {exc}") from exc
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise ValueError("pending reason must be a string")
        due_at = _required_number(data.get("due_at"), "pending.due_at")
        backoff = _number(data.get("backoff_s", 0.0), "pending.backoff_s") or 0.0
        cause = data.get("cause", "")
        if not isinstance(cause, str):
            raise ValueError("pending cause must be a string")
        return cls(step, due_at, reason, backoff, cause)


# The step each deciding action leaves pending (RESTART after an unhealthy check stops
# the running container first; after an exit there is nothing left to stop).
_STEP_OF = {
    Action.RESTART: Step.START,
    Action.RETRY_LOGIN: Step.START,
    Action.RECREATE: Step.RECREATE,
    Action.INSTALL_UPDATE: Step.INSTALL_UPDATE,
}


@dataclass(frozen=True, slots=True)
class ServiceRestartState:
    """Restart bookkeeping for one service. All timestamps are wall-clock seconds."""

    status: ServiceStatus = ServiceStatus.STOPPED
    crash_times: tuple[float, ...] = ()  # failures still inside the crash-loop window
    restart_count: int = 0  # consecutive restarts since the last healthy reset
    last_backoff_s: float = 0.0
    started_at: float | None = None
    healthy_since: float | None = None  # start of the current healthy stretch
    unhealthy_handled: bool = False  # a restart was already issued for this unhealthy episode
    last_reason: str = ""
    pending: Pending | None = None  # the decided step not carried out yet

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict (for the daemon's state file)."""
        return {
            "version": STATE_VERSION,
            "status": self.status.value,
            "crash_times": list(self.crash_times),
            "restart_count": self.restart_count,
            "last_backoff_s": self.last_backoff_s,
            "started_at": self.started_at,
            "healthy_since": self.healthy_since,
            "unhealthy_handled": self.unhealthy_handled,
            "last_reason": self.last_reason,
            "pending": None if self.pending is None else self.pending.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceRestartState:
        """Inverse of to_json. Raises ValueError on anything malformed (caller starts fresh)."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        try:
            status = ServiceStatus(data["status"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"bad status: {exc}") from exc
        crash_times = data.get("crash_times", [])
        if not isinstance(crash_times, list):
            raise ValueError("crash_times must be a list")
        restart_count = data.get("restart_count", 0)
        if not isinstance(restart_count, int) or isinstance(restart_count, bool):
            raise ValueError("restart_count must be an int")
        if restart_count < 0:
            raise ValueError("restart_count must be >= 0")
        unhealthy_handled = data.get("unhealthy_handled", False)
        if not isinstance(unhealthy_handled, bool):
            raise ValueError("unhealthy_handled must be a bool")
        last_reason = data.get("last_reason", "")
        if not isinstance(last_reason, str):
            raise ValueError("last_reason must be a string")
        last_backoff = _number(data.get("last_backoff_s", 0.0), "last_backoff_s")
        return cls(
            status=status,
            crash_times=tuple(_required_number(t, "crash_times[]") for t in crash_times),
            restart_count=restart_count,
            last_backoff_s=0.0 if last_backoff is None else last_backoff,
            started_at=_number(data.get("started_at"), "started_at"),
            healthy_since=_number(data.get("healthy_since"), "healthy_since"),
            unhealthy_handled=unhealthy_handled,
            last_reason=last_reason,
            pending=Pending.from_json(data.get("pending")),
        )


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number or null, got {value!r}")
    return float(value)


def _required_number(value: Any, name: str) -> float:
    number = _number(value, name)
    if number is None:
        raise ValueError(f"{name} must be a number")
    return number


def _recent_crashes(state: ServiceRestartState, now: float, policy: RestartPolicy) -> list[float]:
    # Clamp future stamps (wall clock stepped back) so they expire a window after `now`.
    clamped = (min(t, now) for t in state.crash_times)
    return [t for t in clamped if now - t < policy.crash_loop_window_s]


def _healthy_long_enough(state: ServiceRestartState, now: float, policy: RestartPolicy) -> bool:
    return state.healthy_since is not None and now - state.healthy_since >= policy.reset_after_s


def _record_failure(
    state: ServiceRestartState, now: float, policy: RestartPolicy, reason: str, *, delay: bool
) -> tuple[ServiceRestartState, Decision]:
    """Shared by crashes and unhealthy restarts: crash-loop check, then backoff."""
    crashes = [*_recent_crashes(state, now, policy), now]
    restart_count = 0 if _healthy_long_enough(state, now, policy) else state.restart_count
    base = replace(
        state,
        crash_times=tuple(crashes),
        healthy_since=None,
        last_reason=reason,
    )
    if len(crashes) >= policy.crash_loop_limit:
        message = (
            f"{len(crashes)} failures within {policy.crash_loop_window_s:g} s: not restarting; "
            "the container is kept for inspection; run `hyos-supervisor restart <service>` "
            "once fixed"
        )
        new = replace(base, status=ServiceStatus.CRASH_LOOP, restart_count=restart_count)
        return new, Decision(Action.STOP_CRASH_LOOP, reason=reason, message=message)
    restart_count += 1
    # Unhealthy restarts go at once (the health check's start period, interval and
    # retries already spaced them); they still raise the count so a later crash waits longer.
    backoff = backoff_for(restart_count, policy) if delay else 0.0
    new = replace(
        base,
        status=ServiceStatus.BACKOFF,
        restart_count=restart_count,
        last_backoff_s=backoff if delay else state.last_backoff_s,
    )
    return new, Decision(Action.RESTART, backoff_s=backoff, reason=reason)


def _ended(
    state: ServiceRestartState, status: ServiceStatus, reason: str, **more: Any
) -> ServiceRestartState:
    """The run is over (no start time, no healthy streak); the service is now `status`."""
    return replace(
        state, status=status, started_at=None, healthy_since=None, last_reason=reason, **more
    )


def on_exit(
    state: ServiceRestartState,
    kind: ExitKind,
    now: float,
    policy: RestartPolicy,
    *,
    reason: str = "",
    container: str = "hyos-server",
) -> tuple[ServiceRestartState, Decision]:
    """React to a container exit (``die`` event). ``reason`` is describe_exit()'s text.
    What the decision leaves to do later is the new state's ``pending`` step."""
    new, decision = _decide_exit(state, kind, now, policy, reason=reason, container=container)
    return _with_pending(new, decision, now, kind.value), decision


def _with_pending(
    state: ServiceRestartState,
    decision: Decision,
    now: float,
    cause: str,
    step: Step | None = None,
) -> ServiceRestartState:
    """Hold the decision's step as pending; a hold (crash loop, needs_auth) drops any;
    no decision keeps what was pending (the exit of our own stop mid-restart)."""
    step = step or _STEP_OF.get(decision.action)
    if step is not None:
        backoff = decision.backoff_s
        pending = Pending(step, now + backoff, decision.reason, backoff, cause)
        return replace(state, pending=pending)
    if decision.action is Action.NONE:
        return state
    return replace(state, pending=None)


def _decide_exit(
    state: ServiceRestartState,
    kind: ExitKind,
    now: float,
    policy: RestartPolicy,
    *,
    reason: str = "",
    container: str = "hyos-server",
) -> tuple[ServiceRestartState, Decision]:
    reason = reason or kind.value
    if kind is ExitKind.CLEAN:
        if state.status in (ServiceStatus.BACKOFF, ServiceStatus.UPDATING):
            # The exit of a stop we did as part of a pending restart/recreate
            # (e.g. restarting an unhealthy container): keep the plan going.
            return state, _NOTHING
        if state.status in (ServiceStatus.CRASH_LOOP, ServiceStatus.NEEDS_AUTH):
            # Keep the operator-facing status until `restart` clears it.
            return replace(state, started_at=None, healthy_since=None), _NOTHING
        return _ended(state, ServiceStatus.STOPPED, reason), _NOTHING
    if kind is ExitKind.UPDATE:
        new = _ended(state, ServiceStatus.UPDATING, reason)
        return new, Decision(Action.RECREATE, reason=reason)
    if kind is ExitKind.NEEDS_AUTH:
        new = _ended(state, ServiceStatus.NEEDS_AUTH, reason)
        message = needs_auth_message(container)
        return new, Decision(Action.NEEDS_AUTH, reason=reason, message=message)
    if kind is ExitKind.LOGIN_ENDED:
        # Not a failure: nobody approved the code. Held as needs_auth until the retry.
        retry = policy.auth_retry_s
        new = _ended(state, ServiceStatus.NEEDS_AUTH, reason, last_backoff_s=retry)
        message = login_retry_message(container, retry)
        return new, Decision(Action.RETRY_LOGIN, backoff_s=retry, reason=reason, message=message)
    if kind is ExitKind.UPDATE_BUTTON:
        # Asked for: the update installs on the next start. Not counted.
        new = _ended(state, ServiceStatus.UPDATING, reason)
        return new, Decision(Action.INSTALL_UPDATE, reason=reason)
    assert kind in _FAILURES, kind
    new, decision = _record_failure(state, now, policy, reason, delay=True)
    return replace(new, started_at=None), decision


def on_started(state: ServiceRestartState, now: float) -> ServiceRestartState:
    """The container is running (``start`` event, or found running on adoption).

    Any start means running, even from crash_loop/needs_auth (e.g. the dashboard
    started it): the crash timestamps are kept, so another crash inside the window
    goes straight back to crash_loop.
    """
    return replace(
        state,
        status=ServiceStatus.RUNNING,
        started_at=now,
        healthy_since=None,
        unhealthy_handled=False,
        pending=None,
    )


def on_healthy(state: ServiceRestartState, now: float) -> ServiceRestartState:
    """``health_status: healthy``. For services without a health check, call it right
    after on_started so their uptime can reset the backoff too."""
    since = state.healthy_since if state.healthy_since is not None else now
    return replace(state, healthy_since=min(since, now), unhealthy_handled=False)


def on_unhealthy(
    state: ServiceRestartState,
    now: float,
    started_at: float,
    start_period_s: float,
    busy: bool,
    policy: RestartPolicy,
) -> tuple[ServiceRestartState, Decision]:
    """``health_status: unhealthy`` (or seen on inspect during a reconcile).

    ``started_at`` is the container's own start time (Docker's State.StartedAt, wall
    clock), authoritative even when this state was just loaded from disk. ``busy`` is
    the daemon saying it is already stopping/restarting/recreating this container, as is
    a step still pending. Restarts at most once per unhealthy episode (ended by healthy
    or a new start); the restart is pending at once, as a stop and a start.
    """
    if busy or state.pending is not None:
        return state, _NOTHING
    if state.status is not ServiceStatus.RUNNING or state.unhealthy_handled:
        return state, _NOTHING
    if now - started_at < start_period_s:
        return state, _NOTHING  # still starting: the engine's own retries are not ours to cut
    new, decision = _record_failure(state, now, policy, "unhealthy", delay=False)
    return _with_pending(
        replace(new, unhealthy_handled=True), decision, now, "unhealthy", Step.RESTART
    ), decision


def reset(state: ServiceRestartState) -> ServiceRestartState:
    """Operator's ``hyos-supervisor restart <service>``: forget failures and clear
    crash_loop/needs_auth. The daemon then (re)starts the container itself."""
    status = (
        ServiceStatus.RUNNING if state.status is ServiceStatus.RUNNING else ServiceStatus.STOPPED
    )
    return replace(
        state,
        status=status,
        crash_times=(),
        restart_count=0,
        last_backoff_s=0.0,
        unhealthy_handled=False,
        last_reason="reset by operator",
        pending=None,
    )


def request(
    state: ServiceRestartState, step: Step, now: float, reason: str, cause: str = "requested"
) -> ServiceRestartState:
    """A step asked for from outside the exit/health flow (the operator's restart, a
    secret rotation, the manager following a restarted server): due now. `cause` is the
    word the totals count it by (Pending.cause)."""
    return replace(state, pending=Pending(step, now, reason, cause=cause))


def issue(state: ServiceRestartState) -> ServiceRestartState:
    """The pending step is being carried out: nothing is pending any more."""
    return replace(state, pending=None)


def cancel_pending(state: ServiceRestartState) -> ServiceRestartState:
    """The daemon drops a pending restart/recreate (shutdown or ``down``): mark stopped.
    crash_loop/needs_auth stay, so they survive a supervisor restart."""
    if state.status in (ServiceStatus.BACKOFF, ServiceStatus.UPDATING):
        return replace(state, status=ServiceStatus.STOPPED, pending=None)
    return state if state.pending is None else replace(state, pending=None)
