"""Surprises inside the running daemon are logged once (traceback at DEBUG) and never end
supervision: spawned jobs, event handling, control requests. No engine needed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.daemon import Daemon
from supervisor.dockertypes import EngineError, EngineEvent, ownership_labels
from supervisor.notify import Notifier
from supervisor.settings import load_settings
from tests.fakeengine import FakeEngine

pytestmark = pytest.mark.anyio


@pytest.fixture
def make_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(events: list[EngineEvent] | None = None) -> Daemon:
        settings = load_settings(state_dir=str(tmp_path))
        engine = FakeEngine()
        engine.queue_events(*(events or []))
        daemon = Daemon(settings, engine, Notifier(environ={}))
        passes: list[bool] = []  # each asked-for stack pass: whether a startup pass
        for worker in daemon.workers.values():
            worker.request_pass = lambda: passes.append(False)
        daemon.events.request_pass = passes.append
        daemon.pass_requests = passes  # type: ignore[attr-defined]
        return daemon

    return make


def unexpected_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]


async def test_a_failing_job_is_logged_once_and_its_worker_goes_on(
    make_daemon: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="supervisor.daemon")
    daemon = make_daemon()
    worker = daemon.workers["server"]
    done = anyio.Event()

    async def _restart_now() -> None:
        raise KeyError("Id")

    async def still_running() -> None:
        done.set()

    async with anyio.create_task_group() as work:
        await work.start(worker.run)
        worker.submit(_restart_now)
        worker.submit(still_running)
        with anyio.fail_after(5):
            await done.wait()
        work.cancel_scope.cancel()
    (line,) = unexpected_lines(caplog)
    assert line.levelno == logging.ERROR
    assert line.getMessage() == "restart now failed unexpectedly; supervision continues"
    assert line.error == "KeyError('Id')"  # type: ignore[attr-defined]
    assert line.service == "server"  # type: ignore[attr-defined]
    assert line.exc_info is None  # the traceback only at DEBUG
    (trace,) = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert "KeyError" in caplog.text
    assert trace.getMessage() == "restart now failed"
    # the world is looked at again
    assert daemon.pass_requests == [False]


async def test_a_job_that_a_stack_pass_waits_for_raises_in_the_pass(make_daemon: Any) -> None:
    """A pass's share run inside a worker fails the pass (which retries), not the worker."""
    daemon = make_daemon()
    worker = daemon.workers["manager"]

    async def adopt() -> bool:
        raise EngineError("No such container: abc")

    async def answer() -> str:
        return "still here"

    async with anyio.create_task_group() as work:
        await work.start(worker.run)
        with anyio.fail_after(5), pytest.raises(EngineError, match="No such container"):
            await worker.call(adopt)
        with anyio.fail_after(5):
            assert await worker.call(answer) == "still here"
        work.cancel_scope.cancel()


async def test_an_event_handler_surprise_costs_neither_the_stream_nor_the_daemon(
    make_daemon: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ours = ownership_labels("hyos")  # the default stack's: the feed asks for no others
    events = [
        EngineEvent(action="die", container_id="a", time_nano=1, labels=ours),
        EngineEvent(action="start", container_id="b", time_nano=2, labels=ours),
    ]
    daemon = make_daemon(events)
    handled: list[str] = []
    seen = anyio.Event()

    def dispatch(event: EngineEvent) -> None:
        if event.action == "die":
            raise ValueError("odd event")
        handled.append(event.action)
        seen.set()

    daemon.events.dispatch = dispatch
    async with anyio.create_task_group() as work:
        await work.start(daemon.events.follow)
        with anyio.fail_after(5):
            await seen.wait()
        work.cancel_scope.cancel()
    assert handled == ["start"]
    (line,) = unexpected_lines(caplog)
    assert line.getMessage() == "handling an event failed unexpectedly; supervision continues"
    assert line.action == "die"  # type: ignore[attr-defined]
    assert daemon.pass_requests == [False]


async def test_a_control_request_that_fails_answers_the_client(
    make_daemon: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon()

    async def broken(request: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("services")

    monkeypatch.setattr(daemon.commands, "dispatch", broken)
    reply = await daemon.commands.answer({"command": "status"})
    assert reply == {"ok": False, "error": "internal error: KeyError('services')"}
    assert len(unexpected_lines(caplog)) == 1

    async def refused(request: dict[str, Any]) -> dict[str, Any]:
        raise EngineError("No such container: abc")

    monkeypatch.setattr(daemon.commands, "dispatch", refused)
    assert await daemon.commands.answer({"command": "restart"}) == {
        "ok": False,
        "error": "No such container: abc",
    }
