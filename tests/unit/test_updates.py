"""The daemon's side of updates (supervisor/updates.py) on the fake engine and the fake
clock: when the `[update] window` and the `auto` check ask for an update, and the hold a
failed rollback leaves."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.logs import bind
from supervisor.notify import Notifier
from supervisor.settings import load_settings
from supervisor.store import StateStore
from supervisor.supervision import Supervision
from supervisor.update import Phase, Source
from supervisor.updates import Updates
from tests.fakeclock import FakeClock
from tests.fakeengine import FakeEngine
from tests.unitkit import lone_worker

pytestmark = pytest.mark.anyio

# 2023-11-14 22:13:20 UTC
START = 1_700_000_000.0


def _updates(tmp_path: Path, clock: FakeClock, **update: Any) -> tuple[Updates, list[Any]]:
    sup = Supervision(
        load_settings(state_dir=str(tmp_path), update=update),
        FakeEngine(),
        Notifier(environ={}),
        StateStore(tmp_path / "state.json"),
        bind(logging.getLogger("test"), stack="t"),
        clock,
    )
    worker = lone_worker(sup, container_id="c1")
    seen: list[Any] = []

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await anyio.lowlevel.checkpoint()

    updates = Updates(sup, {"server": worker}, sleep=sleep)

    async def check() -> None:
        seen.append(("check", clock()))

    async def automatic(source: Source) -> None:
        seen.append((source.value, clock()))

    updates.check = check  # type: ignore[method-assign]
    updates._automatic = automatic  # type: ignore[method-assign]
    return updates, seen


async def _until(seen: list[Any], count: int, updates: Updates) -> None:
    with anyio.move_on_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(updates.run)
            while len(seen) < count:
                await anyio.sleep(0.001)
            tg.cancel_scope.cancel()


async def test_a_window_applies_at_its_moments_and_checks_only_notify(tmp_path: Path) -> None:
    clock = FakeClock(START)
    updates, seen = _updates(tmp_path, clock, window="daily 04:00", check_every_s=3600)
    await _until(seen, 30, updates)
    windows = [at for what, at in seen if what == "window"]
    assert windows and all(
        datetime.fromtimestamp(at, UTC).strftime("%H:%M") == "04:00" for at in windows
    )
    checks = [at for what, at in seen if what == "check"]
    assert checks[0] == START + 5 and checks[1] - checks[0] == 3600
    assert "auto" not in [what for what, _ in seen]  # auto is off


async def test_auto_without_a_window_applies_after_each_check(tmp_path: Path) -> None:
    clock = FakeClock(START)
    updates, seen = _updates(tmp_path, clock, auto=True, check_every_s=600)
    await _until(seen, 6, updates)
    assert [what for what, _ in seen[:6]] == ["check", "auto"] * 3
    assert seen[2][1] - seen[0][1] == 600


async def test_auto_with_a_window_waits_for_the_window(tmp_path: Path) -> None:
    clock = FakeClock(START)
    updates, seen = _updates(tmp_path, clock, auto=True, window="30 4 * * *")
    await _until(seen, 40, updates)
    assert "auto" not in [what for what, _ in seen]
    assert any(what == "window" for what, _ in seen)


async def test_a_failed_rollback_holds_the_server_until_resolved(tmp_path: Path) -> None:
    clock = FakeClock(START)
    updates, _ = _updates(tmp_path, clock)
    from supervisor import update as core

    tx = core.begin(Source.CLI, "v1", "v2", "c1", clock(), stopped=False)
    tx = core.advance(core.advance(tx, clock()), clock(), snapshot="snap1")
    tx = core.fail(core.fail(tx, "crashed", clock()), "disk full", clock())
    assert tx.phase is Phase.NEEDS_ATTENTION
    updates.updater._persist(tx)
    updates.load()
    assert updates.sup.update_hold
    refused = await updates.request({"command": "update"})
    assert refused["ok"] is False and "needs attention" in refused["error"]
    assert "backup restore snap1 --now" in refused["error"]
    resolved = await updates.request({"command": "update", "resolved": True})
    assert resolved["ok"] and not updates.sup.update_hold
    again = await updates.request({"command": "update", "resolved": True})
    assert again["ok"] is False


async def test_the_update_totals_outlive_the_daemon(tmp_path: Path) -> None:
    clock = FakeClock(START)
    updates, _ = _updates(tmp_path, clock)
    from supervisor import update as core
    from supervisor.update import Record

    tx = core.begin(Source.CLI, "v1", "v2", "c1", clock(), stopped=False)
    tx = core.advance(core.advance(tx, clock()), clock(), snapshot="snap1")
    tx = core.finish(core.advance(core.advance(tx, clock()), clock()), clock())
    aborted = core.abort(core.begin(Source.AUTO, "v2", "v3", "c1", clock(), stopped=False), "x", 1)
    record = Record().ended(tx, 7).ended(aborted, 7)
    updates.updater._write(None, record, current="v2")
    updates.load()
    facts = updates.sup.tallies.update
    assert facts.results == {"applied": 1, "rolled_back": 0, "failed": 1}
    assert facts.game_version == "v2"


async def test_an_automatic_update_asks_for_a_drain_and_logs_its_reply(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The drain's reply has a `message`: logging it must not clash with the LogRecord's
    own `message` (it once ended the daemon with a KeyError)."""
    caplog.set_level(logging.INFO)
    clock = FakeClock(START)
    updates, _ = _updates(tmp_path, clock)
    asked: list[tuple[str, Source, bool]] = []

    async def begin(version: str, source: Source, now: bool) -> dict[str, Any]:
        asked.append((version, source, now))
        return {"ok": True, "message": "updating"}

    async def prepare(source: Source, requested: str | None, container: Any = None) -> Any:
        from supervisor import update as core

        return core.begin(source, "v1", "v2", "c1", clock(), stopped=False)

    updates.begin_drained = begin
    updates.updater.prepare = prepare  # type: ignore[method-assign]
    await Updates._automatic(updates, Source.WINDOW)
    assert asked == [("v2", Source.WINDOW, False)]
    logged = [r for r in caplog.records if r.getMessage() == "update asked for"]
    assert len(logged) == 1 and getattr(logged[0], "reply", None) == "updating"
