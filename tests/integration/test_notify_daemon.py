"""The daemon's notifications of a crash loop, end to end: stand-in stack, real engine,
Apprise's json:// to a real local HTTP receiver. Three crashes are one episode: one
`crash`, one `crash_loop_entered` (not three messages); the operator's restart is
`crash_loop_left`, the health after it `recovered`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import DaemonFactory, Stack, docker, wait_for
from tests.receiver import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.down()


def events(receiver: Receiver) -> list[str]:
    return [str(r.body["event"]) for r in receiver.received()]


def test_a_crash_loop_is_one_message_per_step_not_one_per_crash(
    stack: Stack, daemon: DaemonFactory, receiver: Receiver
) -> None:
    d = daemon(
        HYOS_RESTART__CRASH_LOOP_LIMIT="3",
        HYOS_RESTART__CRASH_LOOP_WINDOW_S="60",
        HYOS_RESTART__BACKOFF_BASE_S="0.1",
        HYOS_NOTIFY__URLS=receiver.url(),
    )
    server = stack.container("server")
    for n in (1, 2):
        docker("kill", server)
        d.wait_log("restart issued", service="server", count=n)
        d.wait_log("started", service="server", count=n + 1)
    docker("kill", server)
    wait_for(lambda: d.service("server")["status"] == "crash_loop", 10, "the crash loop")
    wait_for(lambda: len(receiver.received()) >= 2, 10, "two notifications")
    assert events(receiver) == ["crash", "crash_loop_entered"]
    assert stack.run("restart", "server").returncode == 0
    d.wait_healthy()
    wait_for(lambda: len(receiver.received()) >= 4, 15, "four notifications")
    assert events(receiver) == ["crash", "crash_loop_entered", "crash_loop_left", "recovered"]
    keys = [r.body["idempotency_key"] for r in receiver.received()]
    assert len(set(keys)) == 4 and all(k.startswith(f"hyos/{stack.name}/") for k in keys)
    loop = receiver.received()[1].body
    assert "hyos-supervisor restart server" in loop["message"]
    assert loop["type"] == "failure"
