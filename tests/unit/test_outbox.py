"""The notification outbox and its sender: durable before sending, private, retried with
backoff, dropped after 24 h, never in the way of supervision. Deliveries go through
Apprise's json:// to a real local HTTP receiver (tests/receiver.py)."""

from __future__ import annotations

import logging
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from supervisor import alerts, outbox
from supervisor.alerts import Alert
from supervisor.alertsender import AlertSender, deliver, with_key
from supervisor.outbox import Entry, Outbox
from tests.fakeclock import FakeClock
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio

TOKEN = "s3cr3t-token-path"


def alert(n: int, at: float = 1_700_000_000.0) -> Alert:
    return alerts.backup_failed("t", at + n, error=f"failure {n}", scheduled=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.down()


# --- the files --------------------------------------------------------------------------


def test_an_alert_is_on_disk_0600_in_a_0700_dir_before_add_returns(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "t.outbox")
    outbox.private(box.path)
    assert box.add(alert(1), ("abc",), 10.0)
    assert not box.add(alert(1), ("abc",), 11.0)  # the same key: kept once
    (file,) = box.path.iterdir()
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(box.path.stat().st_mode) == 0o700
    (entry,) = box.entries()
    assert entry.alert == alert(1) and entry.owed == ("abc",) and entry.created_at == 10.0


def test_unreadable_files_are_skipped_and_left_alone(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.add(alert(1), ("a",), 1.0)
    (tmp_path / ("0" * 32 + ".json")).write_text("{torn")
    (tmp_path / ("f" * 32 + ".json")).write_text('{"alert": 1}')
    assert [e.key for e in box.entries()] == [alert(1).key]
    assert len(list(tmp_path.iterdir())) == 3


def test_retry_schedule_expiry_and_backlog_are_pure() -> None:
    assert [outbox.retry_delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert outbox.retry_delay(50) == outbox.RETRY_CAP_S == 300.0
    entry = Entry(alert(1), 100.0, ("a", "b"), next_at=100.0)
    failed = outbox.failed(entry, 150.0, "refused")
    assert (failed.attempts, failed.next_at, failed.last_error) == (1, 152.0, "refused")
    half = outbox.taken(failed, "a", 160.0)
    assert half.owed == ("b",) and half.delivered_at is None
    assert outbox.taken(half, "b", 170.0).delivered_at == 170.0
    assert not outbox.expired(entry, 100.0 + 24 * 3600)
    assert outbox.expired(entry, 100.0 + 24 * 3600 + 1)
    view = outbox.backlog([failed, outbox.taken(half, "b", 170.0)], 400.0)
    assert view == {
        "pending": 1,
        "oldest_age_s": 300.0,
        "last_error": "refused",
        "delivered_kept": 1,
    }


def test_delivered_tombstones_are_pruned_after_48_h(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.add(alert(1), ("a",), 0.0)
    box.save(outbox.taken(box.entries()[0], "a", 10.0))
    assert box.prune(10.0 + 47 * 3600) == 0
    assert box.prune(10.0 + 49 * 3600) == 1
    assert box.entries() == []


# --- one delivery ------------------------------------------------------------------------


def test_a_webhook_body_and_header_carry_the_idempotency_key(receiver: Receiver) -> None:
    one = alert(1)
    assert deliver(receiver.url(), one) is None
    (got,) = receiver.received()
    assert got.body["idempotency_key"] == one.key
    assert got.headers["Idempotency-Key"] == one.key
    assert got.body["event"] == "backup_failed" and got.body["stack"] == "t"
    assert got.body["title"] == one.title and got.body["message"] == one.body
    assert got.body["type"] == "failure"
    # A chat service's URL is left as it is.
    assert with_key("discord://id/token", one) == "discord://id/token"


def test_a_failed_delivery_says_why_without_the_url(receiver: Receiver) -> None:
    receiver.down()
    error = deliver(receiver.url(f"/{TOKEN}"), alert(1))
    assert error is not None and "Connection error" in error
    assert TOKEN not in error
    receiver.up()
    receiver.status = 500
    error = deliver(receiver.url(f"/{TOKEN}"), alert(1))
    assert error is not None and "500" in error and TOKEN not in error


# --- the sender ----------------------------------------------------------------------------


class Lines(logging.Handler):
    """What reaches the root logger: the daemon's log handlers hang there."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(f"{record.name} {record.getMessage()} {record.__dict__}")


@pytest.fixture
def root_lines() -> Iterator[Lines]:
    root = logging.getLogger()
    lines, level = Lines(), root.level
    root.addHandler(lines)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(lines)
    root.setLevel(level)


async def test_the_sender_delivers_what_was_queued_and_acknowledges_it(
    tmp_path: Path, receiver: Receiver, root_lines: Lines
) -> None:
    url = receiver.url(f"/{TOKEN}")
    sender = AlertSender("t", [url], tmp_path / "t.outbox")
    # Queued by another process (the CLI's `backup create`) before the daemon starts.
    Outbox(tmp_path / "t.outbox").add(alert(0), (outbox.target_id(url),), time.time())
    async with anyio.create_task_group() as tg:
        await tg.start(sender.run)
        for n in range(1, 6):
            sender.emit(alert(n))
        with anyio.fail_after(10):
            while len(set(receiver.keys())) < 6 or sender.pending:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert sorted(receiver.keys()) == sorted(alert(n).key for n in range(6))
    assert all(e.delivered_at is not None for e in sender.box.entries())
    assert sender.backlog()["pending"] == 0
    on_disk = "".join(p.read_text() for p in (tmp_path / "t.outbox").iterdir())
    assert TOKEN not in on_disk and "127.0.0.1" not in on_disk
    # Apprise's and urllib3's debug lines name the URL's path: they never reach the log.
    assert root_lines.text and TOKEN not in "\n".join(root_lines.text)
    assert any("notification queued" in line for line in root_lines.text)


async def test_a_receiver_that_is_away_is_probed_on_a_backoff_then_gets_everything(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.down()
    clock = FakeClock(time.time())
    sender = AlertSender("t", [receiver.url()], tmp_path / "t.outbox", clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(sender.run)
        for n in range(20):
            sender.emit(alert(n))
        with anyio.fail_after(10):
            while not any(e.attempts for e in sender.pending.values()):
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)  # the fake clock stands still: no second probe comes
        tried = sum(e.attempts for e in sender.pending.values())
        assert 1 <= tried <= 4  # the first round's threads, then the target waits
        view = sender.backlog()
        assert view["pending"] == 20 and "Connection error" in view["last_error"]
        receiver.up()
        clock.advance(61)  # past the longest probe wait
        sender._wake.set()
        await receiver.arrived(20, timeout=10)
        tg.cancel_scope.cancel()
    assert len(receiver.keys()) == 20  # nothing twice


async def test_an_alert_not_delivered_in_24_h_is_dropped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    url = "json://127.0.0.1:9/never"
    box = Outbox(tmp_path / "t.outbox")
    box.add(alert(1), (outbox.target_id(url),), clock.now - 24 * 3600 - 1)
    box.add(alert(2), (outbox.target_id(url),), clock.now)
    sender = AlertSender("t", [url], box.path, clock=clock, send=lambda u, a: "refused")
    async with anyio.create_task_group() as tg:
        await tg.start(sender.run)
        with anyio.fail_after(5):
            while alert(1).key in {e.key for e in box.entries()}:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert [e.key for e in box.entries()] == [alert(2).key]
    assert "not delivered within 24 h" in caplog.text


async def test_sending_never_holds_up_the_daemon(tmp_path: Path) -> None:
    """Every send thread stuck on a target that never answers: emitting still takes
    milliseconds and the event loop's other tasks run on time."""
    release = threading.Event()

    def stuck(url: str, one: Alert) -> str | None:
        release.wait(30)
        return None

    sender = AlertSender("t", ["json://127.0.0.1:9/x"], tmp_path / "t.outbox", send=stuck)
    late: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.monotonic()
            await anyio.sleep(0.01)
            late.append(time.monotonic() - before - 0.01)

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(sender.run)
            tg.start_soon(ticker)
            emits = []
            for n in range(50):
                began = time.monotonic()
                sender.emit(alert(n))
                emits.append(time.monotonic() - began)
                await anyio.sleep(0.005)
            await anyio.sleep(0.2)
            assert len(sender.inflight) == 4  # SEND_THREADS, all stuck
            tg.cancel_scope.cancel()
    finally:
        release.set()
    # (Generous bounds: CI runs two test workers on two cores.)
    assert max(emits) < 0.5, max(emits)
    assert max(late) < 0.5, max(late)


async def test_an_outbox_that_cannot_be_written_costs_the_notifications_not_the_daemon(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("not a directory")
    sender = AlertSender("t", ["json://127.0.0.1:9/x"], tmp_path / "file" / "t.outbox")
    async with anyio.create_task_group() as tg:
        await tg.start(sender.run)
        sender.emit(alert(1))  # logged, not raised
        sender.failure("server", reason="exit 1", exit_code=1, crash_loop=False)
        await anyio.sleep(0.2)  # the sender loops on: nothing to send, nothing raised
        tg.cancel_scope.cancel()
    assert "cannot write a notification to the outbox" in caplog.text
    assert "cannot tidy the notification outbox" in caplog.text
    assert sender.pending == {}
