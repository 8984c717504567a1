"""The drain's shell: runs the pure planner (supervisor/drain.py) against the server's
REST API (supervisor/serverapi.py) until the action is due, skipped or cancelled.

It does what `decide` says and nothing else: polls, broadcasts the warnings, and on ACT
asks the server to save (`POST /server/save`, waited for) so the caller's graceful stop
that follows loses nothing. Each step is logged once; an API failure is logged when it
starts and when it ends, not at every poll. The state is handed to `persist` after each
step, so a daemon that restarts resumes the drain where it was (or cancels it).

Waiting is interruptible: `cancel()` ends the drain at once, with a broadcast that it was
cancelled when players were warned; `hurry()` acts at once (an operator's `--now` joining
a pending drain); `poll_now()` asks for the count at once instead of at the next poll
(the server stopped: a crash is restarted at once, and nobody is on a stopped server).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

from supervisor import drain
from supervisor.drain import DrainPolicy, DrainState, Kind
from supervisor.serverapi import ApiError, ServerStatus

__all__ = ["CANCELLED_MESSAGE", "POSTPONED_MESSAGE", "DrainApi", "Drainer"]

CANCELLED_MESSAGE = "The {action} was cancelled. Carry on!"
POSTPONED_MESSAGE = "The {action} waits until the server is empty."


class DrainApi(Protocol):
    async def status(self) -> ServerStatus: ...
    async def broadcast(self, message: str) -> None: ...
    async def save(self) -> None: ...


class Drainer:
    def __init__(
        self,
        policy: DrainPolicy,
        api: DrainApi,
        clock: Callable[[], float],
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
        persist: Callable[[DrainState], None] = lambda state: None,
        wait: Callable[[float, anyio.Event], Awaitable[None]] | None = None,
    ) -> None:
        self.policy = policy
        self.api = api
        self.clock = clock
        self.log = log
        self.persist = persist
        self._wait = wait or _wait_or_cancel
        self._cancel = anyio.Event()
        self._wake = anyio.Event()  # set by cancel, hurry and poll_now: look again now
        self._hurry = False
        self._poll_now = False
        self._failing: str | None = None  # the API failure being reported, once
        self.state: DrainState | None = None

    def cancel(self) -> None:
        self._cancel.set()
        self._wake.set()

    def hurry(self) -> None:
        """Act now (save, then the action), whatever the players."""
        self._hurry = True
        self._wake.set()

    def poll_now(self) -> None:
        self._poll_now = True
        self._wake.set()

    async def run(self, state: DrainState) -> Kind:
        """Until the drain ends: ACT (saved, ready to stop), SKIP or CANCELLED."""
        self.state = state
        self.log.info(
            "drain started",
            extra={"action": state.action, "deadline_s": round(state.deadline - self.clock())},
        )
        while True:
            if self._cancel.is_set() and not state.cancelled:
                state = drain.cancel(state)
            now = self.clock()
            if self._hurry and not state.cancelled:
                await self._finish(Kind.ACT, state, "asked to act now")
                self.state = state
                return Kind.ACT
            if self._poll_now and not state.cancelled:
                self._poll_now = False
                state = await self._poll(state, now)
                self.state = state
                self.persist(state)
                continue
            decision = drain.decide(self.policy, state, now)
            if decision.at > now:
                if self._wake.is_set():
                    self._wake = anyio.Event()
                await self._wait(decision.at - now, self._wake)
                continue
            kind = decision.kind
            first = state.last_poll is None
            if kind is Kind.POLL:
                state = await self._poll(state, now)
            elif kind is Kind.WARN:
                assert decision.offset is not None
                text = drain.message(self.policy, state, now)
                if await self._broadcast(text):
                    self.log.info("drain warning", extra={"text": text})
                state = drain.warned(state, decision.offset)
            elif kind is Kind.MISSED:
                assert decision.offset is not None
                state = drain.warned(state, decision.offset)
            elif kind is Kind.POSTPONE:
                self.log.warning("drain deadline passed with players online: postponed")
                await self._broadcast(POSTPONED_MESSAGE.format(action=state.action))
                state = drain.postponed(state)
            else:
                await self._finish(kind, state, decision.reason)
                self.state = state
                return kind
            self.persist(state)
            if first:
                # The first count took seconds (the credentials, a token, the state file's
                # fsync): the drain starts when it knows, so the warning due at its start
                # is not dropped as passed (drain.WARN_SLACK_S).
                state = drain.shifted(state, self.clock() - now)
            self.state = state

    async def _poll(self, state: DrainState, now: float) -> DrainState:
        try:
            status = await self.api.status()
        except ApiError as err:
            if self._failing != err.failure.value:
                self._failing = err.failure.value
                self.log.warning(
                    "drain cannot count players; waiting until the deadline",
                    extra={"failure": err.failure.value, "error": err.detail},
                )
            return drain.poll_failed(state, now)
        if self._failing is not None:
            self._failing = None
            self.log.info("drain counts players again")
        if state.players != status.player_count:
            self.log.info("drain players online", extra={"players": status.player_count})
        return drain.polled(state, now, status.player_count)

    async def _broadcast(self, text: str) -> bool:
        try:
            await self.api.broadcast(text)
        except ApiError as err:
            self.log.warning(
                "drain broadcast failed", extra={"failure": err.failure.value, "error": err.detail}
            )
            return False
        return True

    async def _finish(self, kind: Kind, state: DrainState, reason: str) -> None:
        if kind is Kind.CANCELLED:
            if state.warned:
                await self._broadcast(CANCELLED_MESSAGE.format(action=state.action))
            self.log.info("drain cancelled", extra={"action": state.action})
        elif kind is Kind.SKIP:
            self.log.info("drain skipped", extra={"action": state.action, "reason": reason})
        else:
            # The world on disk before the stop; the stop's own save follows anyway.
            try:
                await self.api.save()
            except ApiError as err:
                self.log.warning(
                    "drain save failed; the graceful stop saves",
                    extra={"failure": err.failure.value, "error": err.detail},
                )
            self.log.info("drain done", extra={"action": state.action, "reason": reason})


async def _wait_or_cancel(seconds: float, cancelled: anyio.Event) -> None:
    with anyio.move_on_after(seconds):
        await cancelled.wait()
