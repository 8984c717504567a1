"""The stack's operations, one implementation each, for the daemon and for the CLI when no
daemon runs: start (retrying refusals, replacing a container the engine can no longer
start), stop, restart, replace, recreate and rotate.

They act on containers and say what they did; whose accounting that changes is the
caller's business (the daemon's worker, or the CLI's store)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential,
)

from supervisor.dockertypes import EngineError, NotFound
from supervisor.logs import BoundLogger
from supervisor.ports import EnginePort
from supervisor.settings import Settings
from supervisor.stack import Runtime
from supervisor.updown import await_ready, desired_stack, run_prepare

# The longest wait between two tries of a refused start (bench/bench_dockerd_restart.py).
START_RETRY_CAP_S = 5.0
# How the engine refuses to start a container whose containerd task outlived dockerd.
STALE_TASK = re.compile(r"task [0-9a-f]{12,}: already exists")


def _transient(err: BaseException) -> bool:
    return isinstance(err, EngineError) and not isinstance(err, NotFound)


class Operations:
    """What can be done to one service's container. `patient` retries refused starts
    forever (the daemon: right after a dockerd restart the engine refuses starts for a
    while); otherwise a refusal is the caller's error at once (the CLI)."""

    def __init__(
        self,
        engine: EnginePort,
        settings: Settings,
        log: BoundLogger,
        runtime: Callable[[], Runtime | None] = lambda: None,
        *,
        patient: bool = True,
        nap: Callable[[float], Awaitable[None]] = anyio.sleep,
        stopped: Callable[[str, float], None] = lambda role, seconds: None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.log = log
        self.runtime = runtime
        self.patient = patient
        # How a refused start waits before it tries again: the daemon's nap ends early
        # when the engine is back (its event stream reconnected), not up to 30 s later.
        self.nap = nap
        # Told how long each graceful stop took, by role (the metrics' stop histogram).
        self.stopped = stopped

    async def start(self, role: str, container_id: str) -> str:
        """Start; returns the id that was started (a replacement when the engine can no
        longer start the old one). Gives up only when the container is gone."""

        def note(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            self.log.warning(
                "start refused; retrying",
                extra={"service": role, "error": str(error), "attempt": state.attempt_number},
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            # At least every 5 s: a refusal right after a dockerd restart lasts seconds, and
            # a wait doubled to 30 s kept the stack down long after the engine took starts.
            wait=wait_exponential(multiplier=0.5, max=START_RETRY_CAP_S),
            stop=stop_never if self.patient else stop_after_attempt(1),
            before_sleep=note,
            sleep=self.nap,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    await self.engine.start(container_id)
                except EngineError as err:
                    if self.patient and STALE_TASK.search(str(err)):
                        # containerd kept its task across a dockerd restart: this
                        # container will never start again.
                        why = "replaced a container the engine can no longer start"
                        container_id = await self.replace(role, container_id, why)
                    raise
        return container_id

    async def stop(self, role: str, container_id: str) -> None:
        """A graceful stop with the service's grace period (the server saves the world)."""
        began = time.monotonic()
        await self.engine.stop(container_id, self.settings.stop_timeout(role))
        self.stopped(role, time.monotonic() - began)

    async def restart(self, role: str, container_id: str, *, running: bool = True) -> str:
        """Stop (when running), then start; returns the id that was started."""
        if running:
            await self.stop(role, container_id)
        return await self.start(role, container_id)

    async def replace(
        self, role: str, old_id: str | None, why: str, level: int = logging.WARNING
    ) -> str:
        """A fresh container of the desired spec in place of `old_id`; returns its id."""
        desired = desired_stack(self.settings, self.runtime())[role]
        if old_id is not None:
            await self.engine.remove(old_id)
        new_id = await self.engine.create(desired.name, desired.body)
        self.log.log(
            level,
            why,
            extra={"service": role, "container_id": new_id[:12], "old": (old_id or "")[:12]},
        )
        return new_id

    async def recreate(self, role: str, old_id: str | None) -> str:
        """Exit 8: the server asked for an update; a new container (a fresh image when
        `pull = always`) in place of the old one, not started yet. Returns its id."""
        if self.settings.pull == "always":
            await self.engine.pull(self.settings.services()[role].image)
        return await self.replace(role, old_id, "recreated for update", logging.INFO)

    async def rotate(self, names: tuple[str, ...]) -> None:
        """New values on disk (the prepare step); the caller restarts the services."""
        await run_prepare(self.engine, self.settings, rotate=names)

    async def rotate_and_restart(self, names: tuple[str, ...], timeout: float = 600) -> None:
        """`secrets rotate` without a daemon: new values, then each service restarted in
        start order and awaited healthy, so the manager meets a server that knows them."""
        await self.rotate(names)
        observed = {o.role: o for o in await self.engine.list_stack(self.settings.stack)}
        for role in self.settings.services():
            container = observed.get(role)
            if container is not None:
                started = await self.restart(role, container.id, running=container.running)
                await await_ready(self.engine, role, started, timeout)
