"""Pure: settings -> the desired container specs of the stack, in start order."""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor.settings import HealthcheckOverride, PortBinding, Settings

ROLES = ("server", "manager")
LABEL_MANAGED = "io.hyos.managed"
LABEL_STACK = "io.hyos.stack"
LABEL_ROLE = "io.hyos.role"
LABEL_SPEC_HASH = "io.hyos.spec-hash"


@dataclass(frozen=True)
class Mount:
    """A volume or bind mount; `read_only` mounts cannot be used to plant files."""

    type: str  # "volume" | "bind"
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    """Everything the stack decides about one container, before policy turns it into a body."""

    stack: str
    role: str
    name: str
    image: str
    uid: int
    gid: int
    memory_bytes: int
    nano_cpus: int
    pids_limit: int
    cap_add: tuple[str, ...]
    read_only: bool
    tmpfs: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    stop_timeout: int
    ports: tuple[PortBinding, ...]
    healthcheck: HealthcheckOverride | None
    network: str
    mounts: tuple[Mount, ...]
    log_max_size: str
    log_max_file: int
    labels: tuple[tuple[str, str], ...] = field(default=())

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def base_labels(self) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_STACK: self.stack, LABEL_ROLE: self.role}


def stack_labels(stack: str) -> dict[str, str]:
    """Labels on the network and the volume: ours, so `down` may remove them."""
    return {LABEL_MANAGED: "true", LABEL_STACK: stack}


def desired_services(settings: Settings) -> dict[str, ServiceSpec]:
    """The stack's containers, server first: the manager needs a healthy server."""
    data = Mount(
        type="bind" if settings.data_is_bind else "volume",
        source=settings.data_source,
        target="/data",
    )
    specs = {}
    for role, service in settings.services().items():
        specs[role] = ServiceSpec(
            stack=settings.stack,
            role=role,
            name=settings.container_name(role),
            image=service.image,
            uid=service.uid,
            gid=service.gid,
            memory_bytes=service.memory_bytes,
            nano_cpus=round(service.cpus * 1e9),
            pids_limit=service.pids_limit,
            cap_add=tuple(service.cap_add),
            read_only=service.read_only,
            # /tmp always; HOME and app caches come from the settings.
            tmpfs=tuple(dict.fromkeys(["/tmp", *service.tmpfs])),
            env=tuple(sorted(service.env.items())),
            stop_timeout=service.stop_timeout,
            ports=tuple(service.port_bindings),
            healthcheck=service.healthcheck,
            network=settings.network_name,
            mounts=(data,),
            log_max_size=settings.log_max_size,
            log_max_file=settings.log_max_file,
        )
    return specs
