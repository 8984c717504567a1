"""The one benign asyncio loop error anyio's UNIX socket streams produce is logged at DEBUG;
every other loop error still reaches the log as an error."""

from __future__ import annotations

import asyncio
import logging
import socket

import anyio
import anyio.abc
import pytest

from supervisor.logs import quiet_cancelled_wakeups


async def _cancel_a_receive_as_bytes_arrive(quiet: bool) -> None:
    """A receive on a UNIX stream is cancelled by a callback that runs in the same loop
    pass in which the peer's bytes made the socket readable: the reader callback then
    resolves a cancelled future. The guard's relays do this when Docker's EOF ends one
    direction just as the client's last bytes arrive."""
    loop = asyncio.get_running_loop()
    if quiet:
        quiet_cancelled_wakeups(loop)
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stream = await anyio.abc.UNIXSocketStream.from_socket(ours)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.receive)
            await anyio.wait_all_tasks_blocked()
            theirs.sendall(b"bye")  # readable at the next poll ...
            loop.call_soon(tg.cancel_scope.cancel)  # ... queued ahead of its reader callback
            await asyncio.sleep(0)
        for _ in range(3):  # let the loop run whatever is left
            await asyncio.sleep(0)
    finally:
        await stream.aclose()
        theirs.close()


def _loop_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


def test_the_race_is_real_without_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        anyio.run(_cancel_a_receive_as_bytes_arrive, False)
    errors = _loop_errors(caplog)
    assert errors and "Future.set_result" in errors[0].getMessage()


def test_the_handler_logs_the_race_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        anyio.run(_cancel_a_receive_as_bytes_arrive, True)
    assert _loop_errors(caplog) == []
    assert any("cancelled socket wait" in r.getMessage() for r in caplog.records)


def test_other_loop_errors_still_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    async def fail_in_a_callback() -> None:
        loop = asyncio.get_running_loop()
        quiet_cancelled_wakeups(loop)
        done = loop.create_future()
        done.set_result(None)
        loop.call_soon(done.set_result, None)  # a finished future, not a cancelled one
        loop.call_soon(lambda: 1 / 0)
        for _ in range(3):
            await asyncio.sleep(0)

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        anyio.run(fail_in_a_callback)
    messages = [r.getMessage() for r in _loop_errors(caplog)]
    assert len(messages) == 2, messages
