"""The engine's events for this stack's containers, forever: reconnect with backoff,
resume with since=, drop what since= replays, and hand each event to whoever it
concerns. A failure inside one handler never costs the stream."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from supervisor.dockertypes import EngineError, EngineEvent, ownership_filter
from supervisor.supervision import Supervision, patiently

WATCHED_EVENTS = ["die", "oom", "health_status", "start", "stop", "destroy"]


class EventFeed:
    def __init__(
        self,
        sup: Supervision,
        dispatch: Callable[[EngineEvent], None],
        request_pass: Callable[[bool], None],
    ) -> None:
        """`request_pass(startup)` asks for a stack pass: after a reconnect, one that
        starts what the engine's absence stopped."""
        self.sup = sup
        self.dispatch = dispatch
        self.request_pass = request_pass
        self.last_event_nano = 0

    def filters(self) -> dict[str, list[str]]:
        return {
            "type": ["container"],
            "label": ownership_filter(self.sup.settings.stack),
            "event": WATCHED_EVENTS,
        }

    async def follow(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Started once the first stream is open (a failure before that is raised)."""
        started = False
        since: str | None = None
        while True:
            try:
                async with self.sup.engine.events(self.filters(), since=since) as stream:
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        self.sup.log.info("event stream reconnected", extra={"since": since})
                        # Whatever the engine did while we were away: look, don't guess;
                        # and a start that waits to try again tries now.
                        self.sup.announce_engine_back()
                        self.request_pass(True)
                    async for event in stream:
                        since = self._take(event, since)
            except EngineError as err:
                if not started:
                    raise
                self.sup.log.warning("event stream lost", extra={"error": str(err) or repr(err)})
            except Exception as err:
                if not started:
                    raise
                self.sup.unexpected("following the engine's events", err)
            await self._await_engine()

    def _take(self, event: EngineEvent, since: str | None) -> str | None:
        self.sup.heartbeat.beat()
        nano = event.time_nano
        if nano and nano <= self.last_event_nano:
            return since  # replayed by since=
        self.last_event_nano = max(self.last_event_nano, nano)
        try:
            self.dispatch(event)
        except Exception as err:
            self.sup.unexpected("handling an event", err, action=event.action)
            self.request_pass(False)
        return f"{nano // 10**9}.{nano % 10**9:09d}" if nano else since

    async def _await_engine(self) -> None:
        """Bounded exponential backoff until the engine answers again."""
        # A ping of a local socket every 2 s at most: the stack comes back within 2 s of
        # the engine, not up to 15 s later (bench/bench_dockerd_restart.py).
        async for attempt in patiently(EngineError, 0.1, 2):
            with attempt:
                await self.sup.engine.ping(attempts=1)
