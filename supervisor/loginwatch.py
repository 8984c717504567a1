"""The Hytale login as HyOS runs it: follow the server's log while it runs, and on lines
about the login re-read HyOS's auth.json (through the engine, never the volume).
Event-driven: nothing is polled while nothing happens.

The follower only reads: what it reads goes to the server's worker as a job (the worker
alone writes the service's record: `ServiceWorker.login_read`, `login_followed`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from anyio.abc import TaskGroup

from supervisor import hyos
from supervisor.dockertypes import EngineError
from supervisor.store import Service
from supervisor.supervision import Supervision

Run = tuple[str, float | None]  # (container, its start) being followed


class _Worker(Protocol):
    """The server's worker, as the follower sees it."""

    def submit(self, job: Callable[[], Awaitable[Any]]) -> None: ...

    async def login_read(self, container_id: str, login: hyos.Login | None) -> None: ...

    async def login_followed(self, run: Run) -> None: ...


class LoginWatch:
    def __init__(
        self,
        sup: Supervision,
        service: Service,
        worker: _Worker,
    ) -> None:
        self.sup = sup
        self.service = service  # read only
        self.worker = worker

    def follow(self, helpers: TaskGroup, container_id: str, run: Run) -> None:
        """One follower per run of the container (the worker keeps which run is
        followed): a restart ends the old stream (the engine closes it) and starts a new
        one."""
        helpers.start_soon(self._follow, container_id, run)

    async def _follow(self, container_id: str, run: Run) -> None:
        last: list[hyos.Login | None] = []  # what this follower told the worker last
        try:
            await self._read(container_id, last)
            async with self.sup.engine.follow_logs(container_id) as lines:
                async for line in lines:
                    waiting = self.service.login is not None and self.service.login.waiting
                    if waiting or hyos.LOGIN_LINE.search(line):
                        await self._read(container_id, last)
        except EngineError as err:
            # The container went away or the engine hiccupped; its next start watches again.
            self.sup.log.debug("stopped following the login", extra={"error": str(err)})
        except Exception as err:
            self.sup.unexpected("following the login", err, service=self.service.role)
        finally:
            self.worker.submit(partial(self.worker.login_followed, run))

    async def _read(self, container_id: str, last: list[hyos.Login | None]) -> None:
        login = hyos.parse_login(await self.sup.engine.read_file(container_id, hyos.AUTH_FILE))
        if last and last[0] == login:
            return  # unchanged since this follower last told the worker
        last[:] = [login]
        self.worker.submit(partial(self.worker.login_read, container_id, login))
