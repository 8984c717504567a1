"""What is notified (supervisor/alerts.py, pure) and where the daemon tells it: one
message per crash episode, stable idempotency keys, the login's URL and code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor import alerts, hyos, restarts
from supervisor.alerts import Alert, AlertKind, Episode
from supervisor.alertsender import AlertSender
from supervisor.restarts import Action, ExitKind, RestartPolicy
from supervisor.worker import ServiceWorker
from tests.fakeclock import FakeClock
from tests.unitkit import engine_with_server, fake_supervision, lone_worker, server_event

RESET = 600.0


def fail(episode: Episode | None, now: float, *, loop: bool = False) -> tuple[Episode, list[Alert]]:
    return alerts.on_failure(
        episode,
        "s",
        "server",
        now,
        reason="exit 1",
        exit_code=1,
        crash_loop=loop,
        reset_after_s=RESET,
    )


def kinds(found: list[Alert]) -> list[str]:
    return [a.kind.value for a in found]


def test_a_crash_loop_episode_is_one_crash_and_one_loop_message_not_one_per_crash() -> None:
    """The restart state machine's own decisions fed in: 5 failures in the window is a
    crash loop; 2 messages for it, then 1 when it is left and 1 when it is healthy."""
    policy = RestartPolicy()
    state = restarts.ServiceRestartState()
    episode: Episode | None = None
    told: list[Alert] = []
    now = 1_000.0
    for _ in range(8):
        state = restarts.on_started(state, now)
        now += 5
        state, decision = restarts.on_exit(state, ExitKind.CRASH, now, policy)
        if decision.action in (Action.RESTART, Action.STOP_CRASH_LOOP):
            loop = decision.action is Action.STOP_CRASH_LOOP
            episode, found = fail(episode, now, loop=loop)
            told += found
        now += decision.backoff_s
    assert kinds(told) == ["crash", "crash_loop_entered"]
    assert episode is not None and episode.crashes == 8 and episode.in_loop
    episode2, left = alerts.on_left_crash_loop(episode, "s", "server", now, by="operator")
    assert kinds(left) == ["crash_loop_left"]
    assert alerts.on_left_crash_loop(episode2, "s", "server", now, by="again")[1] == []
    episode3, healthy = alerts.on_healthy(episode2, "s", "server", now + 60)
    assert kinds(healthy) == ["recovered"]
    assert healthy[0].facts["failures"] == 8
    assert alerts.on_healthy(episode3, "s", "server", now + 90)[1] == []


def test_a_failure_soon_after_recovering_is_the_same_episode_a_later_one_a_new() -> None:
    episode, first = fail(None, 100.0)
    episode2, _ = alerts.on_healthy(episode, "s", "server", 130.0)
    assert episode2 is not None
    # Healthy for less than reset_after_s: the same episode, nothing new said.
    episode3, again = fail(episode2, 130.0 + RESET - 1)
    assert again == [] and episode3.crashes == 2
    # Healthy for reset_after_s: over; the next failure opens another, with another key.
    episode4, _ = alerts.on_healthy(episode3, "s", "server", 1_000.0)
    _, later = fail(episode4, 1_000.0 + RESET)
    assert kinds(later) == ["crash"]
    assert later[0].key != first[0].key


def test_keys_are_stable_for_one_happening_and_differ_between_happenings() -> None:
    _, one = fail(None, 100.0)
    _, same = fail(None, 100.0)
    assert one[0].key == same[0].key == "hyos/s/crash/server/100.000"
    login = alerts.needs_auth("s", "server", 5.0, url="https://u", code="AB-12")
    later = alerts.needs_auth("s", "server", 99.0, url="https://u", code="AB-12")
    other = alerts.needs_auth("s", "server", 5.0, url="https://u", code="CD-34")
    assert login.key == later.key != other.key
    started = alerts.drain_started("s", 10.0, action="restart", started=7.0, deadline=907.0)
    resumed = alerts.drain_started("s", 500.0, action="restart", started=7.0, deadline=907.0)
    assert started.key == resumed.key
    stale = alerts.backup_stale("s", 10.0, last_ok=3.0, every="6h")
    assert stale.key == alerts.backup_stale("s", 20.0, last_ok=3.0, every="6h").key


def test_the_login_alert_carries_the_url_and_the_code() -> None:
    alert = alerts.needs_auth(
        "s", "server", 5.0, url="https://oauth.example/device", code="WXYZ-1234"
    )
    assert alert.kind is AlertKind.NEEDS_AUTH
    assert "https://oauth.example/device" in alert.body and "WXYZ-1234" in alert.body
    assert "WXYZ-1234" in alert.title
    assert alert.facts["code"] == "WXYZ-1234"


@pytest.mark.parametrize(
    "alert",
    [
        alerts.update_available("s", 1.0, current="1.0", available="1.1"),
        alerts.update_applied("s", 1.0, previous="1.0", version="1.1"),
        alerts.update_rolled_back("s", 1.0, previous="1.0", attempted="1.1", reason="unhealthy"),
        alerts.backup_failed("s", 1.0, error="repo locked", scheduled=True),
        alerts.restore_done("s", 1.0, snapshot="abcdef0123", pinned="99887766aa", downtime_s=12),
        alerts.drain_cancelled("s", 1.0, action="restart", started=0.5, by="cancelled"),
    ],
    ids=lambda a: a.kind.value,
)
def test_every_kind_survives_the_outbox_round_trip(alert: Alert) -> None:
    assert Alert.from_json(alert.to_json()) == alert
    assert alert.key.startswith(f"hyos/s/{alert.kind.value}/")


def test_malformed_alerts_and_episodes_are_refused_not_raised() -> None:
    good = alerts.backup_failed("s", 1.0, error="x", scheduled=False).to_json()
    bads: list[Any] = [{**good, "kind": "nope"}, {**good, "at": "soon"}, {**good, "facts": []}]
    for bad in [*bads, [], None]:
        assert Alert.from_json(bad) is None
    assert Episode.from_json({"crashes": 2}) is None
    episode = Episode(5.0, 3, 1, True, None, False)
    assert Episode.from_json(episode.to_json()) == episode


# --- where the daemon tells it ---------------------------------------------------------


class Recording:
    """Supervision.alerts as the tests see it: the real episode logic, no outbox."""

    def __init__(self) -> None:
        self.told: list[Alert] = []
        self.episodes: dict[str, Episode | None] = {}

    def emit(self, alert: Alert) -> None:
        self.told.append(alert)

    def failure(
        self,
        role: str,
        *,
        reason: str,
        exit_code: int | None,
        crash_loop: bool,
        report: str | None = None,
    ) -> None:
        episode, found = alerts.on_failure(
            self.episodes.get(role), "t", role, 0.0, reason=reason, exit_code=exit_code,
            crash_loop=crash_loop, reset_after_s=RESET, report=report,
        )  # fmt: skip
        self.episodes[role] = episode
        self.told += found

    def healthy(self, role: str) -> None:
        self.episodes[role], found = alerts.on_healthy(self.episodes.get(role), "t", role, 0.0)
        self.told += found

    def left_crash_loop(self, role: str, *, by: str) -> None:
        episode = self.episodes.get(role)
        self.episodes[role], found = alerts.on_left_crash_loop(episode, "t", role, 0.0, by=by)
        self.told += found


@pytest.fixture
def told(tmp_path: Path) -> tuple[ServiceWorker, FakeClock, Recording]:
    clock = FakeClock()
    sup = fake_supervision(tmp_path, engine_with_server("c1"), clock)
    recording = Recording()
    sup.alerts = recording
    return lone_worker(sup, container_id="c1"), clock, recording


@pytest.mark.anyio
async def test_the_worker_tells_crashes_the_loop_its_end_and_the_recovery(
    told: tuple[ServiceWorker, FakeClock, Recording],
) -> None:
    worker, clock, recording = told
    for _ in range(5):  # the fifth failure within the window is the crash loop
        await worker._on_event(server_event("start", clock.now))
        clock.advance(3)
        await worker._on_event(server_event("die", clock.now, exit_code=1))
        clock.advance(1)
    assert kinds(recording.told) == ["crash", "crash_loop_entered"]
    await worker.restart_for_operator()
    await worker._on_event(server_event("start", clock.now))
    await worker._on_event(server_event("health_status: healthy", clock.now))
    assert kinds(recording.told) == ["crash", "crash_loop_entered", "crash_loop_left", "recovered"]


@pytest.mark.anyio
async def test_the_crash_and_the_loop_name_their_crash_reports(
    told: tuple[ServiceWorker, FakeClock, Recording],
) -> None:
    from supervisor import crashreport

    worker, clock, recording = told
    deaths = []
    for _ in range(5):
        await worker._on_event(server_event("start", clock.now))
        clock.advance(3)
        deaths.append(clock.now)
        await worker._on_event(server_event("die", clock.now, exit_code=1))
        clock.advance(1)
    crash, loop = recording.told
    first = crashreport.report_id(deaths[0], "server", "c1")
    last = crashreport.report_id(deaths[-1], "server", "c1")
    assert crash.facts["crash_report"] == first
    assert f"`hyos-supervisor crashes show {first}`" in crash.body
    assert loop.facts["crash_report"] == last and last in loop.body


def test_a_failure_without_a_report_names_none() -> None:
    _, found = alerts.on_failure(
        None, "t", "server", 0.0, reason="exit 1", exit_code=1, crash_loop=False,
        reset_after_s=RESET,
    )  # fmt: skip
    assert "crash_report" not in found[0].facts and "crashes show" not in found[0].body


@pytest.mark.anyio
async def test_a_waiting_login_is_told_once_per_code_with_url_and_code(
    told: tuple[ServiceWorker, FakeClock, Recording],
) -> None:
    worker, _, recording = told
    pending = hyos.Login("pending", "https://oauth.accounts.hytale.com/device", "QWER-TYUI")
    await worker.login_read("c1", pending)
    await worker.login_read("c1", pending)  # read again: unchanged, not told again
    assert [a.facts["code"] for a in recording.told] == ["QWER-TYUI"]
    assert recording.told[0].facts["url"] == "https://oauth.accounts.hytale.com/device"


@pytest.mark.anyio
async def test_a_clean_stop_and_a_stopping_daemon_tell_nothing(
    told: tuple[ServiceWorker, FakeClock, Recording],
) -> None:
    worker, clock, recording = told
    await worker._on_event(server_event("start", clock.now))
    await worker._on_event(server_event("die", clock.now + 1, exit_code=0))
    worker.sup.stopping = True
    await worker._on_event(server_event("start", clock.now + 2))
    await worker._on_event(server_event("die", clock.now + 3, exit_code=1))
    assert recording.told == []


def test_the_sender_keeps_episodes_across_a_restart(tmp_path: Path) -> None:
    """A daemon restarted in the middle of an episode does not open a second one."""
    clock = FakeClock()
    make: Any = lambda: AlertSender(  # noqa: E731
        "t", ["json://127.0.0.1:9/x"], tmp_path / "t.outbox", clock=clock
    )
    first = make()
    first.failure("server", reason="exit 1", exit_code=1, crash_loop=False)
    second = make()
    clock.advance(5)
    second.failure("server", reason="exit 1", exit_code=1, crash_loop=False)
    queued = [e.alert.kind.value for e in second.box.entries()]
    assert queued == ["crash"]
    assert second.episodes["server"].crashes == 2


def test_an_unhealthy_restart_opens_an_episode_in_its_own_words() -> None:
    _, found = alerts.on_failure(
        None, "s", "manager", 5.0, reason="unhealthy", exit_code=None, crash_loop=False,
        reset_after_s=RESET,
    )  # fmt: skip
    assert [a.title for a in found] == ["[s] manager turned unhealthy"]
    assert found[0].role == "manager" and found[0].facts == {
        "reason": "unhealthy",
        "exit_code": None,
    }
