"""READY means the daemon answers: the control socket is bound and served before
`notifier.ready()`, so a `status` right after READY never finds nobody listening.
The whole daemon runs against the tests' fake engine."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import anyio
import pytest

from supervisor.daemon import Daemon
from supervisor.notify import Notifier
from supervisor.settings import load_settings
from tests.fakeengine import FakeEngine

pytestmark = pytest.mark.anyio


class ReadyProbe(Notifier):
    """At READY: is the control socket there, and does it take a status request?"""

    def __init__(self, socket_path: Path) -> None:
        super().__init__(environ={})
        self.socket_path = socket_path
        self.client: socket.socket | None = None
        self.bound_at_ready: bool | None = None
        self.announced = anyio.Event()

    def ready(self) -> bool:
        self.bound_at_ready = self.socket_path.is_socket()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Connecting to a unix socket succeeds at once when it listens (the backlog
            # takes it) and raises ConnectionRefusedError or FileNotFoundError when not.
            client.connect(str(self.socket_path))
            client.sendall(json.dumps({"command": "status"}).encode() + b"\n")
            self.client = client
        except OSError:
            client.close()
        self.announced.set()
        return super().ready()


def _reply(client: socket.socket) -> dict[str, object]:
    client.settimeout(10)
    data = b""
    while not data.endswith(b"\n"):
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    client.close()
    reply: dict[str, object] = json.loads(data)
    return reply


async def test_the_control_socket_answers_at_ready(tmp_path: Path) -> None:
    settings = load_settings(state_dir=str(tmp_path), guard=False)
    engine = FakeEngine()
    probe = ReadyProbe(tmp_path / "placeholder")
    daemon = Daemon(settings, engine, probe)
    probe.socket_path = daemon.socket_path
    async with anyio.create_task_group() as group:
        group.start_soon(daemon.run)
        with anyio.fail_after(20):
            await probe.announced.wait()
        assert probe.bound_at_ready is True
        assert probe.client is not None
        reply = await anyio.to_thread.run_sync(_reply, probe.client)
        daemon._work_scope.cancel()  # as the first SIGTERM does
    assert reply["ok"] is True
    assert ("start", next(iter(engine.containers))) in engine.calls  # the first pass ran
