"""Pure: a Pod Security Standards checker, "baseline" plus "restricted", written from the
published standard (kubernetes.io/docs/concepts/security/pod-security-standards).

`check` takes any object that carries a pod (Pod, or the pod template of a Deployment,
StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) and returns one Violation per broken
control and place; an empty list means the "restricted" profile admits it. Objects
without a pod return [].

It checks what the standard states, field by field, without the admission controller's
version-specific exemptions (e.g. Windows pods): stricter is the safe side here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

BASELINE = "baseline"
RESTRICTED = "restricted"

# Baseline "Capabilities": what may be added at all.
BASELINE_CAPS = frozenset(
    """AUDIT_WRITE CHOWN DAC_OVERRIDE FOWNER FSETID KILL MKNOD NET_BIND_SERVICE SETFCAP
    SETGID SETPCAP SETUID SYS_CHROOT""".split()
)
# Restricted "Capabilities": drop ALL, add back at most this.
RESTRICTED_CAPS = frozenset({"NET_BIND_SERVICE"})
# Baseline "Sysctls": the safe (namespaced, isolated) set.
SAFE_SYSCTLS = frozenset(
    """kernel.shm_rmid_forced net.ipv4.ip_local_port_range net.ipv4.ip_unprivileged_port_start
    net.ipv4.tcp_syncookies net.ipv4.ping_group_range net.ipv4.ip_local_reserved_ports
    net.ipv4.tcp_keepalive_time net.ipv4.tcp_fin_timeout net.ipv4.tcp_keepalive_intvl
    net.ipv4.tcp_keepalive_probes""".split()
)
# Baseline "SELinux": the types a pod may ask for ("" = unset).
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
# Restricted "Volume Types".
RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
     "projected", "secret"}
)  # fmt: skip
# Every volume source field a Volume may carry (anything else is data, e.g. "name").
_VOLUME_FIELDS = frozenset(
    {"awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi",
     "downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk",
     "gitRepo", "glusterfs", "hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim",
     "photonPersistentDisk", "portworxVolume", "projected", "quobyte", "rbd", "scaleIO",
     "secret", "storageos", "vsphereVolume"}
)  # fmt: skip
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
_APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
_SECCOMP_RESTRICTED = frozenset({"RuntimeDefault", "Localhost"})
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

# The controls this module checks, by id: (profile, title).
CONTROLS: dict[str, tuple[str, str]] = {
    "host-process": (BASELINE, "HostProcess"),
    "host-namespaces": (BASELINE, "Host Namespaces"),
    "privileged": (BASELINE, "Privileged Containers"),
    "capabilities-baseline": (BASELINE, "Capabilities"),
    "host-path": (BASELINE, "HostPath Volumes"),
    "host-ports": (BASELINE, "Host Ports"),
    "apparmor": (BASELINE, "AppArmor"),
    "selinux": (BASELINE, "SELinux"),
    "proc-mount": (BASELINE, "/proc Mount Type"),
    "seccomp-baseline": (BASELINE, "Seccomp"),
    "sysctls": (BASELINE, "Sysctls"),
    "volume-types": (RESTRICTED, "Volume Types"),
    "privilege-escalation": (RESTRICTED, "Privilege Escalation"),
    "run-as-non-root": (RESTRICTED, "Running as Non-root"),
    "run-as-user": (RESTRICTED, "Running as Non-root user"),
    "seccomp-restricted": (RESTRICTED, "Seccomp"),
    "capabilities-restricted": (RESTRICTED, "Capabilities"),
}

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Violation:
    control: str  # a key of CONTROLS
    path: str  # where, as a field path
    detail: str

    def __str__(self) -> str:
        profile, title = CONTROLS[self.control]
        return f"{profile}/{title} ({self.control}) at {self.path}: {self.detail}"


def pod_template(obj: Obj) -> tuple[str, Obj, Obj] | None:
    """(path prefix, pod metadata, pod spec) of what the object runs, or None."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return "", obj.get("metadata") or {}, spec
    if kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return (
            "spec.jobTemplate.spec.template.",
            template.get("metadata") or {},
            (template.get("spec") or {}),
        )
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
                "ReplicationController", "PodTemplate"):  # fmt: skip
        template = (obj.get("template") if kind == "PodTemplate" else spec.get("template")) or {}
        prefix = "template." if kind == "PodTemplate" else "spec.template."
        return prefix, template.get("metadata") or {}, template.get("spec") or {}
    return None


def check(obj: Obj) -> list[Violation]:
    """Every way `obj`'s pod breaks the "restricted" profile (baseline included)."""
    found = pod_template(obj)
    if found is None:
        return []
    prefix, metadata, spec = found
    return list(_check_pod(prefix, metadata, spec))


def _containers(prefix: str, spec: Obj) -> Iterator[tuple[str, Obj]]:
    for field in _CONTAINER_LISTS:
        for index, container in enumerate(spec.get(field) or []):
            yield f"{prefix}spec.{field}[{index}]", container


def _sc(container: Obj) -> Obj:
    return container.get("securityContext") or {}


def _check_pod(prefix: str, metadata: Obj, spec: Obj) -> Iterator[Violation]:
    """Every control, baseline then restricted, in the order the standard lists them."""
    pod = _Pod(prefix, metadata, spec)
    for check in _POD_CHECKS:
        yield from check(pod)


@dataclass(frozen=True)
class _Pod:
    """A pod template and the parts every check reads."""

    prefix: str
    metadata: Obj
    spec: Obj

    @property
    def security_context(self) -> Obj:
        return self.spec.get("securityContext") or {}

    @property
    def path(self) -> str:
        return f"{self.prefix}spec.securityContext"

    @property
    def containers(self) -> list[tuple[str, Obj]]:
        return list(_containers(self.prefix, self.spec))


def _host_process(pod: _Pod) -> Iterator[Violation]:
    pod_sc, pod_path, containers = pod.security_context, pod.path, pod.containers
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        yield Violation("host-process", f"{pod_path}.windowsOptions.hostProcess", "true")
    for path, c in containers:
        if (_sc(c).get("windowsOptions") or {}).get("hostProcess"):
            yield Violation("host-process", f"{path}.securityContext.windowsOptions", "true")


def _host_namespaces(pod: _Pod) -> Iterator[Violation]:
    prefix, spec = pod.prefix, pod.spec
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield Violation("host-namespaces", f"{prefix}spec.{field}", "true")


def _container_baseline(pod: _Pod) -> Iterator[Violation]:
    """Privileged, capabilities, host ports and /proc mounts, per container."""
    containers = pod.containers
    for path, c in containers:
        sc = _sc(c)
        if sc.get("privileged"):
            yield Violation("privileged", f"{path}.securityContext.privileged", "true")
        caps = sc.get("capabilities") or {}
        added = {str(cap) for cap in caps.get("add") or []}
        if added - BASELINE_CAPS:
            yield Violation("capabilities-baseline", f"{path}.securityContext.capabilities.add",
                            f"adds {sorted(added - BASELINE_CAPS)}")  # fmt: skip
        if added - RESTRICTED_CAPS:
            yield Violation("capabilities-restricted",
                            f"{path}.securityContext.capabilities.add",
                            f"adds {sorted(added - RESTRICTED_CAPS)}; only NET_BIND_SERVICE")  # fmt: skip
        if "ALL" not in {str(cap) for cap in caps.get("drop") or []}:
            yield Violation("capabilities-restricted",
                            f"{path}.securityContext.capabilities.drop", "does not drop ALL")  # fmt: skip
        for index, port in enumerate(c.get("ports") or []):
            if port.get("hostPort"):
                yield Violation("host-ports", f"{path}.ports[{index}].hostPort",
                                str(port["hostPort"]))  # fmt: skip
        if sc.get("procMount") not in (None, "Default"):
            yield Violation("proc-mount", f"{path}.securityContext.procMount",
                            str(sc.get("procMount")))  # fmt: skip


def _volumes(pod: _Pod) -> Iterator[Violation]:
    prefix, spec = pod.prefix, pod.spec
    for index, volume in enumerate(spec.get("volumes") or []):
        path = f"{prefix}spec.volumes[{index}]"
        kinds = sorted(set(volume) & _VOLUME_FIELDS)
        if "hostPath" in kinds:
            yield Violation("host-path", f"{path}.hostPath", "hostPath volume")
        bad = [kind for kind in kinds if kind not in RESTRICTED_VOLUMES]
        if bad:
            yield Violation("volume-types", path, f"volume type {bad[0]}")


def _security_options(pod: _Pod) -> Iterator[Violation]:
    """AppArmor, SELinux, seccomp (baseline) and a root uid, on the pod and each container."""
    prefix, metadata = pod.prefix, pod.metadata
    pod_sc, pod_path, containers = pod.security_context, pod.path, pod.containers
    for key, value in (metadata.get("annotations") or {}).items():
        if str(key).startswith(_APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            yield Violation("apparmor", f"{prefix}metadata.annotations[{key}]", str(value))
    for path, sc in [(pod_path, pod_sc)] + [
        (f"{p}.securityContext", _sc(c)) for p, c in containers
    ]:
        profile = sc.get("appArmorProfile")
        if profile is not None and profile.get("type") not in _APPARMOR_TYPES:
            yield Violation("apparmor", f"{path}.appArmorProfile.type", str(profile.get("type")))
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            yield Violation("selinux", f"{path}.seLinuxOptions.type", str(selinux["type"]))
        for field in ("user", "role"):
            if selinux.get(field):
                yield Violation("selinux", f"{path}.seLinuxOptions.{field}", "must not be set")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            yield Violation("seccomp-baseline", f"{path}.seccompProfile.type", "Unconfined")
        user = sc.get("runAsUser")
        if user == 0:
            yield Violation("run-as-user", f"{path}.runAsUser", "0 (root)")


def _sysctls(pod: _Pod) -> Iterator[Violation]:
    pod_sc, pod_path = pod.security_context, pod.path
    for index, sysctl in enumerate(pod_sc.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield Violation("sysctls", f"{pod_path}.sysctls[{index}]", str(sysctl.get("name")))


def _restricted(pod: _Pod) -> Iterator[Violation]:
    """Privilege escalation, non-root, seccomp (restricted): per container, pod defaults."""
    pod_sc, containers = pod.security_context, pod.containers
    pod_non_root = pod_sc.get("runAsNonRoot")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for path, c in containers:
        sc = _sc(c)
        if sc.get("allowPrivilegeEscalation") is not False:
            yield Violation("privilege-escalation",
                            f"{path}.securityContext.allowPrivilegeEscalation",
                            "must be false")  # fmt: skip
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            yield Violation("run-as-non-root", f"{path}.securityContext.runAsNonRoot",
                            "neither the container nor the pod sets true")  # fmt: skip
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in _SECCOMP_RESTRICTED:
            yield Violation("seccomp-restricted", f"{path}.securityContext.seccompProfile",
                            "neither the container nor the pod sets RuntimeDefault or Localhost")  # fmt: skip


_POD_CHECKS: tuple[Callable[[_Pod], Iterator[Violation]], ...] = (
    _host_process,
    _host_namespaces,
    _container_baseline,
    _volumes,
    _security_options,
    _sysctls,
    _restricted,
)
