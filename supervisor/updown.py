"""The shell behind `up`, `down` and `status`: runs plans against the engine. A stack
pass (passes.py: a *reconcile*) converges through `plan_and_ensure` and `apply_service`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from entrypoint.contract import parse_events
from supervisor import policy, roles, secretspec
from supervisor.dockertypes import ContainerState, EngineError, Observed, owned_by
from supervisor.guard import ensure_socket_file
from supervisor.plan import Desired, ServicePlan, plan_stack, strays
from supervisor.ports import EnginePort
from supervisor.roles import Role
from supervisor.settings import Settings
from supervisor.stack import (
    GUARD_SOCKET_NAME,
    Runtime,
    data_mount,
    desired_services,
    stack_labels,
)

# The logger keeps the module's former name: it is the `logger` field of these lines, which
# operators' log filters may match.
log = logging.getLogger("supervisor.reconcile")


class StackError(Exception):
    """`up` or `down` cannot proceed; the message is the one line the operator sees."""


class NotReady(StackError):
    def __init__(self, message: str, logs: list[str]) -> None:
        super().__init__(message)
        self.logs = logs


@dataclass
class UpReport:
    changes: list[str] = field(default_factory=list)
    container_ids: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def desired_stack(settings: Settings, runtime: Runtime | None = None) -> dict[str, Desired]:
    desired = {}
    for role, spec in desired_services(settings, runtime).items():
        request = policy.create_request(spec)
        desired[role] = Desired(role, spec.name, request.body, request.image, request.spec_hash)
    return desired


async def _check_names(engine: EnginePort, settings: Settings, plans: list[ServicePlan]) -> None:
    """Refuse before touching anything if a name we need belongs to someone else."""
    for plan in plans:
        if not plan.create:
            continue
        holder = await engine.inspect(plan.desired.name)
        if holder is None or any(o.id == holder.id for o in plan.remove):
            continue
        if not owned_by(holder.labels, settings.stack):
            raise StackError(
                f"a container named {plan.desired.name!r} exists but is not managed by "
                f"stack {settings.stack!r}; rename or remove it, or choose another stack name"
            )
    labels = await engine.network_labels(settings.network_name)
    if labels is not None and not owned_by(labels, settings.stack):
        raise StackError(
            f"network {settings.network_name!r} exists but is not managed by stack "
            f"{settings.stack!r}; remove it or choose another stack name"
        )


async def _ensure_images(engine: EnginePort, settings: Settings, plans: list[ServicePlan]) -> None:
    images = [plan.desired.image for plan in plans if plan.create]
    if settings.prepare:
        images.append(settings.helper_image)
    for image in dict.fromkeys(images):
        if settings.pull == "always" or not await engine.image_exists(image):
            if settings.pull == "never":
                raise StackError(f"image {image!r} is not present locally and pull is 'never'")
            log.info("pulling image", extra={"image": image})
            await engine.pull(image)


@dataclass(frozen=True)
class Converged:
    """Plans against the real host facts, once network and volumes exist."""

    plans: list[ServicePlan]
    runtime: Runtime


def guard_dir_for(settings: Settings) -> Path | None:
    """The host directory of the stack's guard socket; None when there is no guard (off, or
    the engine is not reached through a local socket the manager's could sit beside)."""
    if settings.guard and settings.docker_host.startswith("unix://"):
        return settings.stack_guard_dir
    return None


async def stack_runtime(engine: EnginePort, settings: Settings) -> Runtime:
    machine_id = system_volume = None
    commands = {}
    volume = await engine.volume(settings.system_volume) if settings.prepare else None
    if volume is not None:
        system_volume = settings.system_volume
        machine_id = f"{volume.mountpoint}/{policy.MACHINE_ID_NAME}"
        for role, service in settings.services().items():
            command = await engine.image_command(service.image)
            if command is not None:
                commands[role] = command
    guard_dir = guard_dir_for(settings)
    if guard_dir is not None:
        # A bind source must exist: the daemon's guard serves here; until one does, a socket
        # nobody listens on stands in for it.
        ensure_socket_file(guard_dir / GUARD_SOCKET_NAME, settings.manager.user.gid)
    return Runtime(
        machine_id_source=machine_id,
        guard_dir=None if guard_dir is None else str(guard_dir),
        system_volume=system_volume,
        image_commands=commands,
    )


async def plan_and_ensure(
    engine: EnginePort, settings: Settings, report: UpReport, *, start_exited: bool = True
) -> Converged:
    """Refuse early, ensure images, network and volumes, plan, and run the prepare step
    when something is about to be created or started. `start_exited=False`: the caller
    will not start exited containers (the daemon after startup), so they need no prepare."""
    observed = await engine.list_stack(settings.stack)
    # Names and images do not depend on host facts: check them before the first change.
    provisional = plan_stack(desired_stack(settings), observed)
    await _check_names(engine, settings, provisional)
    await _ensure_images(engine, settings, provisional)
    labels = stack_labels(settings.stack)
    if not settings.data_is_bind and await engine.ensure_volume(settings.data_source, labels):
        report.changes.append(f"created volume {settings.data_source}")
    if settings.prepare and await engine.ensure_volume(settings.system_volume, labels):
        report.changes.append(f"created volume {settings.system_volume}")
    runtime = await stack_runtime(engine, settings)
    desired = desired_stack(settings, runtime)
    plans = plan_stack(desired, observed)
    for stray in strays(desired, observed):
        await remove_container(engine, stray, settings)
        report.changes.append(f"removed stray container {stray.name}")

    async def network() -> None:
        if await engine.ensure_network(settings.network_name, labels):
            report.changes.insert(0, f"created network {settings.network_name}")

    # The prepare step needs only the volumes: the network is made meanwhile.
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(network)
            if settings.prepare and any(
                p.create or (p.start and (start_exited or not p.keeps_exited)) for p in plans
            ):
                group.start_soon(run_prepare, engine, settings)
    except BaseExceptionGroup as failure:
        raise failure.exceptions[0] from None
    return Converged(plans, runtime)


async def run_prepare(engine: EnginePort, settings: Settings, rotate: tuple[str, ...] = ()) -> None:
    """The one-shot helper: ownership and modes of /data, machine-id, secret files."""
    supplied = settings.supplied_secrets()
    spec = policy.PrepareSpec(
        stack=settings.stack,
        image=settings.helper_image,
        uid=settings.server.user.uid,
        gid=settings.server.user.gid,
        data=data_mount(settings),
        system_volume=settings.system_volume,
        secret_names=secretspec.GENERATED,
        # An optional secret nobody supplies any more must not linger on the volume.
        forget=tuple(name for name in secretspec.OPTIONAL if name not in supplied),
        rotate=rotate,
        secrets_on_stdin=bool(supplied),
        log_max_size=settings.log_max_size,
    )
    name = settings.container_name(Role.PREPARE)
    leftover = await engine.inspect(name)
    if leftover is not None:
        if not owned_by(leftover.labels, settings.stack):
            raise StackError(f"a container named {name!r} exists but is not managed by this stack")
        await engine.remove(leftover.id)
    stdin = (json.dumps(supplied) + "\n").encode() if supplied else None
    try:
        code, out, err = await engine.run_once(name, policy.build_prepare_body(spec), stdin, 600)
    except EngineError as failure:
        raise StackError(f"prepare step failed: {failure}; nothing was started") from None
    for event in parse_events(out):
        # Counts and names only: the step never prints a secret or the machine-id.
        result = {k: v for k, v in event.items() if k != "event"}
        log.info(f"prepare: {event['event']}", extra={"stack": settings.stack, "result": result})
    if code != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"prepare step failed (exit {code}): {last}; nothing was started")


async def bring_up(engine: EnginePort, settings: Settings, wait: bool, timeout: float) -> UpReport:
    """Converge the stack on the settings; start order server, then manager."""
    report = UpReport()
    # The prepare step runs first: a failure leaves no container created or started.
    plans = (await plan_and_ensure(engine, settings, report)).plans
    # The first service starts as soon as it exists; the others are created while it
    # comes up, so only their starts wait on its health.
    for index, plan in enumerate(plans):
        report.container_ids[plan.role] = await apply_service(
            engine, settings, plan, report, start=index == 0
        )
    for index, plan in enumerate(plans):
        container_id = report.container_ids[plan.role]
        if index > 0 and plan.start:
            await start_service(engine, plan.role, container_id, report)
        # A service that waits for the server is itself awaited only with --wait (the
        # others: the services after them need them healthy).
        if not roles.waits_for_server(plan.role) or wait:
            await await_ready(engine, plan.role, container_id, timeout)
    return report


async def remove_container(engine: EnginePort, observed: Observed, settings: Settings) -> None:
    if observed.running:
        await engine.stop(observed.id, settings.stop_timeout(observed.role))
    await engine.remove(observed.id)


async def apply_service(
    engine: EnginePort, settings: Settings, plan: ServicePlan, report: UpReport, start: bool
) -> str:
    """Remove what the plan drops, create what is missing, start when asked; returns the id."""
    for old in plan.remove:
        log.info(
            "removing container",
            extra={"service": plan.role, "container_id": old.id[:12], "reason": plan.reason},
        )
        await remove_container(engine, old, settings)
        report.changes.append(f"removed {plan.role} {old.id[:12]} ({plan.reason})")
    if plan.keep is not None:
        container_id = plan.keep.id
    else:
        container_id = await engine.create(plan.desired.name, plan.desired.body)
        log.debug(
            "created container", extra={"service": plan.role, "container_id": container_id[:12]}
        )
        report.changes.append(f"created {plan.role} {container_id[:12]}")
    if plan.start and start:
        await start_service(engine, plan.role, container_id, report)
    return container_id


async def start_service(engine: EnginePort, role: str, container_id: str, report: UpReport) -> None:
    try:
        await engine.start(container_id)
    except EngineError as err:
        err.what = f"start the {role} container {container_id[:12]}"
        raise
    log.debug("started container", extra={"service": role, "container_id": container_id[:12]})
    report.changes.append(f"started {role} {container_id[:12]}")


# `secrets rotate WHICH`: the API client id identifies, the secrets authenticate.
ROTATIONS: dict[str, tuple[str, ...]] = {
    "api": ("api_client_secret",),
    "session": ("session_secret",),
    "all": ("api_client_secret", "session_secret"),
}


async def await_ready(engine: EnginePort, role: str, container_id: str, timeout: float) -> None:
    try:
        await engine.wait_ready(container_id, timeout)
    except TimeoutError:
        raise NotReady(
            f"{role} did not become healthy within {timeout:g} s",
            await engine.logs_tail(container_id, 20),
        ) from None
    except EngineError as err:
        raise NotReady(f"{role} {err}", await engine.logs_tail(container_id, 20)) from None


async def take_down(engine: EnginePort, settings: Settings, volumes: bool) -> list[str]:
    """Stop manager then server gracefully, remove them and the network; volume on request."""
    changes = []
    observed = await engine.list_stack(settings.stack)
    order = {role: index for index, role in enumerate(reversed(list(settings.services())))}
    for container in sorted(observed, key=lambda o: order.get(o.role, -1)):
        await remove_container(engine, container, settings)
        changes.append(f"removed {container.role or 'container'} {container.id[:12]}")
    labels = await engine.network_labels(settings.network_name)
    if labels is not None and owned_by(labels, settings.stack):
        await engine.remove_network(settings.network_name)
        changes.append(f"removed network {settings.network_name}")
    if volumes and not settings.data_is_bind:
        labels = await engine.volume_labels(settings.data_source)
        if labels is not None and owned_by(labels, settings.stack):
            await engine.remove_volume(settings.data_source)
            changes.append(f"removed volume {settings.data_source}")
        elif labels is not None:
            changes.append(f"kept volume {settings.data_source}: not created by this stack")
    if volumes:
        labels = await engine.volume_labels(settings.system_volume)
        if labels is not None and owned_by(labels, settings.stack):
            await engine.remove_volume(settings.system_volume)
            changes.append(f"removed volume {settings.system_volume}")
    return changes


def _uptime(state: ContainerState, now: datetime) -> float | None:
    if not state.running or state.started_at is None:
        return None
    return max(0.0, (now - state.started_at).total_seconds())


async def stack_status(engine: EnginePort, settings: Settings) -> list[dict[str, Any]]:
    """Per desired service: the engine's view of its container."""
    observed = await engine.list_stack(settings.stack)
    rows = []
    now = datetime.now(UTC)
    for role in settings.services():
        mine = [o for o in observed if o.role == role]
        row: dict[str, Any] = {"service": role, "state": "missing", "health": None}
        if mine:
            row.update(container_id=mine[0].id[:12], name=mine[0].name)
            info = await engine.inspect(mine[0].id)
            if info is None:  # removed since the listing: what the listing said
                row.update(
                    state=mine[0].state,
                    health=None,
                    image=None,
                    uptime_s=None,
                    restart_count=0,
                    exit_code=None,
                    oom_killed=False,
                )
            else:
                state = info.state
                row.update(
                    state=state.status,
                    health=state.health_status,
                    image=info.image or None,
                    uptime_s=_uptime(state, now),
                    restart_count=info.restart_count,
                    exit_code=None if state.running else state.exit_code,
                    oom_killed=state.oom_killed,
                )
            row.update(duplicates=len(mine) - 1)
        rows.append(row)
    return rows
