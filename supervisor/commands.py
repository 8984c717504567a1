"""The control socket's commands (`hyos-supervisor status`, `health`, `secrets rotate`,
`restart`, `cancel`, and `down`'s drain): one JSON request line in, one reply line out,
each a handler in a table. Whatever goes wrong answers the client; it never ends the
daemon. What disrupts the server's players goes through its drain (supervisor/drains.py)
unless the request says `now`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from supervisor import roles
from supervisor.dockertypes import EngineError
from supervisor.drains import Disruption, DrainRequest, Drains
from supervisor.roles import Role
from supervisor.supervision import Supervision
from supervisor.worker import ServiceWorker

Request = dict[str, Any]
Reply = dict[str, Any]


class Commands:
    def __init__(
        self,
        sup: Supervision,
        workers: Mapping[str, ServiceWorker],
        drains: Drains,
        end: Callable[[], bool] = lambda: False,
    ) -> None:
        """`end` ends the daemon once `down` removed the stack it held for."""
        self.sup = sup
        self.workers = workers
        self.drains = drains
        self.end = end
        self.handlers: dict[str, Callable[[Request], Awaitable[Reply]]] = {
            "status": self.status,
            "health": self.health,
            "rotate": self.rotate,
            "restart": self.restart,
            "drain": self.drain,
            "cancel": self.cancel,
            "end": self.end_after_down,
            "mark-stop": self.mark_stop,
        }
        # `update` (issue 26): daemon.py adds it with the daemon's Updates.
        self.update: Callable[[Request], Awaitable[Reply]] | None = None

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
        if command == "update" and self.update is not None:
            handler = self.update
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        return await handler(request)

    async def status(self, _: Request) -> Reply:
        return {"ok": True, **self.sup.view(), **self.drains.view()}

    async def health(self, _: Request) -> Reply:
        return {
            "ok": True,
            "heartbeat_age_s": self.sup.heartbeat.age(),
            "stopping": self.sup.stopping,
        }

    async def rotate(self, request: Request) -> Reply:
        """New values and the server restarted (the manager follows), once drained: the
        values are written when the drain acts, so it still reaches the running API."""
        names = tuple(str(n) for n in request.get("names") or ())
        return await self.drains.begin(
            DrainRequest(Disruption.ROTATE, names), now=bool(request.get("now"))
        )

    async def restart(self, request: Request) -> Reply:
        role = str(request.get("service"))
        worker = self.workers.get(role)
        if worker is None:
            return {"ok": False, "error": f"unknown service {role!r}; use {roles.spoken()}"}
        if role == Role.SERVER:
            return await self.drains.begin(
                DrainRequest(Disruption.RESTART), now=bool(request.get("now"))
            )
        await worker.call(worker.restart_for_operator)  # in its turn, as every change
        return {"ok": True, "message": f"{role}: state cleared, restarting"}

    async def drain(self, request: Request) -> Reply:
        """`down`: drained before the CLI stops the stack (it polls `status` meanwhile)."""
        if request.get("action") != Disruption.STOP:
            return {"ok": False, "error": "unknown drain action; use stop"}
        return await self.drains.begin(DrainRequest(Disruption.STOP), now=bool(request.get("now")))

    async def mark_stop(self, request: Request) -> Reply:
        """A `backup` verb is about to stop the server (a stop-mode backup, a restore's
        swap): its exit is asked for, as the dashboard's Stop is, so the worker leaves it
        stopped until the verb starts it again (supervisor/backup.py, StopMarker)."""
        role = str(request.get("service"))
        worker = self.workers.get(role)
        if worker is None:
            return {"ok": False, "error": f"unknown service {role!r}; use {roles.spoken()}"}
        container_id = str(request.get("container") or "")
        at = await worker.call(partial(worker.mark_stop, container_id))
        if at is None:
            return {
                "ok": False,
                "error": f"{container_id[:12] or 'that'} is not the {role}'s current container",
            }
        by = str(request.get("by") or "a backup verb")
        worker.log.info(f"{by} stops the {role}; it stays stopped until started again")
        return {"ok": True, "at": at}

    async def cancel(self, _: Request) -> Reply:
        return await self.drains.cancel()

    async def end_after_down(self, _: Request) -> Reply:
        if not self.end():
            return {"ok": False, "error": "the daemon is not held for `down`"}
        return {"ok": True, "message": "the supervisor daemon ends"}
