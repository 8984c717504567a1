"""`/metrics` served by a real `hyos-supervisor run` over a stand-in stack: Prometheus's
own lint (`promtool check metrics`) finds nothing in a live scrape, and a stand-in crash
moves `hyos_service_restarts_total{reason="crash"}` by exactly one."""

from __future__ import annotations

import re
import socket
import urllib.request

import pytest

from tests.integration.conftest import DaemonFactory, Stack, docker, started_at, wait_for
from tests.promtool import check_metrics

pytestmark = pytest.mark.integration

CRASHES = 'hyos_service_restarts_total{reason="crash",service="server"}'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text: str = answer.read().decode()
        return text


def value(text: str, series: str) -> float | None:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, flags=re.M)
    return None if found is None else float(found.group(1))


def test_a_live_scrape_passes_promtool_and_a_crash_counts_once(
    stack: Stack, daemon: DaemonFactory
) -> None:
    port = free_port()
    d = daemon(HYOS_METRICS__LISTEN=f"127.0.0.1:{port}", HYOS_RESTART__BACKOFF_BASE_S="0.2")
    d.wait_log("metrics listening", address=f"127.0.0.1:{port}")
    before = scrape(port)
    done = check_metrics(before.encode())
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done
    families = re.findall(r"^# TYPE (hyos_\S+) ", before, flags=re.M)
    assert len(families) >= 25, families
    assert len([line for line in before.splitlines() if not line.startswith("#")]) <= 200
    assert value(before, 'hyos_service_up{service="server"}') == 1
    assert value(before, 'hyos_service_health{service="server",state="healthy"}') == 1
    crashes = value(before, CRASHES)
    assert crashes is not None  # shown at zero before the first crash

    server = stack.container("server")
    was_started = started_at(server)
    docker("exec", server, "sh", "-c", "echo 1 > /data/control/exit")  # the stand-in exits 1
    d.wait_log("restart issued", service="server")
    wait_for(lambda: started_at(server) != was_started, 15, "the server started again")
    d.wait_log("healthy", service="server", count=2, timeout=30)

    after = scrape(port)
    assert value(after, CRASHES) == crashes + 1
    assert value(after, 'hyos_service_crashes_total{service="server"}') == (
        (value(before, 'hyos_service_crashes_total{service="server"}') or 0) + 1
    )
    assert value(after, 'hyos_service_last_exit_code{service="server"}') == 1
    assert value(after, 'hyos_service_up{service="server"}') == 1
    # The start after the crash became healthy: one more ready duration observed.
    ready = "hyos_server_ready_duration_seconds_count"
    assert (value(after, ready) or 0) >= (value(before, ready) or 0) + 1
    done = check_metrics(after.encode())
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done
