"""`/metrics` (supervisor/metrics.py, supervisor/metricsserver.py): the families and
their budget, promtool's lint, the settings that turn it on, and a scrape of the whole
daemon on the fake engine that makes no engine call and no REST call."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import cast

import anyio
import anyio.abc
import pytest
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

from supervisor import metrics, metricsserver, totals
from supervisor.daemon import Daemon
from supervisor.hyos import Login
from supervisor.metrics import BackupFacts, DrainFacts, Holdings, families
from supervisor.metricsserver import respond
from supervisor.notify import Notifier
from supervisor.ports import EnginePort
from supervisor.restarts import (
    ExitKind,
    Pending,
    ServiceRestartState,
    ServiceStatus,
    Step,
    judge_exit,
)
from supervisor.roles import Role
from supervisor.settings import ConfigError, load_settings
from supervisor.store import Service
from supervisor.tallies import Histogram, PlayerCount, Tallies, UpdateResult
from supervisor.totals import Totals
from tests.callcounter import CallCounter
from tests.fakeengine import FakeEngine
from tests.promtool import check_metrics

NOW = 1_800_000_000.0
FAMILY_FLOOR = 25  # the floor
SERIES_BUDGET = 200  # for one stack, the process's own figures included


def busy_holdings() -> Holdings:
    """A stack that has been through everything once: every family has samples."""
    server = Service(
        Role.SERVER,
        restart=ServiceRestartState(
            ServiceStatus.RUNNING, crash_times=(NOW - 30,), restart_count=1, started_at=NOW - 20
        ),
        container_id="s1",
        health="healthy",
        login=Login("authenticated"),
        last_exit=judge_exit(Role.SERVER, 1, False, False),
        totals=Totals(
            restarts={"crash": 2, "operator": 1, "schedule": 1},
            crashes=2,
            oom_kills=1,
            dashboard_stops=3,
        ),
    )
    manager = Service(
        Role.MANAGER,
        restart=ServiceRestartState(
            ServiceStatus.BACKOFF,
            restart_count=2,
            pending=Pending(Step.START, NOW + 4, "crash", 4.0, "crash"),
        ),
        last_exit=judge_exit(Role.MANAGER, 137, True, False),
        totals=Totals(
            restarts={"oom": 1, "unhealthy": 2},
            crashes=1,
            unhealthy_restarts=2,
            crash_loops=1,
            oom_kills=1,
        ),
    )
    t = Tallies()
    for seconds in (12.0, 40.0, 700.0):
        t.server_ready.observe(seconds)
    t.server_stop.observe(3.2)
    t.guard.decided(True)
    t.guard.decided(False)
    t.guard.forwarded(0.0007)
    t.guard.refused()
    t.players = PlayerCount(3, 20, NOW - 5)
    t.update.game_version = "2026.01.15-abc"
    t.update.available = True
    t.update.last_check = NOW - 60
    t.update.ended(UpdateResult.APPLIED)
    t.drain_ended("act")
    records = {
        "last": {"time": NOW - 100, "ok": True, "seconds": 12.5, "bytes": 10, "added": 1},
        "last_ok": {"time": NOW - 100, "ok": True, "seconds": 12.5, "bytes": 4096, "added": 512},
        "outcomes": {"ok": 4, "failed": 1},
    }
    return Holdings(
        version="0.1.0",
        now=NOW,
        services={Role.SERVER: server, Role.MANAGER: manager},
        tallies=t,
        reconciles=7,
        drain=DrainFacts("draining", "restart", NOW + 600),
        backups=BackupFacts(records, 6 * 3600.0),
    )


class _Families:
    def __init__(self, make: Callable[[], list[Metric]]) -> None:
        self.make = make

    def collect(self) -> Iterable[Metric]:
        return self.make()


def page(h: Holdings, process: bool = True) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(lambda: families(h)))
    if process:
        ProcessCollector(registry=registry)
    return generate_latest(registry)


def types(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))


def samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, flags=re.M)
    assert found is not None, f"{series} not in the page"
    return float(found.group(1))


def test_the_family_count_and_the_series_budget() -> None:
    text = page(busy_holdings()).decode()
    ours = [name for name in types(text) if name.startswith("hyos_")]
    assert len(ours) >= FAMILY_FLOOR, ours
    assert len(ours) == 43, ours  # pinned: a family removed by mistake shows here
    with_samples = {line.split("{")[0].split(" ")[0] for line in samples(text)}
    empty = [n for n in ours if not any(s.startswith(n) for s in with_samples)]
    assert empty == [], f"families without samples in a busy stack: {empty}"
    assert len(samples(text)) <= SERIES_BUDGET, len(samples(text))


def test_promtool_finds_nothing() -> None:
    for h in (busy_holdings(), Holdings("0.1.0", NOW, {Role.SERVER: Service(Role.SERVER)},
                                        Tallies())):  # fmt: skip
        done = check_metrics(page(h))
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip() == "" and done.stderr.strip() == ""


def test_prometheus_naming_and_no_unbounded_labels() -> None:
    text = page(busy_holdings(), process=False).decode()
    for name, kind in types(text).items():
        assert re.fullmatch(r"hyos_[a-z0-9_]+", name), name
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        assert not re.search(r"_(ms|milliseconds|kb|mb|minutes|hours)$", name), name
    labels = set(re.findall(r"[{,]([a-z_]+)=", text))
    assert labels <= {"service", "status", "state", "reason", "outcome", "result", "verdict",
                      "version", "python", "le"}  # fmt: skip


def test_what_the_families_say() -> None:
    text = page(busy_holdings(), process=False).decode()
    assert value(text, 'hyos_service_restarts_total{reason="crash",service="server"}') == 2
    # The failure causes are shown at zero before they happen (rate() and alerts see them).
    assert value(text, 'hyos_service_restarts_total{reason="signalled",service="server"}') == 0
    assert value(text, 'hyos_service_oom_kills_total{service="manager"}') == 1
    assert value(text, 'hyos_service_backoff_seconds{service="manager"}') == 4
    assert value(text, 'hyos_service_backoff_seconds{service="server"}') == 0
    assert value(text, 'hyos_service_last_exit_code{service="manager"}') == 137
    assert value(text, 'hyos_service_status{service="manager",status="backoff"}') == 1
    assert value(text, 'hyos_service_status{service="manager",status="running"}') == 0
    assert value(text, 'hyos_service_health{service="server",state="healthy"}') == 1
    assert value(text, 'hyos_service_health{service="manager",state="none"}') == 1
    assert value(text, 'hyos_service_up{service="server"}') == 1
    assert value(text, 'hyos_service_up{service="manager"}') == 0
    assert value(text, 'hyos_service_start_time_seconds{service="server"}') == NOW - 20
    assert value(text, 'hyos_server_ready_duration_seconds_bucket{le="60.0"}') == 2
    assert value(text, 'hyos_server_ready_duration_seconds_bucket{le="+Inf"}') == 3
    assert value(text, "hyos_server_ready_duration_seconds_sum") == 752
    assert value(text, "hyos_server_players_online") == 3
    assert value(text, "hyos_server_players_max") == 20
    assert value(text, 'hyos_server_game_version_info{version="2026.01.15-abc"}') == 1
    assert value(text, "hyos_server_needs_auth") == 0
    assert value(text, "hyos_backup_last_success_timestamp_seconds") == NOW - 100
    assert value(text, "hyos_backup_last_size_bytes") == 4096
    assert value(text, 'hyos_backup_results_total{outcome="failed"}') == 1
    assert value(text, 'hyos_updates_total{result="rolled_back"}') == 0
    assert value(text, 'hyos_updates_total{result="applied"}') == 1
    assert value(text, 'hyos_guard_requests_total{verdict="deny"}') == 1
    assert value(text, 'hyos_guard_added_latency_seconds_bucket{le="0.001"}') == 1
    assert value(text, 'hyos_drain_state{state="draining"}') == 1
    assert value(text, "hyos_drain_deadline_timestamp_seconds") == NOW + 600


def test_a_waiting_login_is_needs_auth() -> None:
    h = busy_holdings()
    server = replace(h.services[Role.SERVER], login=Login("pending", "https://x/y", "ABCD"))
    text = page(replace(h, services={Role.SERVER: server}), process=False).decode()
    assert value(text, "hyos_server_needs_auth") == 1
    assert value(text, 'hyos_service_status{service="server",status="needs_auth"}') == 1
    assert "ABCD" not in text and "https://x/y" not in text  # the code is for the operator


def test_a_fresh_daemon_shows_zeros_and_no_made_up_values() -> None:
    h = Holdings("0.1.0", NOW, {Role.SERVER: Service(Role.SERVER)}, Tallies())
    text = page(h, process=False).decode()
    assert value(text, 'hyos_service_restarts_total{reason="crash",service="server"}') == 0
    assert value(text, 'hyos_updates_total{result="rolled_back"}') == 0
    assert value(text, "hyos_update_available") == 0
    for absent in ("hyos_server_players_online ", "hyos_backup_last_success_timestamp_seconds ",
                   "hyos_service_last_exit_code{", "hyos_server_game_version_info{",
                   "hyos_backup_interval_seconds "):  # fmt: skip
        assert absent not in "\n".join(samples(text))


def test_oom_kills_are_totalled_whatever_was_decided() -> None:
    before = ServiceRestartState(ServiceStatus.RUNNING)
    judged = judge_exit(Role.SERVER, 137, True, False)
    assert judged.kind is ExitKind.OOM
    after = totals.after_exit(Totals(), judged, before, before)
    assert after.oom_kills == 1 and after.crashes == 1
    assert Totals.from_json(after.to_json()) == after
    assert Totals.from_json({"crashes": 2}).oom_kills == 0  # a state file from before


def test_histogram_buckets_are_cumulative() -> None:
    hist = Histogram((1.0, 5.0))
    for v in (0.5, 1.0, 3.0, 9.0, float("nan")):
        hist.observe(v)
    assert hist.cumulative() == [("1.0", 2.0), ("5.0", 3.0), ("+Inf", 4.0)]
    assert hist.total == 13.5
    with pytest.raises(ValueError):
        Histogram((5.0, 1.0))


def test_unknown_update_results_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown update result"):
        Tallies().update.ended("exploded")


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9100", ("::1", 9100)),
        ("localhost:9464", ("localhost", 9464)),
    ],
)
def test_loopback_addresses_are_taken(listen: str, address: tuple[str, int]) -> None:
    assert load_settings(metrics={"listen": listen}).metrics.address == address


def test_metrics_are_off_by_default() -> None:
    assert load_settings().metrics.address is None


def test_a_non_loopback_address_needs_the_second_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_METRICS__LISTEN", "0.0.0.0:9464")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    (line,) = refused.value.problems
    assert "metrics.listen" in line and "HYOS_METRICS__ALLOW_NON_LOOPBACK=true" in line
    monkeypatch.setenv("HYOS_METRICS__ALLOW_NON_LOOPBACK", "true")
    assert load_settings().metrics.address == ("0.0.0.0", 9464)


@pytest.mark.parametrize("listen", ["9464", "example.org:9464", "127.0.0.1:0", "127.0.0.1:x"])
def test_bad_addresses_are_one_line(listen: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(metrics={"listen": listen})
    (line,) = refused.value.problems
    assert line.startswith("metrics.listen: ") and "127.0.0.1:9464" in line


# --- HTTP --------------------------------------------------------------------------------------


def test_the_listener_answers_only_get_metrics() -> None:
    def body() -> bytes:
        return b"x 1\n"

    assert respond(b"GET /metrics HTTP/1.1\r\n\r\n", body).endswith(b"\r\n\r\nx 1\n")
    assert b"version=0.0.4" in respond(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", body)
    assert respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", body).endswith(b"\r\n\r\n")
    assert respond(b"POST /metrics HTTP/1.1\r\n\r\n", body).startswith(b"HTTP/1.1 405")
    assert respond(b"GET /other HTTP/1.1\r\n\r\n", body).startswith(b"HTTP/1.1 404")
    assert respond(b"garbage\r\n\r\n", body).startswith(b"HTTP/1.1 400")


# --- the whole daemon -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def scrape(port: int, path: str = "/metrics") -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as conn:
        data = b""
        try:
            await conn.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            while True:
                data += await conn.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass  # closed unanswered (the listener's cap)
    return data


@pytest.mark.anyio
async def test_a_scrape_of_the_daemon_calls_neither_docker_nor_the_rest_api(
    tmp_path: Path,
) -> None:
    port = free_port()
    # Crash reports off: their secret reads after a start are engine calls of their own,
    # made whenever they are due, which this count of the scrapes' calls must not see.
    settings = load_settings(
        state_dir=str(tmp_path),
        guard=False,
        metrics={"listen": f"127.0.0.1:{port}"},
        crashes={"enabled": False},
    )
    engine = CallCounter(FakeEngine())
    ready = anyio.Event()

    class Ready(Notifier):
        def ready(self) -> bool:
            ready.set()
            return super().ready()

    daemon = Daemon(settings, cast(EnginePort, engine), Ready(environ={}))
    async with anyio.create_task_group() as group:
        group.start_soon(daemon.run)
        with anyio.fail_after(20):
            await ready.wait()
        await anyio.wait_all_tasks_blocked()
        engine_before, api_before = engine.count, daemon.drains.api.calls
        answers = [await scrape(port) for _ in range(20)]
        engine_after, api_after = engine.count, daemon.drains.api.calls
        daemon._work_scope.cancel()
    assert daemon.metrics is not None and daemon.metrics.scrapes == 20
    assert (engine_after - engine_before, api_after - api_before) == (0, 0)
    head, _, text = answers[-1].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b'hyos_service_up{service="server"} 1.0' in text
    assert b"process_resident_memory_bytes" in text
    assert metrics.FAILURE_CAUSES[0] == "crash"


# --- the listener under abuse -------------------------------------------------------------


async def _read_all(conn: anyio.abc.SocketStream) -> bytes:
    data = b""
    try:
        while True:
            data += await conn.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        pass
    return data


@pytest.mark.anyio
async def test_the_listener_bounds_what_a_client_can_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head that never ends is dropped at the deadline, one over 8 KiB at once, and
    connections over the cap are closed unanswered; a scrape after them is served."""
    monkeypatch.setattr(metricsserver, "HEAD_TIMEOUT_S", 0.3)
    monkeypatch.setattr(metricsserver, "MAX_CONNECTIONS", 2)
    async with anyio.create_task_group() as group:
        port = await group.start(metricsserver.serve_metrics, "127.0.0.1", 0, lambda: b"x 1\n")
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", port) as slow:
                await slow.send(b"GET /metrics HTTP/1.1\r\n")  # and never the blank line
                assert await _read_all(slow) == b""
            async with await anyio.connect_tcp("127.0.0.1", port) as big:
                await big.send(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000)
                assert await _read_all(big) == b""
            # The cap: connections are taken in order, so the third finds two held.
            monkeypatch.setattr(metricsserver, "HEAD_TIMEOUT_S", 30.0)
            idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(2)]
            assert await scrape(port) == b""
            for conn in idle:
                await conn.aclose()
            while not (answer := await scrape(port)):  # until the two are let go
                await anyio.sleep(0.01)
            assert answer.endswith(b"\r\n\r\nx 1\n")
        group.cancel_scope.cancel()
