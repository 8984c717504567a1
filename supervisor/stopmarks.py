"""Which exits were asked for: a stop mark belongs to the run it ends. Pure, no I/O.

A stop of ours or the dashboard's marks the container *before* the stop is sent, so the
exit it causes finds the mark however late its `die` event is handled. A mark is:
- consumed by the first exit of that container at or after the moment it was made (an
  exit from before it, a crash racing the request, is not the stop's doing);
- withdrawn when the request it was made for is answered without a stop (Docker's 304 for
  a container that was not running, or any error): no exit of that run was asked for;
- cleared by a start of that container after it was made (a restart of a stopped
  container only starts it): a mark never outlives into the next run.

Moments are wall-clock seconds (the engine's event times and `FinishedAt`, the daemon's
clock for the marks); None where the engine gave no time, then a mark counts as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

Marks = Mapping[str, tuple[float, ...]]


def moment(at: datetime | None) -> float | None:
    """An engine time as seconds; None for a missing or zero time (Docker's 0001-01-01)."""
    if at is None:
        return None
    seconds = at.timestamp()
    return seconds if seconds > 0 else None


def mark(marks: Marks, container_id: str, at: float) -> dict[str, tuple[float, ...]]:
    """A stop of `container_id` is about to be sent, at `at`."""
    return {**marks, container_id: (*marks.get(container_id, ()), at)}


def withdraw(marks: Marks, container_id: str, at: float) -> dict[str, tuple[float, ...]]:
    """The stop marked at `at` was answered without stopping anything: forget that mark."""
    left = list(marks.get(container_id, ()))
    if at in left:
        left.remove(at)
    return _with(marks, container_id, tuple(left))


def on_exit(
    marks: Marks, container_id: str, exited_at: float | None
) -> tuple[dict[str, tuple[float, ...]], bool]:
    """-> (marks, asked): was this exit caused by a marked stop? Consumes those marks."""
    own = marks.get(container_id, ())
    if exited_at is None:
        return _with(marks, container_id, ()), bool(own)
    before = tuple(t for t in own if t <= exited_at)
    after = tuple(t for t in own if t > exited_at)
    return _with(marks, container_id, after), bool(before)


def on_start(
    marks: Marks, container_id: str, started_at: float | None
) -> dict[str, tuple[float, ...]]:
    """The container started: marks made before that start are stale (no exit of the new
    run was asked for by them)."""
    if started_at is None:
        return dict(marks)
    return _with(
        marks, container_id, tuple(t for t in marks.get(container_id, ()) if t > started_at)
    )


def _with(marks: Marks, container_id: str, own: tuple[float, ...]) -> dict[str, tuple[float, ...]]:
    out = {k: v for k, v in marks.items() if k != container_id}
    if own:
        out[container_id] = own
    return out
