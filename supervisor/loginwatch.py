"""The Hytale login as HyOS runs it: follow the server's log while it runs, and on lines
about the login re-read HyOS's auth.json (through the engine, never the volume).
Event-driven: nothing is polled while nothing happens."""

from __future__ import annotations

from anyio.abc import TaskGroup

from supervisor import hyos
from supervisor.dockertypes import EngineError
from supervisor.store import Service
from supervisor.supervision import Supervision


class LoginWatch:
    def __init__(self, sup: Supervision, service: Service) -> None:
        self.sup = sup
        self.service = service

    def watch(self, helpers: TaskGroup, container_id: str) -> None:
        """One follower per run of the container: a restart ends the old stream (the
        engine closes it) and starts a new one."""
        run = (container_id, self.service.restart.started_at)
        if self.service.login_watch != run:
            self.service.login_watch = run
            helpers.start_soon(self._follow, container_id, run)

    async def _follow(self, container_id: str, run: tuple[str, float | None]) -> None:
        try:
            await self._read(container_id)
            async with self.sup.engine.follow_logs(container_id) as lines:
                async for line in lines:
                    waiting = self.service.login is not None and self.service.login.waiting
                    if waiting or hyos.LOGIN_LINE.search(line):
                        await self._read(container_id)
        except EngineError as err:
            # The container went away or the engine hiccupped; its next start watches again.
            self.sup.log.debug("stopped following the login", extra={"error": str(err)})
        except Exception as err:
            self.sup.unexpected("following the login", err, service=self.service.role)
        finally:
            if self.service.login_watch == run:
                self.service.login_watch = None

    async def _read(self, container_id: str) -> None:
        service = self.service
        login = hyos.parse_login(await self.sup.engine.read_file(container_id, hyos.AUTH_FILE))
        if login == service.login or service.container_id != container_id:
            return
        before, service.login = service.login, login
        log = self.sup.log.bind(service=service.role, container_id=container_id[:12])
        if login is not None and login.waiting:
            # Once per code: the URL and code are what an operator needs, nothing else.
            log.warning(
                "the Hytale login waits for approval: open the URL and enter the code "
                "(or run `hyos-supervisor auth`)",
                extra={"url": login.url, "code": login.code},
            )
        elif login is not None and before is not None and before.waiting:
            log.info("the Hytale login ended", extra={"login": login.status})
        self.sup.save()
