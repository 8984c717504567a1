"""`hyos-supervisor exec`: the local terminal wired to an exec inside a container.

The shell around `EnginePort.exec_session`: stdin goes in (raw mode when it is a terminal and a
TTY was asked for), the container's stdout and stderr come out, and the command's exit code
is returned. Nobody needs the Docker socket for it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import termios
import tty as ttymod
from collections.abc import Iterator

import anyio

from supervisor.ports import EnginePort

__all__ = ["exec_command"]


@contextlib.contextmanager
def _raw(fd: int, enabled: bool) -> Iterator[None]:
    """The local terminal in raw mode for the exec's own TTY; restored on the way out."""
    if not enabled:
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        ttymod.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def exec_command(engine: EnginePort, container_id: str, cmd: list[str], user: str,
                       want_tty: bool) -> int:  # fmt: skip
    stdin_fd = sys.stdin.fileno()
    interactive = want_tty and os.isatty(stdin_fd)
    out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    async with engine.exec_session(container_id, cmd, user, tty=want_tty) as session:
        with _raw(stdin_fd, interactive):
            async with anyio.create_task_group() as tg:

                async def feed() -> None:
                    while True:
                        data = await anyio.to_thread.run_sync(
                            os.read, stdin_fd, 65536, abandon_on_cancel=True
                        )
                        if not data:
                            await session.close_stdin()
                            return
                        await session.write(data)

                tg.start_soon(feed)
                while (message := await session.read()) is not None:
                    stream, data = message
                    out.get(stream, sys.stdout.buffer).write(data)
                    out.get(stream, sys.stdout.buffer).flush()
                tg.cancel_scope.cancel()
        return await session.exit_code()
