"""The drain's shell on the fake clock: what it asks the API, in which order, what it logs."""

from __future__ import annotations

import logging

import anyio
import pytest

from supervisor import drain
from supervisor.drain import DrainPolicy, DrainState, Kind
from supervisor.drainer import CANCELLED_MESSAGE, Drainer
from supervisor.serverapi import ApiError, Failure, ServerStatus
from tests.fakeclock import T0, FakeClock


class FakeApi:
    """Players leave at the given times; `down` makes every call fail in [from, to)."""

    def __init__(
        self, clock: FakeClock, leaves: list[float], down: tuple[float, float] = (0, 0)
    ) -> None:
        self.clock = clock
        self.leaves = leaves
        self.down = down
        self.calls: list[tuple[float, str, str]] = []
        self.on_call: list[object] = []

    def _check(self, what: str, detail: str = "") -> None:
        self.calls.append((self.clock.now - T0, what, detail))
        if self.down[0] <= self.clock.now - T0 < self.down[1]:
            raise ApiError(Failure.UNREACHABLE, "the server is not running")

    async def status(self) -> ServerStatus:
        self._check("status")
        online = sum(1 for t in self.leaves if t > self.clock.now - T0)
        return ServerStatus(True, online, 100, "S")

    async def broadcast(self, message: str) -> None:
        self._check("broadcast", message)

    async def save(self) -> None:
        self._check("save")


def drainer(policy: DrainPolicy, api: FakeApi, clock: FakeClock, **kwargs: object) -> Drainer:
    async def wait(seconds: float, cancelled: anyio.Event) -> None:
        clock.advance(seconds)
        await anyio.sleep(0)  # a checkpoint, as the real wait is: other tasks run

    return Drainer(policy, api, clock, logging.getLogger("test.drain"), wait=wait, **kwargs)  # type: ignore[arg-type]


def run(policy: DrainPolicy, api: FakeApi, clock: FakeClock) -> tuple[Kind, list[DrainState]]:
    saved: list[DrainState] = []

    async def main() -> Kind:
        d = drainer(policy, api, clock, persist=saved.append)
        return await d.run(drain.start("restart", clock.now, policy))

    return anyio.run(main), saved


def test_two_players_warned_in_order_then_saved_and_acted_after_they_leave(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    api = FakeApi(clock, leaves=[250.0, 333.0])
    with caplog.at_level(logging.INFO, "test.drain"):  # each step's fields are loggable
        kind, saved = run(DrainPolicy(), api, clock)
    assert kind is Kind.ACT
    broadcasts = [(t, m) for t, w, m in api.calls if w == "broadcast"]
    assert broadcasts == [
        (0, "The server will restart in 15 minutes. Your progress will be saved.")
    ]
    assert api.calls[-1] == (340, "save", "")  # polls at 0, 10, ..., 340
    assert saved[-1].players == 0


def test_empty_server_is_one_status_call_and_a_save() -> None:
    clock = FakeClock()
    api = FakeApi(clock, leaves=[])
    kind, _ = run(DrainPolicy(), api, clock)
    assert kind is Kind.ACT
    assert [w for _, w, _ in api.calls] == ["status", "save"]


def test_the_api_down_waits_until_the_deadline_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    api = FakeApi(clock, leaves=[10_000.0], down=(0, 10_000))
    with caplog.at_level(logging.INFO, "test.drain"):
        kind, _ = run(DrainPolicy(max_wait=120), api, clock)
    assert kind is Kind.ACT and clock.now == T0 + 120
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("drain cannot count players; waiting until the deadline") == 1
    assert messages[-1] == "drain done"


def test_cancel_broadcasts_that_it_was_cancelled() -> None:
    clock = FakeClock()
    api = FakeApi(clock, leaves=[10_000.0])

    async def main() -> Kind:
        d = drainer(DrainPolicy(), api, clock)

        async def cancel_later() -> None:
            while not api.calls or api.calls[-1][0] < 30:
                await anyio.sleep(0)
            d.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_later)
            kind = await d.run(drain.start("restart", clock.now, DrainPolicy()))
        return kind

    assert anyio.run(main) is Kind.CANCELLED
    assert api.calls[-1][1:] == ("broadcast", CANCELLED_MESSAGE.format(action="restart"))
    assert "save" not in [w for _, w, _ in api.calls]


def test_a_slow_first_status_call_does_not_cost_the_first_warning() -> None:
    """The first call fetches the credentials and a token (seconds through the engine):
    the drain starts when it knows, so the warning due at the start is still given."""
    clock = FakeClock()

    class SlowFirst(FakeApi):
        async def status(self) -> ServerStatus:
            if not self.calls:
                clock.advance(3)
            return await super().status()

    api = SlowFirst(clock, leaves=[100.0])
    kind, saved = run(DrainPolicy(), api, clock)
    assert kind is Kind.ACT
    assert [c for c in api.calls if c[1] == "broadcast"] == [
        (3, "broadcast", "The server will restart in 15 minutes. Your progress will be saved.")
    ]
    assert saved[-1].deadline == T0 + 3 + 900
