"""Pure: settings -> the desired container specs of the stack, in start order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from entrypoint.contract import LABEL_ROLE
from supervisor import secretspec
from supervisor.dockertypes import ownership_labels
from supervisor.roles import PROFILES, Role
from supervisor.settings import HealthcheckOverride, PortBinding, Settings


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
    tmpfs_exec: bool
    env: tuple[tuple[str, str], ...]
    stop_timeout: int
    ports: tuple[PortBinding, ...]
    healthcheck: HealthcheckOverride | None
    network: str
    mounts: tuple[Mount, ...]
    log_max_size: str
    log_max_file: int
    labels: tuple[tuple[str, str], ...] = field(default=())
    # Set only to wrap the image's own command in the file_env shim.
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def base_labels(self) -> dict[str, str]:
        return {**ownership_labels(self.stack), LABEL_ROLE: self.role}


# Where workloads find what the supervisor prepares. Every mount below goes where the image
# has nothing of its own: a mount on a directory the image uses would hide it. HyOS's images
# are Alpine, where /var/run is a symbolic link to /run and Docker resolves a mount target
# through it, so a directory mounted "at /var/run" covers the image's whole /run.
SECRETS_DIR = secretspec.SECRETS_DIR
# The guard's socket, as one file where dockerode looks for Docker (HyOS's manager hard-codes
# `socketPath: "/var/run/docker.sock"` and ignores DOCKER_HOST): a file mount covers no
# directory on any layout (/var/run a link to /run, a directory, or absent). It binds the
# socket the guard has when the manager starts; the daemon restarts a manager that started
# before the guard's current socket (dashboard.Dashboard.on_guard_bound).
GUARD_SOCKET_TARGET = "/var/run/docker.sock"
# What HyOS's scripts and its manager share on the volume (state files, mods, slots).
STATE_DIR = "/data/.state"
# The REST API plugin's port on the stack network (HyOS's API_PORT); never published.
DEFAULT_API_PORT = 30381
GAME_PORT = 5520
# The server's main process, as a basic regular expression that cannot match itself: the
# launcher outlives it after a stop signal (HyOS's entrypoint exits before Java has saved).
SERVER_MAIN_PROCESS = r"[H]ytaleServer\.jar"
# The stack's system volume (launcher shim, machine-id), read-only: a directory of our own
# that no image has; /run is an empty directory in HyOS's images, so it covers nothing.
SYSTEM_MOUNT = "/run/hyos-system"
FILE_ENV_SHIM_NAME = "file-env.sh"
GUARD_SOCKET_NAME = "docker.sock"


@dataclass(frozen=True)
class Runtime:
    """Host facts the specs depend on, found by the shell before planning."""

    # Host path of the stable machine-id file (inside the stack's system volume).
    machine_id_source: str | None = None
    # Host directory that holds the guard socket the manager talks to.
    guard_dir: str | None = None
    # The stack's system volume (machine-id, file_env shim), when the prepare step runs.
    system_volume: str | None = None
    # role -> the image's own (Entrypoint, Cmd), for wrapping in the file_env shim.
    image_commands: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict
    )

    @property
    def guard_socket(self) -> str | None:
        """Host path of the guard's socket, the bind source of the manager's Docker socket."""
        return f"{self.guard_dir}/{GUARD_SOCKET_NAME}" if self.guard_dir else None


def stack_labels(stack: str) -> dict[str, str]:
    """Labels on the network and the volume: ours, so `down` may remove them."""
    return ownership_labels(stack)


def data_mount(settings: Settings) -> Mount:
    return Mount("bind" if settings.data_is_bind else "volume", settings.data_source, "/data")


def secret_env(role: str, supplied: frozenset[str] = frozenset()) -> tuple[tuple[str, str], ...]:
    """`X_FILE=/data/.hyos/secrets/x`: the file's path, never the value."""
    return tuple((f"{spec.env}_FILE", spec.path) for spec in secretspec.for_role(role, supplied))


def file_env_command(
    image_command: tuple[tuple[str, ...], tuple[str, ...]],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(Entrypoint, Cmd) that run the shim first, then exactly what the image would."""
    entrypoint, cmd = image_command
    return ("/bin/sh", f"{SYSTEM_MOUNT}/{FILE_ENV_SHIM_NAME}", *entrypoint), cmd


def _extra_mounts_and_env(
    role: str, settings: Settings, runtime: Runtime
) -> tuple[tuple[Mount, ...], tuple[tuple[str, str], ...]]:
    mounts: list[Mount] = []
    env: list[tuple[str, str]] = []
    profile = PROFILES[Role(role)]
    if settings.prepare:
        supplied = frozenset(settings.supplied_secrets())
        env += secret_env(role, supplied)
        if profile.game:
            # Keep the REST API plugin's bcrypt hash in step with a rotated secret.
            env.append(("API_REGENERATE_CONFIG", "true"))
        if _uses_shim(role, settings, runtime) and runtime.system_volume:
            mounts.append(Mount("volume", runtime.system_volume, SYSTEM_MOUNT, read_only=True))
            if settings.services()[role].secret_delivery == "shim":
                specs = secretspec.for_role(role, supplied)
                env.append(("HYOS_FILE_ENV", " ".join(spec.env for spec in specs)))
            if profile.game:
                # HyOS finds Java this way too (healthcheck.sh, auto-update.sh).
                env.append(("HYOS_STOP_WAIT", SERVER_MAIN_PROCESS))
    if profile.stable_machine_id and runtime.machine_id_source:
        # Hytale derives its auth-persistence key from the machine-id: keep it stable.
        mounts.append(Mount("bind", runtime.machine_id_source, "/etc/machine-id", read_only=True))
    if profile.dashboard:
        env += manager_wiring(settings)
        if runtime.guard_socket:
            # The manager reaches Docker only through the guard, never the real socket.
            mounts.append(Mount("bind", runtime.guard_socket, GUARD_SOCKET_TARGET, read_only=True))
            env.append(("DOCKER_HOST", f"unix://{GUARD_SOCKET_TARGET}"))
    return tuple(mounts), tuple(env)


def manager_wiring(settings: Settings) -> list[tuple[str, str]]:
    """What HyOS's compose tells its manager: where the server is, by name on the stack
    network (never found by a hard-coded name), where the shared state lives, and the
    game port players use."""
    server = settings.server
    api_port = server.env.get("API_PORT", str(DEFAULT_API_PORT))
    game = server.env.get("SERVER_PORT", str(GAME_PORT))
    wiring = [
        ("HYTALE_CONTAINER_NAME", settings.container_name(Role.SERVER)),
        ("HYTALE_SERVER_HOST", settings.container_name(Role.SERVER)),
        ("HYTALE_SERVER_PORT", api_port),
        ("HYTALE_STATE_DIR", STATE_DIR),
    ]
    published = [
        p.host_port
        for p in server.port_bindings
        if str(p.container_port) == game and p.protocol == "udp" and p.host_port
    ]
    if published:
        wiring.append(("HYTALE_GAME_PORT", str(published[0])))
    return wiring


def _uses_shim(role: str, settings: Settings, runtime: Runtime) -> bool:
    """Every workload starts through the launcher shim once the prepare step installed it
    (graceful stop of the whole container); it exports secrets only for "shim" delivery."""
    return settings.prepare and role in runtime.image_commands


def desired_services(settings: Settings, runtime: Runtime | None = None) -> dict[str, ServiceSpec]:
    """The stack's containers, server first: the manager needs a healthy server."""
    runtime = runtime or Runtime()
    data = data_mount(settings)
    specs = {}
    for role, service in settings.services().items():
        mounts, env = _extra_mounts_and_env(role, settings, runtime)
        command = (
            file_env_command(runtime.image_commands[role])
            if _uses_shim(role, settings, runtime)
            else (None, None)
        )
        specs[role] = ServiceSpec(
            stack=settings.stack,
            role=role,
            name=settings.container_name(role),
            image=service.image,
            uid=service.user.uid,
            gid=service.user.gid,
            memory_bytes=int(service.memory),
            nano_cpus=round(service.cpus * 1e9),
            pids_limit=service.pids_limit,
            cap_add=tuple(service.cap_add),
            read_only=service.read_only,
            # /tmp always; HOME and app caches come from the settings.
            tmpfs=tuple(dict.fromkeys(["/tmp", *service.tmpfs])),
            tmpfs_exec=service.tmpfs_exec,
            env=tuple(sorted({**service.env, **dict(env)}.items())),
            stop_timeout=settings.stop_timeout(role),
            ports=tuple(service.port_bindings),
            healthcheck=service.healthcheck,
            network=settings.network_name,
            mounts=(data, *mounts),
            log_max_size=settings.log_max_size,
            log_max_file=settings.log_max_file,
            entrypoint=command[0],
            cmd=command[1],
        )
    return specs
