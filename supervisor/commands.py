"""The control socket's commands (`hyos-supervisor status`, `health`, `secrets rotate`,
`restart`): one JSON request line in, one reply line out, each a handler in a table.
Whatever goes wrong answers the client; it never ends the daemon."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from supervisor import roles
from supervisor.dockertypes import EngineError
from supervisor.restarts import Step
from supervisor.roles import Role
from supervisor.supervision import Supervision
from supervisor.updown import StackError
from supervisor.worker import ServiceWorker

Request = dict[str, Any]
Reply = dict[str, Any]


class Commands:
    def __init__(self, sup: Supervision, workers: Mapping[str, ServiceWorker]) -> None:
        self.sup = sup
        self.workers = workers
        self.handlers: dict[str, Callable[[Request], Awaitable[Reply]]] = {
            "status": self.status,
            "health": self.health,
            "rotate": self.rotate,
            "restart": self.restart,
        }

    async def answer(self, request: Request) -> Reply:
        try:
            return await self.dispatch(request)
        except EngineError as err:
            self.sup.log.error(
                "control request failed",
                extra={"command": str(request.get("command")), "error": str(err)},
            )
            return {"ok": False, "error": str(err)}
        except Exception as err:
            self.sup.unexpected("a control request", err, command=str(request.get("command")))
            return {"ok": False, "error": f"internal error: {err!r}"}

    async def dispatch(self, request: Request) -> Reply:
        command = str(request.get("command"))
        handler = self.handlers.get(command)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        return await handler(request)

    async def status(self, _: Request) -> Reply:
        return {"ok": True, **self.sup.view()}

    async def health(self, _: Request) -> Reply:
        return {
            "ok": True,
            "heartbeat_age_s": self.sup.heartbeat.age(),
            "stopping": self.sup.stopping,
        }

    async def rotate(self, request: Request) -> Reply:
        names = tuple(str(n) for n in request.get("names") or ())
        async with self.sup.prepare_lock:
            try:
                await self.sup.ops.rotate(names)
            except (StackError, EngineError) as err:
                return {"ok": False, "error": str(err)}
        self.sup.log.info("secrets rotated", extra={"names": list(names)})
        server = self.workers.get(Role.SERVER)
        if server is not None and server.service.container_id is not None:
            # The manager follows once the server is healthy again.
            await server.ask(
                Step.RESTART, "secrets rotated", then=self._manager_follows, cause="rotation"
            )
        return {
            "ok": True,
            "message": f"rotated {', '.join(names)}; restarting server, then manager",
        }

    async def restart(self, request: Request) -> Reply:
        role = str(request.get("service"))
        worker = self.workers.get(role)
        if worker is None:
            return {"ok": False, "error": f"unknown service {role!r}; use {roles.spoken()}"}
        await worker.call(worker.restart_for_operator)  # in its turn, as every change
        return {"ok": True, "message": f"{role}: state cleared, restarting"}

    def _manager_follows(self) -> None:
        self.sup.manager_after_server = True
