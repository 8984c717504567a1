"""A worker's inbox: one bounded first-in-first-out queue of work for one task.

It holds at most its bound of items. A wake-up takes no room of its own: the task looks
after every item it takes, so a wake-up is queued only while nothing else is and no item
is being taken (several in a row are one). An awaited `call` waits for room, so it is
never dropped. An item `put` without waiting (the event feed's, a hook's: senders that
must not block) that finds the inbox full is not queued: the inbox counts it, warns once
per overflow, and tells its task on the next item taken (`take_lost`), which then looks at
the whole world instead (a stack pass, for a service's worker).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio

Job = Callable[[], Awaitable[Any]]
T = TypeVar("T")


@dataclass(eq=False)
class Call:
    """A job whose caller waits for its outcome (a stack pass adopting its plan)."""

    job: Job
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


class Inbox(Generic[T]):
    """Items of type T, calls, and wake-ups (taken as None)."""

    def __init__(self, bound: int, on_overflow: Callable[[], None]) -> None:
        """`on_overflow` is told of the first item lost since the last one was taken."""
        self.bound = bound
        self._on_overflow = on_overflow
        self._send, self._receive = anyio.create_memory_object_stream[T | Call | None](bound)
        self._taking = False
        self._wake_queued = False
        self._lost = 0

    def put(self, item: T) -> bool:
        """Queue `item` without waiting; False if the inbox was full (it is counted)."""
        try:
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            if not self._lost:
                self._on_overflow()
            self._lost += 1
            return False
        return True

    def wake(self) -> None:
        if self._taking or self._wake_queued or self.queued():
            return
        self._wake_queued = True
        self._send.send_nowait(None)  # the inbox is empty: there is room

    async def call(self, job: Job) -> Any:
        """Queue `job` (waiting for room) and return (or raise) its outcome once taken."""
        call = Call(job)
        await self._send.send(call)
        await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def queued(self) -> int:
        """Items waiting."""
        return self._send.statistics().current_buffer_used

    async def next(self, timeout: float | None) -> T | Call | None:
        """The next item, or None (a wake-up, or `timeout` seconds without one)."""
        item: T | Call | None = None
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            item = await self._receive.receive()
        if item is None:
            self._wake_queued = False
        return item

    def take_lost(self) -> int:
        """How many items were lost since the last call (then 0 again)."""
        lost, self._lost = self._lost, 0
        return lost

    @contextmanager
    def taking(self) -> Iterator[None]:
        """While an item is taken: a look follows it, so a wake-up meanwhile is none."""
        self._taking = True
        try:
            yield
        finally:
            self._taking = False
