"""The update transaction (supervisor/update.py): pure, with the fake clock."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from supervisor import update
from supervisor.update import Outcome, Phase, Record, Resume, Source, Transaction
from tests.fakeclock import FakeClock


def _tx(clock: FakeClock, *, stopped: bool = False) -> Transaction:
    return update.begin(Source.CLI, "v1", "v2", "c0ffee", clock(), stopped=stopped)


def _to(tx: Transaction, phase: Phase, clock: FakeClock) -> Transaction:
    while tx.phase is not phase:
        clock.advance(1)
        tx = update.advance(tx, clock(), snapshot="snap1" if tx.phase is Phase.SNAPSHOT else None)
    return tx


def test_a_good_update_walks_every_phase_once_in_order() -> None:
    clock = FakeClock()
    tx = _to(_tx(clock), Phase.GATE, clock)
    tx = update.finish(tx, clock.advance(120))
    assert tx.phase is Phase.DONE and tx.outcome is Outcome.APPLIED and tx.terminal
    assert [name for name, _ in tx.steps] == [p.value for p in update.ORDER]
    assert tx.snapshot == "snap1"
    assert tx.ended == clock()


def test_the_snapshot_phase_needs_its_id() -> None:
    clock = FakeClock()
    tx = update.advance(_tx(clock), clock())
    with pytest.raises(ValueError, match="snapshot id"):
        update.advance(tx, clock())


@pytest.mark.parametrize("phase", [Phase.STOP, Phase.SNAPSHOT])
def test_a_failure_before_the_install_aborts_and_marks_nothing_bad(phase: Phase) -> None:
    clock = FakeClock()
    tx = update.fail(_to(_tx(clock), phase, clock), "restic failed", clock.advance(1))
    assert tx.phase is Phase.ABORTED and tx.outcome is Outcome.ABORTED
    record = Record().ended(tx, keep_days=7)
    assert record.bad == () and record.last is not None and record.last["result"] == "aborted"
    assert record.pinned == ()


@pytest.mark.parametrize("phase", [Phase.INSTALL, Phase.START, Phase.GATE])
def test_a_failure_after_the_install_rolls_back_then_marks_the_version_bad(phase: Phase) -> None:
    clock = FakeClock()
    tx = update.fail(_to(_tx(clock), phase, clock), "crashed at boot (exit 1)", clock.advance(1))
    assert tx.phase is Phase.ROLLBACK and not tx.terminal
    assert tx.reason == "crashed at boot (exit 1)"
    assert (tx.gate_failed_at is not None) is (phase is Phase.GATE)
    tx = update.advance(tx, clock.advance(20))
    assert tx.phase is Phase.ROLLBACK_GATE
    tx = update.finish(replace(tx, ready_at=clock.advance(4)), clock.advance(10))
    assert tx.phase is Phase.ROLLED_BACK and tx.outcome is Outcome.ROLLED_BACK
    record = Record().ended(tx, keep_days=7)
    assert record.bad == ("v2",)
    assert record.last is not None and record.last["reason"] == "crashed at boot (exit 1)"
    assert record.pinned == ()  # only a confirmed update keeps its pin for keep_days
    assert record.last["rollback_s"] == 24.0  # failure -> old version ready again


def test_a_failed_rollback_needs_attention_with_both_reasons() -> None:
    clock = FakeClock()
    tx = update.fail(_to(_tx(clock), Phase.GATE, clock), "unhealthy", clock())
    tx = update.fail(tx, "restore failed: disk full", clock.advance(5))
    assert tx.phase is Phase.NEEDS_ATTENTION and tx.outcome is Outcome.FAILED
    assert tx.reason == "unhealthy; the rollback failed: restore failed: disk full"
    assert tx.snapshot == "snap1"
    assert update.restore_command(tx.snapshot) == "hyos-supervisor backup restore snap1 --now"
    assert Record().ended(tx, 7).bad == ("v2",)
    with pytest.raises(ValueError, match="already ended"):
        update.fail(tx, "again", clock())


def test_a_confirmed_update_pins_its_snapshot_for_keep_days_then_releases_it() -> None:
    clock = FakeClock()
    tx = update.finish(_to(_tx(clock), Phase.GATE, clock), clock.advance(120))
    record = Record(bad=("v2",)).ended(tx, keep_days=2)
    assert record.bad == ()  # the operator's retry of a bad version worked
    assert record.pinned == (("snap1", clock() + 2 * 86400),)
    assert update.release_due(record.pinned, clock.advance(2 * 86400 - 1)) == ()
    assert update.release_due(record.pinned, clock.advance(1)) == ("snap1",)
    assert record.counts == {"applied": 1}


def test_resume_never_starts_a_half_installed_server() -> None:
    clock = FakeClock()
    for phase, running, expected in [
        (Phase.STOP, True, Resume.FROM_STOP),
        (Phase.SNAPSHOT, False, Resume.FROM_STOP),
        (Phase.INSTALL, False, Resume.INSTALL),
        (Phase.INSTALL, True, Resume.ROLL_BACK),
        (Phase.START, True, Resume.GATE),
        (Phase.START, False, Resume.ROLL_BACK),
        (Phase.GATE, True, Resume.GATE),
        (Phase.GATE, False, Resume.ROLL_BACK),
    ]:
        tx = _to(_tx(clock), phase, clock)
        assert update.resume(tx, running) is expected, (phase, running)
    rolling = update.fail(_to(_tx(clock), Phase.GATE, clock), "x", clock())
    assert update.resume(rolling, True) is Resume.ROLL_BACK
    assert update.resume(update.advance(rolling, clock()), False) is Resume.ROLL_BACK
    done = update.finish(_to(_tx(clock), Phase.GATE, clock), clock())
    assert update.resume(done, True) is Resume.NOTHING


def test_the_transaction_survives_its_json_and_refuses_garbage() -> None:
    clock = FakeClock()
    tx = update.fail(_to(_tx(clock, stopped=True), Phase.GATE, clock), "why", clock())
    again = Transaction.from_json(json.loads(json.dumps(tx.to_json())))
    assert again == tx
    garbage: list[object] = [None, [], {"id": "x"}, {**tx.to_json(), "phase": "nope"}, "text"]
    for bad in garbage:
        assert Transaction.from_json(bad) is None
    record = Record.ended(Record(), update.finish(update.advance(tx, clock()), clock()), 1)
    assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert Record.from_json({"pinned": [["x"]], "counts": "no"}) == Record()


@pytest.mark.parametrize(
    ("source", "current", "available", "requested", "bad", "version", "words"),
    [
        (Source.CLI, "v1", "v2", None, (), "v2", None),
        (Source.AUTO, "v1", "v2", None, ("v2",), None, "not retried"),
        (Source.WINDOW, "v1", "v2", None, ("v2",), None, "not retried"),
        (Source.DASHBOARD, "v1", "v2", None, ("v2",), None, "not retried"),
        (Source.CLI, "v1", "v2", None, ("v2",), None, "update --version v2"),
        (Source.CLI, "v1", "v2", "v2", ("v2",), "v2", None),  # explicit: may retry
        (Source.CLI, "v1", None, None, (), None, "no newer version"),
        (Source.AUTO, "v2", "v2", None, (), None, "up to date"),
        (Source.CLI, "v2", "v3", "v2", (), None, "already installed"),
    ],
)
def test_choose_target(
    source: Source,
    current: str,
    available: str | None,
    requested: str | None,
    bad: tuple[str, ...],
    version: str | None,
    words: str | None,
) -> None:
    target = update.choose_target(source, current, available, requested, bad)
    assert target.version == version
    if words is None:
        assert target.refused is None
    else:
        assert target.refused is not None and words in target.refused


@pytest.mark.parametrize(
    ("candidate", "than", "expected"),
    [
        ("2026.01.15-abc", "2026.01.02-fff", True),
        ("2026.01.02-fff", "2026.01.15-abc", False),
        ("2026.1.10", "2026.1.9", True),
        ("v2", "v2", False),
        ("v2", None, True),
    ],
)
def test_newer_compares_numbers_as_numbers(
    candidate: str, than: str | None, expected: bool
) -> None:
    assert update.newer(candidate, than) is expected


def test_automatic_sources() -> None:
    assert not update.is_automatic(Source.CLI)
    assert all(update.is_automatic(s) for s in Source if s is not Source.CLI)
