"""The one fake wall clock of the unit tests: pass it where the code takes a clock
(`Supervision(..., clock)`, the restart state machine's `now`), move it with `advance`."""

from __future__ import annotations

T0 = 1_700_000_000.0  # a plausible wall-clock origin


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
