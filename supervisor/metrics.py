"""Pure: what the daemon holds -> Prometheus metric families.

`families(holdings)` turns one `Holdings` (the services' records, the tallies, the
drain, the backups' records, all as they are in memory) into `prometheus_client`
families; the exposition is `prometheus_client`'s. Nothing here does I/O or awaits: a
scrape cannot reach Docker or the REST API from this code, by construction
(supervisor/metricsserver.py gathers the holdings and serves the text).

Naming follows Prometheus's: `hyos_` prefix, base units in the name (`_seconds`,
`_bytes`), `_total` on counters, `_timestamp_seconds` for moments, `_info` gauges of 1
for text. Labels are bounded: `service` (the stack's roles), `status`, `state`, `reason`
(the totals' closed set of causes), `outcome`, `result`, `verdict`; never a player.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from supervisor import roles
from supervisor.restarts import ExitKind, ServiceStatus
from supervisor.store import Service, service_status
from supervisor.tallies import Histogram, Tallies

__all__ = ["BackupFacts", "DrainFacts", "Holdings", "families"]

# Restart causes shown at 0 before they first happen: the failures an alert or a
# `rate()` looks for (a series that appears only at its first increment hides it).
FAILURE_CAUSES = (ExitKind.CRASH.value, ExitKind.OOM.value, ExitKind.SIGNALLED.value, "unhealthy")
HEALTH_STATES = ("starting", "healthy", "unhealthy", "none")  # none: no health check
DRAIN_STATES = ("idle", "draining", "postponed")
BACKUP_OUTCOMES = ("ok", "failed")


@dataclass(frozen=True, slots=True)
class DrainFacts:
    state: str = "idle"  # one of DRAIN_STATES
    action: str | None = None  # restart, rotate, stop, scheduled
    deadline: float | None = None  # wall clock; None when idle or postponed


@dataclass(frozen=True, slots=True)
class BackupFacts:
    """The backups' records file (supervisor/backup.py) as last read, and the schedule."""

    records: Mapping[str, Any] = field(default_factory=dict)
    interval_s: float | None = None  # `[backup] every`'s nominal interval; None: unscheduled


@dataclass(frozen=True, slots=True)
class Holdings:
    """Everything a scrape reads, as the daemon holds it at that moment."""

    version: str
    now: float
    services: Mapping[str, Service]
    tallies: Tallies
    stopping: bool = False
    reconciles: int = 0
    drain: DrainFacts = field(default_factory=DrainFacts)
    backups: BackupFacts = field(default_factory=BackupFacts)


def families(h: Holdings) -> list[Metric]:
    return [*_daemon(h), *_services(h), *_crash_reports(h), *_server(h), *_updates(h),
            *_backups(h), *_guard(h), *_drain(h)]  # fmt: skip


# --- helpers --------------------------------------------------------------------------------


def _gauge(name: str, doc: str, value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled_gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=hist.cumulative(), sum_value=hist.total)


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A table of a file someone else writes: {} when absent or not a table."""
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# --- the daemon -----------------------------------------------------------------------------


def _daemon(h: Holdings) -> Iterator[Metric]:
    info = _labelled_gauge(
        "hyos_supervisor_build_info",
        "The supervisor's version and Python (always 1).",
        ["version", "python"],
    )
    info.add_metric([h.version, platform.python_version()], 1)
    yield info
    passes = _counter(
        "hyos_supervisor_stack_passes_total", "Stack passes (reconciles) completed.", []
    )
    passes.add_metric([], h.reconciles)
    yield passes
    yield _gauge(
        "hyos_supervisor_stopping",
        "1 while the daemon supervises nothing (stopping, or held for a down).",
        1 if h.stopping else 0,
    )


# --- per service ----------------------------------------------------------------------------


def _services(h: Holdings) -> Iterator[Metric]:
    svc = ["service"]
    up = _labelled_gauge("hyos_service_up", "1 when the service's container is running.", svc)
    status = _labelled_gauge(
        "hyos_service_status",
        "The supervisor's status of the service (1 for the current one).",
        ["service", "status"],
    )
    health = _labelled_gauge(
        "hyos_service_health",
        "The container's health check state (1 for the current one; none: no check).",
        ["service", "state"],
    )
    restarts = _counter(
        "hyos_service_restarts_total",
        "Restarts the supervisor carried out, by cause (kept across daemon restarts).",
        ["service", "reason"],
    )
    crashes = _counter(
        "hyos_service_crashes_total", "Exits judged failures (crash, OOM kill, unasked kill).", svc
    )
    unhealthy = _counter(
        "hyos_service_unhealthy_restarts_total", "Restarts decided by a failed health check.", svc
    )
    loops = _counter("hyos_service_crash_loops_total", "Entries into crash loop.", svc)
    ooms = _counter("hyos_service_oom_kills_total", "Exits caused by the kernel's OOM killer.", svc)
    in_loop = _labelled_gauge(
        "hyos_service_crash_loop",
        "1 while the service is held in crash loop (no restart until an operator's).",
        svc,
    )
    backoff = _labelled_gauge(
        "hyos_service_backoff_seconds",
        "The backoff of the restart pending now (0 when none is).",
        svc,
    )
    consecutive = _labelled_gauge(
        "hyos_service_consecutive_restarts",
        "Restarts since the last healthy stretch reset the backoff.",
        svc,
    )
    recent = _labelled_gauge(
        "hyos_service_recent_failures",
        "Failures inside the crash-loop window (the loop starts at the policy's limit).",
        svc,
    )
    exit_code = _labelled_gauge(
        "hyos_service_last_exit_code", "The exit code of the service's last exit.", svc
    )
    started = _labelled_gauge(
        "hyos_service_start_time_seconds", "When the service's container last started.", svc
    )
    busy = _labelled_gauge(
        "hyos_service_busy", "1 while the supervisor carries out a step on the service.", svc
    )
    for role, s in h.services.items():
        label = [role]
        current = service_status(s)
        up.add_metric(
            label, 1 if s.container_id and s.restart.status is ServiceStatus.RUNNING else 0
        )
        for st in ServiceStatus:
            status.add_metric([role, st.value], 1 if current is st else 0)
        now_health = s.health or "none"
        for state in HEALTH_STATES:
            health.add_metric([role, state], 1 if now_health == state else 0)
        by_cause = dict.fromkeys(FAILURE_CAUSES, 0) | dict(s.totals.restarts)
        for cause, n in sorted(by_cause.items()):
            restarts.add_metric([role, cause], n)
        crashes.add_metric(label, s.totals.crashes)
        unhealthy.add_metric(label, s.totals.unhealthy_restarts)
        loops.add_metric(label, s.totals.crash_loops)
        ooms.add_metric(label, s.totals.oom_kills)
        in_loop.add_metric(label, 1 if s.restart.status is ServiceStatus.CRASH_LOOP else 0)
        pending = s.restart.pending
        backoff.add_metric(label, pending.backoff_s if pending is not None else 0.0)
        consecutive.add_metric(label, s.restart.restart_count)
        recent.add_metric(label, len(s.restart.crash_times))
        if s.last_exit is not None:
            exit_code.add_metric(label, s.last_exit.exit_code)
        if s.restart.started_at is not None:
            started.add_metric(label, s.restart.started_at)
        busy.add_metric(label, 1 if s.busy else 0)
    yield from (up, status, health, restarts, crashes, unhealthy, loops, ooms, in_loop, backoff,
                consecutive, recent, exit_code, started, busy)  # fmt: skip


def _crash_reports(h: Holdings) -> Iterator[Metric]:
    written = _counter(
        "hyos_crash_reports_total",
        "Crash reports written into the state dir by this daemon (supervisor/crashes.py).",
        ["service"],
    )
    for role in h.services:
        written.add_metric([str(role)], h.tallies.crash_reports.get(str(role), 0))
    yield written


# --- the game server ------------------------------------------------------------------------


def _game(h: Holdings) -> Service | None:
    return next((s for role, s in h.services.items() if roles.is_game(role)), None)


def _server(h: Holdings) -> Iterator[Metric]:
    t = h.tallies
    yield _histogram(
        "hyos_server_ready_duration_seconds",
        "From the server's start to its first healthy check.",
        t.server_ready,
    )
    yield _histogram(
        "hyos_server_stop_duration_seconds",
        "How long the server's graceful stops took (the world save).",
        t.server_stop,
    )
    server = _game(h)
    stops = _counter(
        "hyos_server_dashboard_stops_total",
        "Stops and restarts of the server the dashboard asked for (through the guard).",
        [],
    )
    stops.add_metric([], server.totals.dashboard_stops if server is not None else 0)
    yield stops
    waiting = server is not None and service_status(server) is ServiceStatus.NEEDS_AUTH
    yield _gauge(
        "hyos_server_needs_auth",
        "1 while the server waits for an operator's Hytale login (or its tokens were refused).",
        1 if waiting else 0,
    )
    players = t.players
    yield _gauge(
        "hyos_server_players_online",
        "Players online at the server's last answer (asked only while a drain waits).",
        None if players is None else players.online,
    )
    yield _gauge(
        "hyos_server_players_max",
        "The server's player limit at its last answer.",
        None if players is None else players.max,
    )
    yield _gauge(
        "hyos_server_players_observed_timestamp_seconds",
        "When the server last answered with its player count.",
        None if players is None else players.at,
    )
    version = _labelled_gauge(
        "hyos_server_game_version_info", "The installed game version (always 1).", ["version"]
    )
    if t.update.game_version:
        version.add_metric([t.update.game_version], 1)
    yield version


# --- updates (issue 26 feeds tallies.update) ------------------------------------------------


def _updates(h: Holdings) -> Iterator[Metric]:
    u = h.tallies.update
    yield _gauge(
        "hyos_update_available", "1 when a newer game version is known.", 1 if u.available else 0
    )
    yield _gauge(
        "hyos_update_last_check_timestamp_seconds",
        "When the supervisor last checked for an update.",
        u.last_check,
    )
    results = _counter("hyos_updates_total", "Updates that ended, by result.", ["result"])
    for result, n in sorted(u.results.items()):
        results.add_metric([result], n)
    yield results


# --- backups --------------------------------------------------------------------------------


def _backups(h: Holdings) -> Iterator[Metric]:
    records = h.backups.records
    last_ok = _table(records, "last_ok")
    last = _table(records, "last")
    yield _gauge(
        "hyos_backup_last_success_timestamp_seconds",
        "When the last successful backup was taken.",
        _number(last_ok.get("time")),
    )
    yield _gauge(
        "hyos_backup_last_duration_seconds",
        "How long the last successful backup took, end to end.",
        _number(last_ok.get("seconds")),
    )
    yield _gauge(
        "hyos_backup_last_size_bytes",
        "The world's size as the last successful backup read it.",
        _number(last_ok.get("bytes")),
    )
    yield _gauge(
        "hyos_backup_last_added_bytes",
        "What the last successful backup added to the repository.",
        _number(last_ok.get("added")),
    )
    yield _gauge(
        "hyos_backup_last_ok",
        "1 when the last backup attempt succeeded, 0 when it failed.",
        None if not last else (1 if last.get("ok") else 0),
    )
    outcomes = _table(records, "outcomes")
    results = _counter(
        "hyos_backup_results_total", "Backups taken, by outcome (recorded ones).", ["outcome"]
    )
    for outcome in BACKUP_OUTCOMES:
        results.add_metric([outcome], _number(outcomes.get(outcome)) or 0)
    yield results
    yield _gauge(
        "hyos_backup_interval_seconds",
        "The nominal time between scheduled backups (absent: none scheduled).",
        h.backups.interval_s,
    )


# --- the guard ------------------------------------------------------------------------------


def _guard(h: Holdings) -> Iterator[Metric]:
    g = h.tallies.guard
    requests = _counter(
        "hyos_guard_requests_total", "The dashboard's Docker API requests, by verdict.", ["verdict"]
    )
    for verdict, n in sorted(g.requests.items()):
        requests.add_metric([verdict], n)
    yield requests
    refused = _counter(
        "hyos_guard_refused_connections_total",
        "Connections refused with 503 because max_connections were open.",
        [],
    )
    refused.add_metric([], g.refused_connections)
    yield refused
    yield _histogram(
        "hyos_guard_added_latency_seconds",
        "Time the guard held an allowed request before forwarding it.",
        g.added_latency,
    )


# --- the drain ------------------------------------------------------------------------------


def _drain(h: Holdings) -> Iterator[Metric]:
    d = h.drain
    state = _labelled_gauge(
        "hyos_drain_state",
        "The drain of a disruptive action (1 for the current state).",
        ["state"],
    )
    for name in DRAIN_STATES:
        state.add_metric([name], 1 if d.state == name else 0)
    yield state
    yield _gauge(
        "hyos_drain_deadline_timestamp_seconds",
        "When the pending drain acts whatever the players (absent: none, or postponed).",
        d.deadline,
    )
    ended = _counter("hyos_drains_total", "Drains that ended, by outcome.", ["outcome"])
    for outcome, n in sorted(h.tallies.drains.items()):
        ended.add_metric([outcome], n)
    yield ended
