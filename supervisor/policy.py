"""Pure: the hardening rules, stated once.

`hardening` states what a workload gets in runtime-neutral terms (uid/gid, capabilities,
no-new-privileges, read-only root, seccomp, scratch paths, limits). `build_create_body`
turns it into an Engine API create body and `supervisor.kubernetes` into a
securityContext, so a rule changed here changes both; `audit` checks a live container's
hardening (as the engine parsed it from its inspect result) against the same rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from entrypoint.contract import (
    LABEL_ROLE,
    LABEL_SPEC_HASH,
    PREPARE_ENTRYPOINT,
    PrepareRequest,
    prepare_argv,
)
from supervisor import capabilities, hostpaths
from supervisor.dockertypes import ContainerHardening, owned_by, ownership_labels
from supervisor.roles import Role
from supervisor.stack import FILE_ENV_SHIM_NAME, SECRETS_DIR, Mount, ServiceSpec

if TYPE_CHECKING:
    from supervisor.settings import HealthcheckOverride

NO_NEW_PRIVILEGES = "no-new-privileges:true"
LOG_DRIVERS = ("json-file", "local")
PSS_ALLOWED_CAPS = capabilities.PSS_ALLOWED


# The runtime's default seccomp profile (Docker's default, Kubernetes' RuntimeDefault).
SECCOMP_RUNTIME_DEFAULT = "runtime-default"


@dataclass(frozen=True)
class Hardening:
    """What one workload is allowed, in terms neither Docker's nor Kubernetes' own."""

    uid: int
    gid: int
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    privileged: bool
    no_new_privileges: bool
    read_only_root: bool
    seccomp: str  # SECCOMP_RUNTIME_DEFAULT, or "unconfined" (never by default)
    # Writable scratch paths under a read-only root, private to the workload's uid.
    scratch: tuple[str, ...]
    scratch_exec: bool
    memory_bytes: int
    nano_cpus: int
    pids_limit: int

    @property
    def run_as_non_root(self) -> bool:
        return self.uid != 0


def hardening(spec: ServiceSpec) -> Hardening:
    """The rules every workload container follows, from its spec (the one source)."""
    return Hardening(
        uid=spec.uid,
        gid=spec.gid,
        cap_drop=("ALL",),
        cap_add=tuple(spec.cap_add),
        privileged=False,
        no_new_privileges=True,
        read_only_root=spec.read_only,
        seccomp=SECCOMP_RUNTIME_DEFAULT,
        scratch=spec.tmpfs,
        scratch_exec=spec.tmpfs_exec,
        memory_bytes=spec.memory_bytes,
        nano_cpus=spec.nano_cpus,
        pids_limit=spec.pids_limit,
    )


def _seconds_to_ns(seconds: float) -> int:
    return round(seconds * 1e9)


def _tmpfs_options(rules: Hardening) -> str:
    # Owned by the workload's uid so a read-only root still leaves it a private scratch dir.
    # Docker mounts a tmpfs noexec unless told otherwise; the JVM must map libraries there.
    exec_flag = "exec" if rules.scratch_exec else "noexec"
    return f"rw,{exec_flag},nosuid,nodev,uid={rules.uid},gid={rules.gid},mode=0700"


def _security_opt(rules: Hardening) -> list[str]:
    # Docker applies its default seccomp profile unless told otherwise: nothing to add.
    options = [NO_NEW_PRIVILEGES] if rules.no_new_privileges else []
    if rules.seccomp != SECCOMP_RUNTIME_DEFAULT:
        options.append(f"seccomp={rules.seccomp}")
    return options


def spec_hash(body: Mapping[str, Any]) -> str:
    """sha256 of the canonical create body, excluding the hash label itself."""
    unhashed = {key: _without_hash(key, value) for key, value in body.items()}
    canonical = json.dumps(unhashed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _without_hash(key: str, value: Any) -> Any:
    if key != "Labels":
        return value
    return {label: v for label, v in value.items() if label != LABEL_SPEC_HASH}


@dataclass(frozen=True)
class CreateRequest:
    """One service's create body, with the image and the spec hash it carries."""

    image: str
    spec_hash: str
    body: dict[str, Any]


def create_request(spec: ServiceSpec) -> CreateRequest:
    """The Engine API `POST /containers/create` body for one service, hardened; its
    labels carry the hash of everything else, so a changed spec is seen as changed."""
    rules = hardening(spec)
    labels = {**spec.base_labels, **dict(spec.labels)}
    body: dict[str, Any] = {
        "Image": spec.image,
        "User": f"{rules.uid}:{rules.gid}",
        "Env": [f"{key}={value}" for key, value in spec.env],
        "Labels": labels,
        "ExposedPorts": {f"{p.container_port}/{p.protocol}": {} for p in spec.ports},
        "StopSignal": "SIGTERM",
        "StopTimeout": spec.stop_timeout,
        "HostConfig": _host_config(spec, rules),
        "NetworkingConfig": {"EndpointsConfig": {spec.network: {"Aliases": [spec.role]}}},
    }
    if spec.entrypoint is not None:
        body["Entrypoint"] = list(spec.entrypoint)
        body["Cmd"] = list(spec.cmd or ())
    if spec.healthcheck is not None:
        body["Healthcheck"] = _healthcheck(spec.healthcheck)
    digest = spec_hash(body)
    labels[LABEL_SPEC_HASH] = digest
    return CreateRequest(spec.image, digest, body)


def build_create_body(spec: ServiceSpec) -> dict[str, Any]:
    """The create body alone (see create_request)."""
    return create_request(spec).body


def _host_config(spec: ServiceSpec, rules: Hardening) -> dict[str, Any]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in spec.ports:
        bindings.setdefault(f"{port.container_port}/{port.protocol}", []).append(
            {"HostIp": port.host_ip, "HostPort": str(port.host_port) if port.host_port else ""}
        )
    return {
        "Privileged": rules.privileged,
        "ReadonlyRootfs": rules.read_only_root,
        "SecurityOpt": _security_opt(rules),
        "CapDrop": list(rules.cap_drop),
        "CapAdd": list(rules.cap_add),
        "Tmpfs": {path: _tmpfs_options(rules) for path in rules.scratch},
        "Memory": rules.memory_bytes,
        # Equal to Memory: no swap, so the limit is the limit.
        "MemorySwap": rules.memory_bytes,
        "NanoCpus": rules.nano_cpus,
        "PidsLimit": rules.pids_limit,
        # The supervisor restarts, with backoff and crash-loop detection.
        "RestartPolicy": {"Name": "no"},
        "LogConfig": {
            "Type": "json-file",
            "Config": {"max-size": spec.log_max_size, "max-file": str(spec.log_max_file)},
        },
        "Init": True,
        "NetworkMode": spec.network,
        "PortBindings": bindings,
        "Mounts": [
            {"Type": m.type, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
            for m in spec.mounts
        ],
        "IpcMode": "private",
        "Devices": [],
    }


def _healthcheck(check: HealthcheckOverride) -> dict[str, Any]:
    health: dict[str, Any] = {
        "Interval": _seconds_to_ns(check.interval),
        "Timeout": _seconds_to_ns(check.timeout),
        "Retries": check.retries,
        "StartPeriod": _seconds_to_ns(check.start_period),
    }
    if check.test:
        health["Test"] = ["CMD", *check.test]
    return health


# --- audit -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What the settings allow beyond the baseline; the audit fails anything else."""

    stack: str
    network: str
    cap_add: frozenset[str] = PSS_ALLOWED_CAPS
    host_ips: frozenset[str] = field(default_factory=frozenset)
    # Read-only binds the supervisor itself makes (machine-id file, the guard's socket).
    allowed_binds: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    cis: str  # CIS Docker Benchmark 1.6 id, "" where none exists
    pss: str  # the Kubernetes Pod Security "restricted" equivalent, "" where none exists
    fix: str
    check: Callable[[ContainerHardening, Expectation], str | None]  # None = pass, else why not


@dataclass(frozen=True)
class Finding:
    rule: Rule
    container: str
    passed: bool
    detail: str


def _check_user(container: ContainerHardening, _: Expectation) -> str | None:
    user = container.user
    uid = user.split(":")[0]
    if not uid.isdigit():
        return f"User {user!r} is not a numeric uid"
    return "runs as uid 0" if int(uid) == 0 else None


def _check_no_new_privileges(container: ContainerHardening, _: Expectation) -> str | None:
    ok = any(
        key == "no-new-privileges" and value in ("", "true")
        for key, value in container.security_options
    )
    return None if ok else "no-new-privileges is not set"


def _check_caps(container: ContainerHardening, expect: Expectation) -> str | None:
    drop = {c.upper().removeprefix("CAP_") for c in container.cap_drop}
    add = {c.upper().removeprefix("CAP_") for c in container.cap_add}
    if container.privileged:
        return "privileged: every capability, whatever CapDrop says"
    if "ALL" not in drop:
        return "CapDrop does not contain ALL"
    dangerous = capabilities.root_equivalent(add)
    if dangerous:
        # Even when settings allow it (allow_dangerous_capabilities): the audit says so.
        return f"CapAdd has {', '.join(dangerous)}, which amounts to root"
    extra = sorted(add - expect.cap_add)
    return f"CapAdd has {extra} beyond the configured cap_add" if extra else None


def _check_privileged(container: ContainerHardening, _: Expectation) -> str | None:
    return "container is privileged" if container.privileged else None


def _check_sensitive_mounts(container: ContainerHardening, expect: Expectation) -> str | None:
    bad = sorted(
        m.source
        for m in container.mounts
        if m.kind == "bind"
        and not (m.read_only and m.source in expect.allowed_binds)
        and hostpaths.is_sensitive(m.source)
    )
    return f"binds sensitive host paths {bad}" if bad else None


def _check_docker_socket(container: ContainerHardening, expect: Expectation) -> str | None:
    # The guard's filtered socket, mounted read-only by the supervisor, is not Docker's.
    bad = sorted(
        m.source
        for m in container.mounts
        if m.source.endswith("docker.sock")
        and not (m.read_only and m.source in expect.allowed_binds)
    )
    return f"mounts the Docker socket {bad}" if bad else None


def _namespace_check(what: str) -> Callable[[ContainerHardening, Expectation], str | None]:
    def check(container: ContainerHardening, _: Expectation) -> str | None:
        shared = container.namespaces.get(what) == "host"
        return f"shares the host's {what} namespace" if shared else None

    return check


def _check_memory(container: ContainerHardening, _: Expectation) -> str | None:
    return None if container.memory > 0 else "no memory limit"


def _check_cpu(container: ContainerHardening, _: Expectation) -> str | None:
    limited = container.nano_cpus > 0 or container.cpu_quota > 0
    return None if limited else "no CPU limit"


def _check_read_only(container: ContainerHardening, _: Expectation) -> str | None:
    return None if container.read_only_root else "root filesystem is writable"


def _check_bound_interface(container: ContainerHardening, expect: Expectation) -> str | None:
    for port, ip in ((b.port, b.host_ip) for b in container.port_bindings):
        if not ip:
            return f"{port} is published on every interface without an explicit HostIp"
        if expect.host_ips and ip not in expect.host_ips:
            return f"{port} is published on {ip}, not a configured host_ip"
    return None


def _check_seccomp(container: ContainerHardening, _: Expectation) -> str | None:
    if container.privileged:
        return "privileged containers run without a seccomp filter"
    unconfined = ("seccomp", "unconfined") in container.security_options
    return "seccomp is unconfined" if unconfined else None


def _check_cgroup_parent(container: ContainerHardening, _: Expectation) -> str | None:
    parent = container.cgroup_parent
    return f"custom cgroup parent {parent!r}" if parent else None


def _check_health(container: ContainerHardening, _: Expectation) -> str | None:
    test = container.health_test
    return None if test and test != ("NONE",) else "no health check"


def _check_pids(container: ContainerHardening, _: Expectation) -> str | None:
    return None if container.pids_limit > 0 else "no pids limit"


def _check_network(container: ContainerHardening, expect: Expectation) -> str | None:
    mode = container.network_mode
    if mode in ("default", "bridge"):
        return "attached to the default bridge"
    return None if mode == expect.network else f"network is {mode!r}, not {expect.network!r}"


def _check_devices(container: ContainerHardening, _: Expectation) -> str | None:
    if container.privileged:
        return "privileged: every host device is exposed"
    return "host devices are mapped" if container.devices else None


def _check_restart_policy(container: ContainerHardening, _: Expectation) -> str | None:
    name = container.restart_policy
    return None if name == "no" else f"engine restart policy {name!r} competes with the supervisor"


def _check_logs(container: ContainerHardening, _: Expectation) -> str | None:
    if container.log_driver not in LOG_DRIVERS:
        return f"log driver {container.log_driver!r} is not json-file or local"
    return None if container.log_max_size else "logs have no size cap"


def _check_init(container: ContainerHardening, _: Expectation) -> str | None:
    return None if container.init else "no init process reaps zombies"


def _check_labels(container: ContainerHardening, expect: Expectation) -> str | None:
    labels = container.labels
    if not owned_by(labels, expect.stack):
        return "missing the stack's io.hyos labels"
    return None if labels.get(LABEL_ROLE) and labels.get(LABEL_SPEC_HASH) else "no role or hash"


RULES: tuple[Rule, ...] = (
    Rule("non-root-user", "numeric non-root User", "4.1", "runAsNonRoot: true",
         "set user to a non-root uid:gid such as 568:568", _check_user),
    Rule("capabilities", "CapDrop ALL, CapAdd only what settings name", "5.4",
         "capabilities.drop: [ALL]", "drop ALL and add back only named capabilities",
         _check_caps),
    Rule("not-privileged", "not privileged", "5.5", "privileged: false",
         "remove --privileged", _check_privileged),
    Rule("no-sensitive-mounts", "no bind of sensitive host directories", "5.6",
         "no hostPath volumes", "mount a named volume or a dedicated directory",
         _check_sensitive_mounts),
    Rule("no-host-network", "own network namespace", "5.10", "hostNetwork: false",
         "do not use --network host", _namespace_check("network")),
    Rule("memory-limit", "memory limit set", "5.11", "resources.limits.memory",
         "set memory", _check_memory),
    Rule("cpu-limit", "CPU limit set", "5.12", "resources.limits.cpu", "set cpus", _check_cpu),
    Rule("read-only-root", "read-only root filesystem", "5.13",
         "readOnlyRootFilesystem: true", "set read_only = true and add tmpfs paths",
         _check_read_only),
    Rule("bound-interface", "ports bound to a configured host IP", "5.14",
         "no hostPort", "set host_ip for the service", _check_bound_interface),
    Rule("no-host-pid", "own PID namespace", "5.16", "hostPID: false",
         "do not use --pid host", _namespace_check("PID")),
    Rule("no-host-ipc", "own IPC namespace", "5.17", "hostIPC: false",
         "do not use --ipc host", _namespace_check("IPC")),
    Rule("no-devices", "no host devices", "5.18", "no hostPath devices",
         "remove --device", _check_devices),
    Rule("no-host-uts", "own UTS namespace", "5.21", "", "do not use --uts host",
         _namespace_check("UTS")),
    Rule("seccomp", "default seccomp profile, never unconfined", "5.22",
         "seccompProfile: RuntimeDefault", "remove seccomp=unconfined", _check_seccomp),
    Rule("cgroup-parent", "default cgroup parent", "5.25", "", "remove --cgroup-parent",
         _check_cgroup_parent),
    Rule("no-new-privileges", "no-new-privileges", "5.26",
         "allowPrivilegeEscalation: false", "add no-new-privileges:true",
         _check_no_new_privileges),
    Rule("health-check", "health check defined", "5.27", "livenessProbe",
         "use an image with HEALTHCHECK or set healthcheck", _check_health),
    Rule("pids-limit", "pids limit set", "5.29", "", "set pids_limit", _check_pids),
    Rule("dedicated-network", "dedicated bridge network, not the default", "5.30", "",
         "recreate with `hyos-supervisor up`", _check_network),
    Rule("no-host-userns", "own user namespace mode", "5.31", "", "do not use --userns host",
         _namespace_check("user")),
    Rule("no-docker-socket", "no Docker socket mounted", "5.32", "no hostPath volumes",
         "give the manager the guard socket instead", _check_docker_socket),
    Rule("restart-policy", "engine restart policy no (the supervisor restarts)", "", "",
         "recreate with `hyos-supervisor up`", _check_restart_policy),
    Rule("log-caps", "json-file or local logs with a size cap", "", "",
         "set log_max_size", _check_logs),
    Rule("init", "an init reaps zombies", "", "", "recreate with `hyos-supervisor up`",
         _check_init),
    Rule("labels", "carries the stack's labels", "", "", "recreate with `hyos-supervisor up`",
         _check_labels),
)  # fmt: skip


def _writable_paths_note(container: ContainerHardening) -> str:
    """What a passing read-only root still lets the workload write (and map executable)."""
    parts = []
    for path, options in sorted(container.tmpfs.items()):
        flags = options.split(",")
        parts.append(f"{path} ({'exec' if 'exec' in flags else 'noexec'})")
    return f"ok; writable tmpfs: {', '.join(parts)}" if parts else "ok"


_PASS_NOTES: dict[str, Callable[[ContainerHardening], str]] = {
    "read-only-root": _writable_paths_note
}


def audit(container: ContainerHardening, expect: Expectation) -> list[Finding]:
    """One finding per rule for one live container."""
    name = container.name or container.id[:12]
    findings = []
    for rule in RULES:
        problem = rule.check(container, expect)
        note = _PASS_NOTES[rule.id](container) if rule.id in _PASS_NOTES else "ok"
        findings.append(Finding(rule, name, problem is None, problem or note))
    return findings


# --- the one-shot prepare container ---------------------------------------------------

# Enough to chown and chmod what the workload does not own; nothing else.
PREPARE_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER")
PREPARE_SYSTEM_MOUNT = "/hyos-system"
MACHINE_ID_NAME = "machine-id"


@dataclass(frozen=True)
class PrepareSpec:
    stack: str
    image: str
    uid: int
    gid: int
    data: Mount
    system_volume: str
    secret_names: tuple[str, ...] = ()
    forget: tuple[str, ...] = ()
    rotate: tuple[str, ...] = ()
    secrets_on_stdin: bool = False
    log_max_size: str = "10m"


def build_prepare_body(spec: PrepareSpec) -> dict[str, Any]:
    """Root, but no network, no new privileges, read-only root and three capabilities."""
    uses_secrets = bool(spec.secret_names or spec.rotate or spec.secrets_on_stdin or spec.forget)
    args = prepare_argv(
        PrepareRequest(
            uid=spec.uid,
            gid=spec.gid,
            paths=(spec.data.target,),
            machine_id=f"{PREPARE_SYSTEM_MOUNT}/{MACHINE_ID_NAME}",
            file_env_shim=f"{PREPARE_SYSTEM_MOUNT}/{FILE_ENV_SHIM_NAME}",
            secrets_dir=SECRETS_DIR if uses_secrets else None,
            secrets=spec.secret_names,
            forget=spec.forget,
            rotate=spec.rotate,
            secrets_on_stdin=spec.secrets_on_stdin,
            # HyOS's manager saves the supervisor's wiring into its settings file, which
            # then outranks the environment (entrypoint.managerconfig): dropped each time.
            manager_config=f"{spec.data.target}/.state/manager-config.json",
        )
    )
    body: dict[str, Any] = {
        "Image": spec.image,
        "Entrypoint": list(PREPARE_ENTRYPOINT),
        "Cmd": args,
        # The one container that must be root: it fixes ownership, then exits.
        "User": "0:0",
        "Labels": {**ownership_labels(spec.stack), LABEL_ROLE: Role.PREPARE.value},
        "HostConfig": {
            "NetworkMode": "none",
            "ReadonlyRootfs": True,
            "SecurityOpt": [NO_NEW_PRIVILEGES],
            "CapDrop": ["ALL"],
            "CapAdd": list(PREPARE_CAPS),
            "Privileged": False,
            "Memory": 256 * 1024**2,
            "MemorySwap": 256 * 1024**2,
            "NanoCpus": 1_000_000_000,
            "PidsLimit": 64,
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": spec.log_max_size}},
            "Mounts": [
                {"Type": spec.data.type, "Source": spec.data.source, "Target": spec.data.target},
                {"Type": "volume", "Source": spec.system_volume, "Target": PREPARE_SYSTEM_MOUNT},
            ],
        },
    }
    if spec.secrets_on_stdin:
        # Supplied values travel over the attach stream: never in Env, Cmd or inspect.
        body.update(AttachStdin=True, OpenStdin=True, StdinOnce=True)
    return body


# --- the one-shot backup helper (restic) -----------------------------------------------

BACKUP_ENTRYPOINT = ("/opt/venv/bin/python", "-m", "entrypoint.resticjob")
BACKUP_REPO_MOUNT = "/repo"
BACKUP_MEMORY = 1024**3
BACKUP_PIDS = 128


@dataclass(frozen=True)
class BackupJobSpec:
    """One run of the restic helper. `data_writable` only for a restore; `repository`
    is mounted at /repo (None: a remote repository, reached over `network`)."""

    stack: str
    image: str
    uid: int
    gid: int
    data: Mount
    repository: Mount | None
    network: bool = False
    data_writable: bool = False
    log_max_size: str = "10m"


def build_backup_body(spec: BackupJobSpec) -> dict[str, Any]:
    """Non-root (the workload's uid, which owns the world), no capabilities, no new
    privileges, a read-only root with a private tmpfs, the world read-only unless this is
    a restore, memory and pids limits, no network unless the repository is remote. The
    request (and the password in it) arrives on stdin, never in Cmd or Env."""
    mounts = [_data_mount(spec.data, spec.data_writable)]
    if spec.repository is not None:
        mounts.append(
            {
                "Type": spec.repository.type,
                "Source": spec.repository.source,
                "Target": spec.repository.target,
            }
        )
    return {
        "Image": spec.image,
        # One host name for all of a stack's helpers, the stack's (as `--host` on its
        # snapshots): restic's locks carry it, so the next helper knows a dead one's lock
        # for its own (entrypoint/resticjob.py). Stack names fit a host name (63 chars).
        "Hostname": spec.stack,
        "Entrypoint": list(BACKUP_ENTRYPOINT),
        "Cmd": [],
        "User": f"{spec.uid}:{spec.gid}",
        "Env": ["HOME=/tmp", "TMPDIR=/tmp"],
        "Labels": {**ownership_labels(spec.stack), LABEL_ROLE: Role.BACKUP.value},
        "AttachStdin": True,
        "OpenStdin": True,
        "StdinOnce": True,
        "HostConfig": _job_host_config(
            uid=spec.uid,
            gid=spec.gid,
            network=spec.network,
            memory=BACKUP_MEMORY,
            nano_cpus=2_000_000_000,
            pids=BACKUP_PIDS,
            tmp_size="64m",
            log_max_size=spec.log_max_size,
            mounts=mounts,
        ),
    }


def _data_mount(data: Mount, writable: bool) -> dict[str, Any]:
    return {
        "Type": data.type,
        "Source": data.source,
        "Target": data.target,
        "ReadOnly": not writable,
    }


def _job_host_config(
    *,
    uid: int,
    gid: int,
    network: bool,
    memory: int,
    nano_cpus: int,
    pids: int,
    tmp_size: str,
    log_max_size: str,
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    """A non-root one-shot helper's: no capabilities, no new privileges, a read-only root
    with a private tmpfs of its uid, memory (no swap), CPU and pids limits, no network
    unless asked, never restarted."""
    return {
        "NetworkMode": "bridge" if network else "none",
        "ReadonlyRootfs": True,
        "SecurityOpt": [NO_NEW_PRIVILEGES],
        "CapDrop": ["ALL"],
        "Privileged": False,
        "Memory": memory,
        "MemorySwap": memory,
        "NanoCpus": nano_cpus,
        "PidsLimit": pids,
        "Tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={tmp_size},mode=0700,uid={uid},gid={gid}"},
        "RestartPolicy": {"Name": "no"},
        "LogConfig": {"Type": "json-file", "Config": {"max-size": log_max_size}},
        "Mounts": mounts,
    }


# --- the one-shot game-log helper (issue 27) ---------------------------------------------

LOGS_ENTRYPOINT = ("/opt/venv/bin/python", "-m", "entrypoint.logjob")
LOGS_MEMORY = 256 * 1024**2
LOGS_PIDS = 32


@dataclass(frozen=True)
class LogJobSpec:
    """One run of the game-log helper: lists and tails (the data read-only), or
    compresses and deletes logs (`data_writable`). The request is its one argument:
    paths and globs only, never a secret."""

    stack: str
    image: str
    uid: int
    gid: int
    data: Mount
    request: str
    data_writable: bool = False
    log_max_size: str = "10m"


def build_logs_body(spec: LogJobSpec) -> dict[str, Any]:
    """As the backup helper's: the workload's uid (which owns the logs), no capabilities,
    no new privileges, a read-only root with a private tmpfs, no network, memory and
    pids limits; the data volume writable only when logs are to be changed."""
    return {
        "Image": spec.image,
        "Entrypoint": list(LOGS_ENTRYPOINT),
        "Cmd": [spec.request],
        "User": f"{spec.uid}:{spec.gid}",
        "Env": ["HOME=/tmp", "TMPDIR=/tmp"],
        "Labels": {**ownership_labels(spec.stack), LABEL_ROLE: Role.LOGS.value},
        "HostConfig": _job_host_config(
            uid=spec.uid,
            gid=spec.gid,
            network=False,
            memory=LOGS_MEMORY,
            nano_cpus=1_000_000_000,
            pids=LOGS_PIDS,
            tmp_size="16m",
            log_max_size=spec.log_max_size,
            mounts=[_data_mount(spec.data, spec.data_writable)],
        ),
    }
