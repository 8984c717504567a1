"""The drain: warn the players, wait for an empty server (or the deadline), then act.

Pure: no I/O, no clock reads; every function takes `now` (wall-clock seconds, like the
restart state machine, so a persisted drain keeps its meaning across a daemon restart).

The shell runs one loop::

    state = start(action, now, policy)
    while True:
        decision = decide(policy, state, now)
        if decision.at > now: sleep until decision.at, then decide again
        POLL     -> ask the server for its player count: polled(state, now, n)
                    (or poll_failed(state, now) when the API did not answer)
        WARN     -> broadcast message(policy, state, now): warned(state, decision.offset)
        MISSED   -> warned(state, decision.offset), without a broadcast
        POSTPONE -> broadcast that the action waits for an empty server: postponed(state)
        ACT      -> save, stop gracefully, act: the drain is over
        SKIP     -> the action is not taken (a schedule's `only_if_empty` window passed)
        CANCELLED-> broadcast the cancellation (when warnings went out): the drain is over

What it promises (tests/unit/test_drain.py checks it over random join/leave traces):
- no ACT while the last count says players are online, before the deadline;
- ACT at the first poll that finds the server empty: polls are `poll_s` apart (10 s),
  `final_poll_s` (2 s) in the last `final_window_s` (60 s) before the deadline;
- each warning at its offset before the deadline, in order, once; a warning whose
  moment passed more than `WARN_SLACK_S` ago, before the last poll began, is dropped (a
  daemon restarted past it, the API was silent), never sent late; one whose moment came
  while a poll was in flight (REST calls take time on a busy machine) is sent when the
  poll returns, saying the true time left, unless a later one came due too; offsets
  beyond `max_wait` are never due;
- before the last minute, at most one status poll per `poll_s` (6 a minute at 10 s):
  well inside the plugin's limits (300/min, 120/min on /admin/*).

An API that does not answer (unreachable, 401 after a refresh, 5xx, a timeout) leaves
the count unknown: the drain keeps waiting, as it would with players online, until
the deadline (nobody is cut off mid-game because the API hiccuped; the delay is
bounded by `max_wait`). At the deadline an unknown count acts, whatever `on_deadline`
says: a postponement "until empty" could never end while the API stays silent.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "DEFAULT_MESSAGE",
    "DEFAULT_WARN_AT",
    "MESSAGE_FIELDS",
    "WARN_SLACK_S",
    "Decision",
    "DrainPolicy",
    "DrainState",
    "Kind",
    "cancel",
    "decide",
    "format_duration",
    "message",
    "next_warning",
    "parse_duration",
    "poll_failed",
    "polled",
    "postponed",
    "render",
    "shifted",
    "start",
    "validate_template",
    "warned",
]

DEFAULT_WARN_AT = "15m,5m,1m,30s,10s"
DEFAULT_MESSAGE = "The server will {action} in {time_left}. Your progress will be saved."
MESSAGE_FIELDS = frozenset({"action", "time_left"})
# A warning is sent within this of its moment, or not at all.
WARN_SLACK_S = 1.0

OnDeadline = Literal["act", "postpone", "skip"]


class Kind(StrEnum):
    POLL = "poll"  # ask the server how many players are online
    WARN = "warn"  # broadcast the warning for `offset`
    ACT = "act"  # save, stop, act: the drain is over
    POSTPONE = "postpone"  # the deadline passed with players on: wait for empty, no deadline
    SKIP = "skip"  # the deadline passed with players on: the action is not taken
    CANCELLED = "cancelled"  # the operator cancelled: the drain is over
    MISSED = "missed"  # a warning's moment passed unsent (a daemon restart): record, no broadcast


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    """The `[drain]` settings as the planner reads them (seconds)."""

    warn_at: tuple[float, ...] = (900.0, 300.0, 60.0, 30.0, 10.0)
    max_wait: float = 900.0
    # "skip" is not an operator's setting: it is what a schedule with `only_if_empty` uses.
    on_deadline: OnDeadline = "act"
    poll_s: float = 10.0
    final_poll_s: float = 2.0
    final_window_s: float = 60.0
    template: str = DEFAULT_MESSAGE

    def offsets(self) -> tuple[float, ...]:
        """The warnings that can be given at their moment, earliest first (largest offset)."""
        return tuple(sorted({o for o in self.warn_at if 0 < o <= self.max_wait}, reverse=True))


@dataclass(frozen=True, slots=True)
class DrainState:
    """One pending drain; persisted as JSON (`to_json`/`from_json`) by the shell."""

    action: str  # what is drained for, in words: "restart", "stop", ...
    started: float
    deadline: float
    warned: tuple[float, ...] = ()  # offsets broadcast (or dropped as stale), in order
    last_poll: float | None = None  # when the last status call was made
    players: int | None = None  # its answer; None before the first, or when it failed
    postponed: bool = False
    cancelled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "started": self.started,
            "deadline": self.deadline,
            "warned": list(self.warned),
            "last_poll": self.last_poll,
            "players": self.players,
            "postponed": self.postponed,
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_json(cls, data: Any) -> DrainState | None:
        """A persisted drain; None for anything that is not one (a damaged file)."""
        if not isinstance(data, dict):
            return None
        try:
            players = data.get("players")
            last_poll = data.get("last_poll")
            return cls(
                action=str(data["action"]),
                started=float(data["started"]),
                deadline=float(data["deadline"]),
                warned=tuple(float(o) for o in data.get("warned", ())),
                last_poll=None if last_poll is None else float(last_poll),
                players=None if players is None else int(players),
                postponed=bool(data.get("postponed", False)),
                cancelled=bool(data.get("cancelled", False)),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Kind
    at: float  # when it is due; <= now means now
    offset: float | None = None  # WARN: the warning's offset before the deadline
    reason: str = ""


def start(action: str, now: float, policy: DrainPolicy) -> DrainState:
    return DrainState(action=action, started=now, deadline=now + policy.max_wait)


def polled(state: DrainState, now: float, players: int) -> DrainState:
    return replace(state, last_poll=now, players=max(0, players))


def shifted(state: DrainState, seconds: float) -> DrainState:
    """The whole drain later by `seconds`: the shell's first status call took that long,
    and a warning due at the start (an offset of `max_wait`) must not count as passed."""
    return replace(
        state,
        started=state.started + seconds,
        deadline=state.deadline + seconds,
        last_poll=None if state.last_poll is None else state.last_poll + seconds,
    )


def poll_failed(state: DrainState, now: float) -> DrainState:
    """The API did not answer: the count is unknown until the next poll."""
    return replace(state, last_poll=now, players=None)


def warned(state: DrainState, offset: float) -> DrainState:
    """The warning for `offset` went out (or failed: it is never sent twice)."""
    return replace(state, warned=(*state.warned, offset))


def postponed(state: DrainState) -> DrainState:
    return replace(state, postponed=True)


def cancel(state: DrainState) -> DrainState:
    return replace(state, cancelled=True)


def _poll_interval(policy: DrainPolicy, state: DrainState, last: float) -> float:
    """`poll_s`, and `final_poll_s` once the next poll would fall in the last window."""
    if state.postponed:
        return policy.poll_s
    final = min(policy.final_poll_s, policy.poll_s)
    if state.deadline - (last + policy.poll_s) < policy.final_window_s:
        # Land on the window's first moment, then every final_poll_s inside it.
        window = state.deadline - policy.final_window_s
        return max(final, window - last) if last < window else final
    return policy.poll_s


def _pending_warnings(policy: DrainPolicy, state: DrainState) -> list[float]:
    return [o for o in policy.offsets() if o not in state.warned]


def decide(policy: DrainPolicy, state: DrainState, now: float) -> Decision:
    """The next thing to do and when. Due at once: the poll comes before a warning at
    the same moment (a server found empty needs no warning)."""
    if state.cancelled:
        return Decision(Kind.CANCELLED, now, reason="cancelled by the operator")
    if state.last_poll is None:
        return Decision(Kind.POLL, now, reason="first status")
    if state.players == 0:
        return Decision(Kind.ACT, now, reason="no players online")
    if not state.postponed and now >= state.deadline:
        if state.players is None:
            return Decision(Kind.ACT, now, reason="deadline reached; the player count is unknown")
        if policy.on_deadline == "act":
            return Decision(Kind.ACT, now, reason="deadline reached with players online")
        if policy.on_deadline == "skip":
            return Decision(Kind.SKIP, now, reason="players stayed past max_wait")
        return Decision(Kind.POSTPONE, now, reason="players stayed past max_wait")
    if not state.postponed and state.players is not None:
        late = [
            o
            for o in _pending_warnings(policy, state)
            if state.last_poll < state.deadline - o < now
        ]
        if late:
            # Came due while the last poll was in flight (a slow API, a busy machine): said
            # now, before the next poll, with the true time left; only the latest of them.
            if len(late) > 1:
                return Decision(Kind.MISSED, now, offset=late[0], reason="a later one is due")
            return Decision(Kind.WARN, now, offset=late[0])
    next_poll = state.last_poll + _poll_interval(policy, state, state.last_poll)
    if not state.postponed:
        next_poll = min(next_poll, state.deadline)
    if next_poll <= now:
        return Decision(Kind.POLL, now, reason="poll")
    if not state.postponed and state.players is not None:
        for offset in _pending_warnings(policy, state):
            due = state.deadline - offset
            if due < now - WARN_SLACK_S:
                # Passed while nobody could send it (a daemon restart): dropped, not late.
                return Decision(Kind.MISSED, now, offset=offset, reason="its moment passed")
            if due <= next_poll:
                return Decision(Kind.WARN, max(due, now), offset=offset)
            break
    return Decision(Kind.POLL, next_poll, reason="poll")


def next_warning(policy: DrainPolicy, state: DrainState) -> float | None:
    """When the next warning is due (for `status`), or None."""
    if state.postponed or state.cancelled:
        return None
    pending = _pending_warnings(policy, state)
    return state.deadline - pending[0] if pending else None


# --- words ---------------------------------------------------------------------------

_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$"
)


def parse_duration(text: str | float) -> float:
    """`15m`, `30s`, `1h`, `1m30s`, `90` (seconds) -> seconds; ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 15m, 30s or 1h")
    if isinstance(text, int | float):
        seconds = float(text)
    elif text.strip().startswith("-"):
        raise ValueError(f"{text!r} is negative; use a duration of 0 or more, e.g. 15m")
    else:
        match = _DURATION.match(text.strip().lower())
        if not text.strip() or not match:
            raise ValueError(f"{text!r} is not a duration; use e.g. 15m, 30s, 1h or 1m30s")
        seconds = (
            float(match["h"] or 0) * 3600 + float(match["m"] or 0) * 60 + float(match["s"] or 0)
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text!r} is negative; use a duration of 0 or more, e.g. 15m")
    return seconds


def format_duration(seconds: float) -> str:
    """How a warning says the time left: `15 minutes`, `1 minute 30 seconds`, `10 seconds`."""
    total = max(0, round(seconds))
    minutes, secs = divmod(total, 60)
    parts = []
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    if secs or not minutes:
        parts.append(f"{secs} second{'s' if secs != 1 else ''}")
    return " ".join(parts)


def validate_template(template: str) -> str:
    """A message template uses only `{action}` and `{time_left}`; ValueError naming the
    first unknown field otherwise."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ValueError(
            f"{template!r} is not a valid template ({err}); use {{action}} and {{time_left}}"
        ) from None
    for name in fields:
        if name not in MESSAGE_FIELDS:
            raise ValueError(
                f"unknown field {{{name}}} in the message; use {{action}} and {{time_left}}"
            )
    return template


def render(template: str, action: str, seconds_left: float) -> str:
    return template.format(action=action, time_left=format_duration(seconds_left))


def message(policy: DrainPolicy, state: DrainState, now: float) -> str:
    """The warning to broadcast now."""
    return render(policy.template, state.action, state.deadline - now)
