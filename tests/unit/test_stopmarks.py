"""Which exits were asked for (supervisor.stopmarks), as a model and in the daemon.

The model: a server that Docker runs, stops and starts as it does for the guard's verbs
(stop of a stopped container: 304, nothing happens; restart of a stopped one: only a
start; start of a running one: 304), crashes at any moment, and the daemon, which hears
the events and Docker's answers late and in any interleaving. Every crash must be judged
a crash (and so restarted), every exit a stop caused must be judged asked for, and once
everything is heard no mark is left to swallow a later crash. The daemon's side is in
test_dashboard_stops.py."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hypothesis import event, given, settings
from hypothesis import strategies as st

from supervisor import stopmarks

CID = "c" * 64


@dataclass
class World:
    running: bool = True
    now: float = 1000.0
    marks: dict[str, tuple[float, ...]] = field(default_factory=dict)
    events: deque[tuple[str, float, str]] = field(default_factory=deque)  # (kind, time, cause)
    # (mark, status, answered at): the guard hears Docker's answer as it relays it, before
    # the daemon can hear any event that happened after it (those come through the event
    # stream): hearing an event first hears the answers given before it.
    answers: deque[tuple[float, int, float]] = field(default_factory=deque)
    judged: list[tuple[str, bool]] = field(default_factory=list)  # (cause, asked)

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    def _mark(self) -> float:
        at = self.tick()
        self.marks = stopmarks.mark(self.marks, CID, at)
        return at

    def _die(self, cause: str) -> None:
        self.running = False
        self.events.append(("die", self.tick(), cause))

    def _start(self) -> None:
        self.running = True
        self.events.append(("start", self.tick(), ""))

    def step(self, op: str) -> None:
        if op == "dashboard stop":
            at = self._mark()
            if self.running:
                self._die("asked")
            stopped = bool(self.events) and self.events[-1][1] > at
            self.answers.append((at, 204 if stopped else 304, self.tick()))
        elif op == "dashboard stop refused":  # Docker errs (a 500) and stops nothing
            self.answers.append((self._mark(), 500, self.tick()))
        elif op == "dashboard restart":
            at = self._mark()
            if self.running:
                self._die("asked")
            self._start()
            self.answers.append((at, 204, self.tick()))
        elif op == "dashboard start":
            self.tick()
            if not self.running:
                self._start()
        elif op == "supervisor restart":  # the worker's own RESTART step
            self._mark()
            if self.running:
                self._die("asked")
            self._start()
        elif op == "supervisor start":  # a crashed server started again after its backoff
            if not self.running:
                self._start()
        elif op == "crash":  # docker kill, the game dying, OOM
            if self.running:
                self._die("crash")
        elif op == "hear event" and self.events:
            self._hear_event()
        elif op == "hear answer" and self.answers:
            self._hear_answer()

    def _hear_event(self) -> None:
        kind, at, cause = self.events.popleft()
        while self.answers and self.answers[0][2] < at:
            self._hear_answer()
        if kind == "start":
            self.marks = stopmarks.on_start(self.marks, CID, at)
        else:
            self.marks, asked = stopmarks.on_exit(self.marks, CID, at)
            self.judged.append((cause, asked))

    def _hear_answer(self) -> None:
        at, status, _ = self.answers.popleft()
        if not 200 <= status < 300:
            self.marks = stopmarks.withdraw(self.marks, CID, at)

    def hear_everything(self, answers_first: bool) -> None:
        while self.events or self.answers:
            if self.answers and (answers_first or not self.events):
                self._hear_answer()
            else:
                self._hear_event()


OPS = st.sampled_from([
    "dashboard stop", "dashboard stop", "dashboard stop refused", "dashboard restart",
    "dashboard start", "dashboard start", "supervisor restart", "supervisor start",
    "crash", "crash", "hear event", "hear event", "hear answer", "hear answer",
])  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.booleans(), st.lists(OPS, max_size=40), st.booleans())
def test_property_every_crash_no_stop_caused_is_restarted(
    running: bool, ops: list[str], answers_first: bool
) -> None:
    world = World(running=running)
    for op in ops:
        world.step(op)
    world.hear_everything(answers_first)
    for cause, asked in world.judged:
        assert asked is (cause == "asked"), (ops, world.judged)
    event(f"crashes {min(sum(c == 'crash' for c, _ in world.judged), 3)}")
    # Nothing left to swallow the next crash: start it and kill it.
    assert world.marks == {}, ops
    world.step("supervisor start")
    world.step("crash")
    world.hear_everything(answers_first)
    assert world.judged[-1] == ("crash", False)


def test_the_reproducer_as_a_model() -> None:
    """Stop, stop again (304), start, kill: the kill is a crash. On c7d2e34 the second
    stop left a mark (a set of ids) that swallowed it."""
    world = World(running=True)
    for op in ("dashboard stop", "hear event", "hear answer", "dashboard stop",
               "dashboard start", "crash"):  # fmt: skip
        world.step(op)
    world.hear_everything(answers_first=False)  # the 304 heard last: the start clears it
    assert world.judged == [("asked", True), ("crash", False)]


def test_a_mark_is_consumed_only_by_an_exit_after_it() -> None:
    marks = stopmarks.mark({}, CID, 10.0)
    left, asked = stopmarks.on_exit(marks, CID, 9.0)  # a crash racing the request
    assert not asked and left == marks
    left, asked = stopmarks.on_exit(marks, CID, 11.0)
    assert asked and left == {}
    left, asked = stopmarks.on_exit(marks, CID, None)  # no time from the engine
    assert asked and left == {}
    assert stopmarks.on_start(marks, CID, None) == marks
    assert stopmarks.withdraw(marks, CID, 3.0) == marks
    assert stopmarks.moment(None) is None


def test_engine_times_as_moments() -> None:
    from datetime import UTC, datetime

    assert stopmarks.moment(datetime(2026, 1, 1, tzinfo=UTC)) == 1767225600.0
    assert stopmarks.moment(datetime(1970, 1, 1, tzinfo=UTC)) is None  # a zero time_nano
    assert stopmarks.moment(datetime(1, 1, 1, tzinfo=UTC)) is None  # Docker's 0001-01-01
