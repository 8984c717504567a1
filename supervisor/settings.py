"""Settings: env `HYOS_*` (nested with `__`), an optional TOML file, `*_FILE` secrets.

Every value is validated here, before anything talks to Docker, so a bad setting
costs one clear line and exit 78, never a half-created stack.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from supervisor import __version__, capabilities, hostpaths
from supervisor.backupsettings import BackupSettings
from supervisor.crashlogsettings import CrashSettings, LogSettings
from supervisor.drainsettings import DrainSettings, ScheduleSettings
from supervisor.metricssettings import MetricsSettings
from supervisor.notifysettings import NotifySettings
from supervisor.parsedonce import parsed_once, written_as
from supervisor.restarts import RestartPolicy
from supervisor.roles import SERVICES, Role
from supervisor.secretfile import SecretFile, SecretFileSetting
from supervisor.secretspec import BY_NAME, SECRETS
from supervisor.updatesettings import UpdateSettings

_POLICY = RestartPolicy()  # the restart defaults, stated once

EX_CONFIG = 78  # sysexits.h: configuration error

DEFAULT_SERVER_IMAGE = "ghcr.io/editmysave/hyos/server:latest"
DEFAULT_MANAGER_IMAGE = "ghcr.io/editmysave/hyos/manager:latest"
DEFAULT_HELPER_IMAGE = f"hyos-supervisor:{__version__}"
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"

# Docker's own rules: names `[a-zA-Z0-9][a-zA-Z0-9_.-]+`; we also keep the stack short
# and lowercase-friendly because it prefixes container, network and volume names.
_STACK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
# A reference per distribution/reference: [host[:port]/]path[:tag][@digest].
_IMAGE_REF = re.compile(
    # A first component is a registry host only with a dot, a port, or as localhost.
    r"^(?:(?P<host>(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9-]+(?::[0-9]+)?"
    r"|[a-zA-Z0-9-]+:[0-9]+|localhost)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
_SIZE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_MIN_MEMORY = 6 * 1024**2  # the engine refuses less than 6 MiB
_PORT = re.compile(
    r"^(?:(?P<ip>\[[0-9a-fA-F:]+\]|[0-9.]+):)?(?P<host>\d+):(?P<container>\d+)(?:/(?P<proto>tcp|udp))?$"
)


def _unwrap_optional(annotation: Any) -> Any:
    """`X | None` -> X (the shape a value must take is X's)."""
    if get_origin(annotation) in (Union, UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return annotation


def decode_env_value(annotation: Any, text: str) -> Any:
    """A list or table setting as people type it in an environment variable, or JSON.

    Lists: `5520:5520/udp,30381:30381`. Tables: `TZ=Europe/Berlin,JAVA_XMX=4G`, pairs
    separated by commas or newlines (a value containing a comma needs the JSON form).
    JSON (`[...]`, `{...}`) is read as JSON. What fits neither comes back unchanged, so
    validation names the field and its expected form instead of a parser's traceback.
    A table that sets a key twice comes back as a RepeatedKey, which the table's
    validator refuses (a dict would keep the last value without a word).
    """
    stripped = text.strip()
    if stripped[:1] in ("[", "{", '"'):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    origin = get_origin(_unwrap_optional(annotation))
    if origin is list:
        return [item.strip() for item in stripped.split(",") if item.strip()]
    if origin is dict:
        table: dict[str, str] = {}
        repeated: list[str] = []
        for pair in re.split(r"[,\n]", stripped):
            if not pair.strip():
                continue
            key, sep, value = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                return text
            if key in table:
                repeated.append(key)
            table[key] = value.strip()
        return RepeatedKey(repeated[0]) if repeated else table
    return text


@dataclass(frozen=True)
class RepeatedKey:
    """A `KEY=VALUE` table from the environment that sets `key` more than once."""

    key: str


def _refuse_repeated_key(value: object) -> object:
    if isinstance(value, RepeatedKey):
        raise ValueError(f"{value.key!r} is set twice; set each variable once")
    return value


# A table of environment variables: a key set twice is refused, naming the key.
EnvTable = Annotated[dict[str, str], BeforeValidator(_refuse_repeated_key)]


# A Unix socket's path holds at most 107 bytes (sun_path is 108, with its NUL): a longer
# one fails at bind, deep inside the daemon, with an error that names no setting.
UNIX_SOCKET_PATH_MAX = 107


def _fits_a_socket(path: Path, what: str) -> None:
    size = len(os.fsencode(path))
    if size > UNIX_SOCKET_PATH_MAX:
        raise ValueError(
            f"the {what} socket {str(path)!r} would be {size} bytes, over the "
            f"{UNIX_SOCKET_PATH_MAX} a Unix socket path holds; choose a shorter directory"
        )


class ConfigError(Exception):
    """Invalid settings: one line per problem, each naming the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_size(value: str | int) -> int:
    """`512m`, `4g`, `4GiB`, `1073741824` -> bytes; raises ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512m or 4g")
    if isinstance(value, int):
        number, unit = Decimal(value), ""
    else:
        match = _SIZE.match(value)
        if not match:
            raise ValueError(
                f"{value!r} is not a size; use a positive number with k, m or g, e.g. 4g"
            )
        number, unit = Decimal(match["num"]), match["unit"].lower()
    # Decimal, not float: exact for every integer size (floats lose bytes above 2**53).
    size = int(number * _SIZE_UNITS[unit])
    if size < _MIN_MEMORY:
        raise ValueError(f"{value!r} is below the engine's minimum of 6m; use e.g. 512m or 4g")
    return size


@dataclass(frozen=True)
class PortBinding:
    host_ip: str
    host_port: int
    container_port: int
    protocol: Literal["tcp", "udp"]

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}:{self.container_port}/{self.protocol}"


class ByteSize(int):
    """A size in bytes, parsed once from `512m`, `4g`, `4GiB` or an int. It remembers how
    it was written, and `config` shows it that way."""

    text: str

    def __new__(cls, value: str | int) -> ByteSize:
        size = super().__new__(cls, parse_size(value))
        size.text = str(value)
        return size

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return written_as(cls)


@dataclass(frozen=True)
class UserSpec:
    """A numeric `uid:gid`, parsed once."""

    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"

    @classmethod
    def parse(cls, value: object) -> UserSpec:
        if isinstance(value, UserSpec):
            return value
        text = str(value)
        if not isinstance(value, str) or not re.fullmatch(r"\d+:\d+", value):
            raise ValueError(f"{text!r} is not numeric uid:gid; use e.g. 568:568")
        uid, gid = value.split(":")
        return cls(int(uid), int(gid))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return parsed_once(cls.parse, str)


@dataclass(frozen=True)
class PortSpec:
    """`[ip:]host:container[/proto]`, parsed once; without an ip it binds on the
    service's `host_ip` (see `bind`). `text` is how it was written."""

    ip: str | None
    host_port: int
    container_port: int
    protocol: Literal["tcp", "udp"]
    text: str

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, value: object) -> PortSpec:
        text = str(value)
        match = _PORT.match(text.strip())
        if not isinstance(value, str) or not match:
            raise ValueError(f"{value!r} is not a port mapping; use [ip:]host:container[/tcp|udp]")
        host, container = int(match["host"]), int(match["container"])
        if not 0 <= host <= 65535:
            raise ValueError(f"host port {host} in {value!r} is out of range 0-65535")
        if not 1 <= container <= 65535:
            raise ValueError(f"container port {container} in {value!r} is out of range 1-65535")
        ip = validate_ip(match["ip"].strip("[]")) if match["ip"] else None
        proto: Literal["tcp", "udp"] = "udp" if match["proto"] == "udp" else "tcp"
        return cls(ip, host, container, proto, value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return parsed_once(lambda v: v if isinstance(v, PortSpec) else cls.parse(v), str)

    def bind(self, default_ip: str) -> PortBinding:
        """Host port 0 lets the engine pick one."""
        ip = self.ip if self.ip is not None else default_ip
        return PortBinding(ip, self.host_port, self.container_port, self.protocol)


def _ports(value: object) -> object:
    """A list's items parsed here, so a bad one is named by the setting, not its index;
    anything else is left for the list check (and its "expected a list" line)."""
    if isinstance(value, list | tuple):
        return [item if isinstance(item, PortSpec) else PortSpec.parse(item) for item in value]
    return value


def _check_secret(name: str, value: str) -> None:
    problem = BY_NAME[name].problem(value)
    if problem is not None:
        raise ValueError(problem)


def validate_ip(value: str) -> str:
    """An explicit interface address: an empty one would publish on every interface."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address; use e.g. 127.0.0.1 or 0.0.0.0") from None


def validate_image(value: str) -> str:
    if not _IMAGE_REF.match(value):
        raise ValueError(
            f"{value!r} is not an image reference; use e.g. registry/name:tag (lowercase name)"
        )
    return value


def image_warning(image: str) -> str | None:
    match = _IMAGE_REF.match(image)
    if match and not match["digest"] and match["tag"] in (None, "latest"):
        return (
            f"image {image!r} is not pinned: set a version tag or digest so upgrades are deliberate"
        )
    return None


# The grace periods (s) a service and the server get unless configured (Settings.stop_timeout).
DEFAULT_STOP_TIMEOUT_S = 10
SERVER_STOP_TIMEOUT_S = 60


class HealthcheckOverride(BaseModel):
    """Replaces the image's HEALTHCHECK timing (the test command stays the image's)."""

    model_config = ConfigDict(extra="forbid")

    test: list[str] | None = None
    interval: float = Field(default=30.0, gt=0)
    timeout: float = Field(default=10.0, gt=0)
    retries: int = Field(default=3, ge=1)
    # The engine refuses a start period below 1 ms.
    start_period: float = Field(default=0.0, ge=0)

    @field_validator("start_period")
    @classmethod
    def _engine_minimum(cls, value: float) -> float:
        if 0 < value < 0.001:
            raise ValueError("start_period must be 0 or at least 0.001 s (the engine's minimum)")
        return value


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: ClassVar[Role]

    image: str
    # Declared before `user` so the uid check can see it.
    allow_root: bool = False
    user: UserSpec = UserSpec(568, 568)
    memory: ByteSize = ByteSize("512m")
    cpus: float = Field(default=1.0, gt=0, le=1024)
    pids_limit: int = Field(default=512, ge=16)
    # Declared before `cap_add` so its check can see it: adding a capability that amounts
    # to root (capabilities.ROOT_EQUIVALENT) needs this, is warned at every start and
    # fails `audit`.
    allow_dangerous_capabilities: bool = False
    cap_add: list[str] = Field(default_factory=list)
    read_only: bool = True
    tmpfs: list[str] = Field(default_factory=list)
    # Whether programs may map files on the tmpfs mounts executable (the JVM unpacks its
    # native libraries into /tmp and maps them; CIS and Pod Security do not require noexec).
    tmpfs_exec: bool = False
    env: EnvTable = Field(default_factory=dict)
    stop_timeout: int = Field(default=DEFAULT_STOP_TIMEOUT_S, ge=0, le=3600)
    ports: Annotated[list[PortSpec], BeforeValidator(_ports)] = Field(default_factory=list)
    host_ip: str = "127.0.0.1"
    healthcheck: HealthcheckOverride | None = None
    # "shim": X_FILE plus a read-only shim that exports X from it before the image's own
    # entrypoint (HyOS's images read only X). "file": X_FILE alone, for images that read it.
    secret_delivery: Literal["shim", "file"] = "shim"

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return validate_image(value)

    @field_validator("user")
    @classmethod
    def _user(cls, value: UserSpec, info: ValidationInfo) -> UserSpec:
        # Only the game may run as root (HyOS's entrypoint drops to 568 itself), and only
        # when the operator says so.
        if value.uid == 0 and not (cls.role is Role.SERVER and info.data.get("allow_root")):
            fix = (
                "or set allow_root = true"
                if cls.role is Role.SERVER
                else "the manager never runs as root"
            )
            raise ValueError(f"uid 0 (root) is refused; use a non-root uid such as 568:568 ({fix})")
        return value

    @field_validator("host_ip")
    @classmethod
    def _host_ip(cls, value: str) -> str:
        return validate_ip(value)

    @field_validator("cap_add")
    @classmethod
    def _caps(cls, value: list[str], info: ValidationInfo) -> list[str]:
        caps = {capabilities.normalize(cap) for cap in value if cap.strip()}
        unknown = capabilities.unknown(caps)
        if unknown:
            raise ValueError(
                f"unknown capabilities {', '.join(unknown)}; use Linux names such as "
                "NET_BIND_SERVICE (see capabilities(7))"
            )
        dangerous = capabilities.root_equivalent(caps)
        if dangerous and not info.data.get("allow_dangerous_capabilities"):
            raise ValueError(
                f"{', '.join(dangerous)} amounts to root and undoes the hardening; remove it, "
                f"or accept the risk with {cls.role}.allow_dangerous_capabilities = true "
                f"(HYOS_{cls.role.upper()}__ALLOW_DANGEROUS_CAPABILITIES)"
            )
        return sorted(caps)

    @field_validator("tmpfs")
    @classmethod
    def _tmpfs(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"tmpfs path {path!r} must be absolute, without '..'")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @property
    def port_bindings(self) -> list[PortBinding]:
        return [port.bind(self.host_ip) for port in self.ports]


class ServerSettings(ServiceSettings):
    role: ClassVar[Role] = Role.SERVER

    image: str = DEFAULT_SERVER_IMAGE
    # Hytale needs at least 4 GB; HyOS sizes the JVM heap at 75 % of the limit.
    memory: ByteSize = ByteSize("6g")
    cpus: float = Field(default=2.0, gt=0, le=1024)
    pids_limit: int = Field(default=2048, ge=16)
    # HOME must be writable under a read-only root.
    tmpfs: list[str] = Field(default_factory=lambda: ["/home/hytale"])
    # Netty's QUIC transport and zstd-jni load native libraries from java.io.tmpdir (/tmp).
    tmpfs_exec: bool = True
    # The world save on SIGTERM needs time.
    stop_timeout: int = Field(default=SERVER_STOP_TIMEOUT_S, ge=0, le=3600)
    # The game must be reachable; the API port 30381 stays unpublished.
    ports: Annotated[list[PortSpec], BeforeValidator(_ports)] = Field(
        default_factory=lambda: [PortSpec.parse("5520:5520/udp")]
    )
    host_ip: str = "0.0.0.0"


class ManagerSettings(ServiceSettings):
    role: ClassVar[Role] = Role.MANAGER

    image: str = DEFAULT_MANAGER_IMAGE
    # A ceiling, not a reservation: idle it uses ~100 MiB, but HyOS's world upload (up to
    # 500 MB) holds the file in memory several times over: 3.8 GiB peak for 500 MB
    # (bench/bench_manager_upload.py); 512m OOMs at 100 MB.
    memory: ByteSize = ByteSize("5g")
    cpus: float = Field(default=1.0, gt=0, le=1024)
    pids_limit: int = Field(default=512, ge=16)
    # Next.js writes its cache under the app directory.
    tmpfs: list[str] = Field(default_factory=lambda: ["/app/.next/cache"])
    ports: Annotated[list[PortSpec], BeforeValidator(_ports)] = Field(
        default_factory=lambda: [PortSpec.parse("3000:3000/tcp")]
    )
    host_ip: str = "127.0.0.1"


class RestartSettings(BaseModel):
    """The restart policy as settings: defaults and limits are RestartPolicy's own."""

    model_config = ConfigDict(extra="forbid")

    backoff_base_s: float = Field(default=_POLICY.backoff_base_s, gt=0, allow_inf_nan=False)
    backoff_factor: float = Field(default=_POLICY.backoff_factor, ge=1, allow_inf_nan=False)
    backoff_cap_s: float = Field(default=_POLICY.backoff_cap_s, gt=0, allow_inf_nan=False)
    reset_after_s: float = Field(default=_POLICY.reset_after_s, gt=0, allow_inf_nan=False)
    crash_loop_limit: int = Field(default=_POLICY.crash_loop_limit, ge=1)
    crash_loop_window_s: float = Field(
        default=_POLICY.crash_loop_window_s, gt=0, allow_inf_nan=False
    )
    # After HyOS's Hytale login ran out (nobody approved the code), start again for a
    # fresh code this much later (or at once with `hyos-supervisor restart server`).
    auth_retry_s: float = Field(default=_POLICY.auth_retry_s, ge=0, allow_inf_nan=False)
    # Restart the manager once the server is healthy again after a server restart.
    restart_manager_with_server: bool = True

    @field_validator("backoff_cap_s")
    @classmethod
    def _cap_not_below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("backoff_base_s")
        if base is not None and value < base:
            raise ValueError(f"must be at least backoff_base_s ({base:g})")
        return value

    def policy(self) -> RestartPolicy:
        """The pure restart policy these settings describe."""
        return RestartPolicy(
            backoff_base_s=self.backoff_base_s,
            backoff_factor=self.backoff_factor,
            backoff_cap_s=self.backoff_cap_s,
            reset_after_s=self.reset_after_s,
            crash_loop_limit=self.crash_loop_limit,
            crash_loop_window_s=self.crash_loop_window_s,
            auth_retry_s=self.auth_retry_s,
        )


# A Kubernetes resource quantity such as 10Gi or 512Mi (the API's own grammar, simplified).
_QUANTITY = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
# RFC 1123 label: what a namespace name must be.
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")


def validate_namespace(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes namespace name; use at most 63 lowercase "
            "letters, digits and '-', starting and ending with a letter or digit"
        )
    return value


class KubernetesSettings(BaseModel):
    """Only for `render kubernetes`: what Kubernetes needs that Docker does not."""

    model_config = ConfigDict(extra="forbid")

    # Default: the stack's name made a valid namespace name.
    namespace: str | None = None
    # The server's /data (world, config, auth cache) and the manager's own /data.
    storage_size: str = "10Gi"
    manager_storage_size: str = "1Gi"
    storage_class: str | None = None
    # ReadWriteOncePod: never two server pods on one world, even on one node.
    access_mode: Literal["ReadWriteOncePod", "ReadWriteOnce"] = "ReadWriteOncePod"
    # sizeLimit of each emptyDir that stands in for a tmpfs path (/tmp, HOME, caches).
    scratch_size: str = "1Gi"
    game_service_type: Literal["NodePort", "LoadBalancer"] = "NodePort"
    game_node_port: int | None = Field(default=None, ge=30000, le=32767)
    # The Pod Security Standards version the namespace labels pin.
    pod_security_version: str = "latest"
    # The images' own ENTRYPOINT + CMD (HyOS's published images): Kubernetes cannot inspect
    # an image, and the launcher shim must run before them.
    server_command: list[str] = Field(
        default_factory=lambda: ["/sbin/tini", "--", "/bin/bash", "/opt/scripts/entrypoint.sh"]
    )
    manager_command: list[str] = Field(default_factory=lambda: ["node", "server.js"])

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else validate_namespace(value)

    @field_validator("storage_size", "manager_storage_size", "scratch_size")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not _QUANTITY.match(value) or not float(re.sub(r"[A-Za-z]+$", "", value)):
            raise ValueError(f"{value!r} is not a Kubernetes quantity; use e.g. 10Gi or 512Mi")
        return value

    @field_validator("storage_class")
    @classmethod
    def _storage_class(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", value):
            raise ValueError(f"{value!r} is not a StorageClass name")
        return value

    @field_validator("pod_security_version")
    @classmethod
    def _pss_version(cls, value: str) -> str:
        if not re.fullmatch(r"latest|v1\.[0-9]{1,2}", value):
            raise ValueError(f"{value!r} is not a Pod Security version; use latest or e.g. v1.29")
        return value

    @field_validator("server_command", "manager_command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        if not value or not value[0]:
            raise ValueError("the image's command must not be empty")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HYOS_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    stack: str = "hyos"
    docker_host: str = Field(
        default_factory=lambda: os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_SOCKET
    )
    # A named volume (default `<stack>-data`) or an absolute host path.
    data: str | None = None
    server: ServerSettings = Field(default_factory=ServerSettings)
    manager: ManagerSettings = Field(default_factory=ManagerSettings)
    restart: RestartSettings = Field(default_factory=RestartSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    # Player-aware disruption (issue 24): supervisor/drainsettings.py.
    drain: DrainSettings = Field(default_factory=DrainSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    # Backups (issue 25): supervisor/backupsettings.py.
    backup: BackupSettings = Field(default_factory=BackupSettings)
    # Notifications (issue 27): supervisor/notifysettings.py.
    notify: NotifySettings = Field(default_factory=NotifySettings)
    # `/metrics` (issue 27): supervisor/metricssettings.py.
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    # Crash reports and bounded game logs (issue 27): supervisor/crashlogsettings.py.
    crashes: CrashSettings = Field(default_factory=CrashSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    # Updates as transactions (issue 26): supervisor/updatesettings.py.
    update: UpdateSettings = Field(default_factory=UpdateSettings)
    helper_image: str = DEFAULT_HELPER_IMAGE
    prepare: bool = True
    pull: Literal["missing", "always", "never"] = "missing"
    # Log driver caps (CIS 5.x: bounded logs keep a chatty server from filling the disk).
    log_max_size: str = "10m"
    log_max_file: int = Field(default=3, ge=1, le=100)
    state_dir: Path | None = None
    # The manager reaches Docker through the supervisor's filtered socket in this host dir.
    guard: bool = True
    guard_dir: Path = Path("/run/hyos-supervisor")
    # The manager holds a handful of connections; more is a flood (answered 503).
    guard_max_connections: int = Field(default=64, ge=4, le=4096)
    reconcile_interval_s: float = Field(default=60.0, gt=0)
    stop_on_exit: bool = True
    docker_retries: int = Field(default=5, ge=1, le=100)
    # Secrets (supervisor.secretspec): a value, or a file holding it (`*_file`). The first
    # three are generated when unset; the rest exist only when an operator supplies them.
    api_client_id: SecretStr | None = None
    api_client_secret: SecretStr | None = None
    session_secret: SecretStr | None = None
    hytale_session_token: SecretStr | None = None
    hytale_identity_token: SecretStr | None = None
    server_password: SecretStr | None = None
    api_client_id_file: SecretFileSetting = None
    api_client_secret_file: SecretFileSetting = None
    session_secret_file: SecretFileSetting = None
    hytale_session_token_file: SecretFileSetting = None
    hytale_identity_token_file: SecretFileSetting = None
    server_password_file: SecretFileSetting = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then environment, then the TOML file (the
        # `toml_file` of the class load_settings makes for one file; none by default).
        return (init_settings, _EnvSource(settings_cls), TomlConfigSettingsSource(settings_cls))

    @field_validator("stack")
    @classmethod
    def _stack(cls, value: str) -> str:
        if not _STACK_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid Docker name; use letters, digits, '_', '.' or '-'"
            )
        return value

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None:
            # The control socket (supervisor.control.SOCKET_NAME) lives here.
            _fits_a_socket(value / f"{info.data.get('stack', '')}.control.sock", "control")
        return value

    @field_validator("guard_dir")
    @classmethod
    def _guard_dir(cls, value: Path, info: ValidationInfo) -> Path:
        # The guard's socket (supervisor.stack.GUARD_SOCKET_NAME) lives in <dir>/<stack>/.
        _fits_a_socket(value / str(info.data.get("stack", "")) / "docker.sock", "guard's")
        return value

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str) -> str:
        if not re.match(r"^(unix|tcp|npipe|ssh)://", value):
            raise ValueError(f"{value!r} is not a Docker host; use unix:///path or tcp://host:port")
        return value

    @field_validator("data")
    @classmethod
    def _data(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("/"):
            if hostpaths.is_sensitive(value):
                raise ValueError(f"{value!r} is a sensitive host path; use a dedicated directory")
            return hostpaths.normalize(value)
        if not _STACK_NAME.match(value):
            raise ValueError(f"{value!r} is neither an absolute path nor a valid volume name")
        return value

    @field_validator("helper_image")
    @classmethod
    def _helper_image(cls, value: str) -> str:
        return validate_image(value)

    @field_validator("log_max_size")
    @classmethod
    def _log_size(cls, value: str) -> str:
        if not re.fullmatch(r"\d+[kmg]", value):
            raise ValueError(f"{value!r} is not a log size; use e.g. 10m")
        return value

    @field_validator(*(f"{spec.name}_file" for spec in SECRETS))
    @classmethod
    def _secret_file_strength(cls, file: SecretFile | None, info: ValidationInfo) -> Any:
        # Checked per field so the problem names the field (and its env variable).
        if file is not None:
            _check_secret(str(info.field_name).removesuffix("_file"), file.value.get_secret_value())
        return file

    @field_validator(*(spec.name for spec in SECRETS))
    @classmethod
    def _secret_strength(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            _check_secret(str(info.field_name), value.get_secret_value())
        return value

    @property
    def data_source(self) -> str:
        return self.data or f"{self.stack}-data"

    @property
    def data_is_bind(self) -> bool:
        return self.data_source.startswith("/")

    @property
    def network_name(self) -> str:
        return f"{self.stack}-net"

    def container_name(self, role: str) -> str:
        return f"{self.stack}-{role}"

    @property
    def system_volume(self) -> str:
        """Holds what only the supervisor writes (the machine-id); workloads never mount it."""
        return f"{self.stack}-system"

    @property
    def stack_guard_dir(self) -> Path:
        return self.guard_dir / self.stack

    def secret(self, name: str) -> SecretStr | None:
        """An operator-supplied secret: its file (`<name>_file`) wins over the value."""
        file: SecretFile | None = getattr(self, f"{name}_file")
        if file is not None:
            return file.value
        value: SecretStr | None = getattr(self, name)
        return value

    def supplied_secrets(self) -> dict[str, str]:
        """Operator-supplied secret values by name (never logged)."""
        found = {}
        for spec in SECRETS:
            value = self.secret(spec.name)
            if value is not None:
                found[spec.name] = value.get_secret_value().strip()
        return found

    def services(self) -> dict[str, ServiceSettings]:
        """Each service's section (its field is named after its role), in start order."""
        return {role.value: getattr(self, role.value) for role in SERVICES}

    def stop_timeout(self, role: str) -> int:
        """The grace period (s) between SIGTERM and SIGKILL for `role`'s containers, read
        here and nowhere else: the create request's StopTimeout, every stop the supervisor
        sends, the least the guard lets the dashboard ask for, Kubernetes'
        terminationGracePeriodSeconds. A container of no configured service (a prepare
        step's) gets a service's default."""
        service = self.services().get(role)
        return service.stop_timeout if service is not None else DEFAULT_STOP_TIMEOUT_S

    def warnings(self) -> list[str]:
        found = []
        for role, service in self.services().items():
            warning = image_warning(service.image)
            if warning:
                found.append(f"{role}.image: {warning}")
            dangerous = capabilities.root_equivalent(set(service.cap_add))
            if dangerous:
                found.append(
                    f"{role}.allow_dangerous_capabilities: cap_add grants {', '.join(dangerous)}, "
                    "which amounts to root; `audit` fails until it is removed"
                )
        return found

    def masked(self) -> dict[str, Any]:
        """The effective settings as JSON-able data, secrets masked."""
        data: dict[str, Any] = self.model_dump(mode="json")
        for spec in SECRETS:
            if self.secret(spec.name) is not None:
                data[spec.name] = "**********"
        data["backup"] = self.backup.masked()
        data["notify"] = self.notify.masked()
        return data


class _EnvSource(EnvSettingsSource):
    """`HYOS_*` variables, with lists and tables in the forms people type (not only JSON)."""

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return decode_env_value(field.annotation if field is not None else None, value)


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc if not str(part).startswith("function-")]
    return ".".join(parts) if parts else "settings"


def _env_name(field: str) -> str:
    head = field.split(".")[:2]
    return "HYOS_" + "__".join(part.upper() for part in head)


# What a list, table or object setting looks like, by the error pydantic reports.
_EXPECTED_FORM = {
    "list_type": 'a comma-separated list such as a,b or JSON such as ["a","b"]',
    "dict_type": "KEY=VALUE pairs such as TZ=Europe/Berlin,JAVA_XMX=4G or a JSON object",
    "model_type": "a JSON object, or one variable per key",
    "model_attributes_type": "a JSON object, or one variable per key",
}
# Examples for the list and table settings people set most.
_EXAMPLES = {
    "ports": "5520:5520/udp,30381:30381",
    "cap_add": "NET_BIND_SERVICE",
    "tmpfs": "/home/hytale,/var/cache/app",
    "env": "TZ=Europe/Berlin,JAVA_XMX=4G",
    "healthcheck": '{"interval": 5, "retries": 3}',
}


def _problem(error: Mapping[str, Any]) -> str:
    """One line, whatever the value held: line breaks in it are shown escaped."""
    return _describe(error).replace("\r", "\\r").replace("\n", "\\n")


def _describe(error: Mapping[str, Any]) -> str:
    field = _field_name(tuple(error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"{field}: unknown setting; remove it or check its spelling"
    env = _env_name(field)
    form = _EXPECTED_FORM.get(str(error["type"]))
    if form is not None:
        example = _EXAMPLES.get(field.rsplit(".", 1)[-1])
        hint = f"e.g. {env}={example}" if example else f"env {env}"
        return f"{field}: expected {form}, got {error.get('input')!r} ({hint})"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{field}: {message} (env {env})"


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build settings from `overrides`, the environment and the TOML file.

    Raises ConfigError listing one line per problem.
    """
    path_text = config if config is not None else os.environ.get("HYOS_CONFIG")
    path = Path(path_text) if path_text else None
    model: type[Settings] = Settings
    if path is not None:
        if not path.is_file():
            raise ConfigError([f"config: file {str(path)!r} not found; pass an existing TOML file"])
        # A subclass that names this one file: no class-level state to set and reset.
        model = type(
            "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}}
        )
    try:
        return model(**overrides)
    except ValidationError as err:
        raise ConfigError([_problem(e) for e in err.errors()]) from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError([f"config: {path} is not valid TOML: {err}"]) from None
    except SettingsError as err:
        # A value no source could read at all: still one line, never a traceback.
        line = str(err).replace("\n", " ")
        raise ConfigError([f"settings: {line}; check the HYOS_* variables"]) from None
