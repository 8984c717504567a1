"""Pure: settings -> the stack as Kubernetes objects (`hyos-supervisor render kubernetes`).

Built from the same pieces as the Docker create requests: `stack.desired_services` for
images, env, secrets-as-files and the launcher shim; `policy.hardening` for everything
the securityContext says. Kubernetes then does what the daemon does on Docker: scheduling,
restarts (CrashLoopBackOff), storage.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

from entrypoint.contract import SHIM
from supervisor import policy, roles, secretspec
from supervisor.roles import Role
from supervisor.settings import HealthcheckOverride, PortBinding, Settings
from supervisor.stack import (
    DEFAULT_API_PORT,
    FILE_ENV_SHIM_NAME,
    GAME_PORT,
    SECRETS_DIR,
    SYSTEM_MOUNT,
    Runtime,
    ServiceSpec,
    desired_services,
)

Obj = dict[str, Any]

MACHINE_ID_PATH = "/etc/machine-id"
MACHINE_ID_KEY = "machine-id"
# HyOS's own HEALTHCHECKs (server/Dockerfile, manager/Dockerfile): Docker reads them from the
# image, Kubernetes cannot; a `healthcheck` setting overrides them as on Docker.
IMAGE_HEALTHCHECKS: dict[str, HealthcheckOverride] = {
    Role.SERVER: HealthcheckOverride(
        test=["/bin/sh", "-c", "/opt/scripts/healthcheck.sh || exit 1"],
        interval=30, timeout=10, start_period=180, retries=3,
    ),
    Role.MANAGER: HealthcheckOverride(
        test=["/bin/sh", "-c",
              "wget --no-verbose --tries=1 --spider http://127.0.0.1:3000/api/health || exit 1"],
        interval=30, timeout=10, start_period=60, retries=3,
    ),
}  # fmt: skip
_PULL_POLICY = {"missing": "IfNotPresent", "always": "Always", "never": "Never"}
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
# File modes of mounted ConfigMaps and Secrets: read-only; the group is fsGroup.
_MODE_SHIM = 0o555
_MODE_SECRET = 0o440
_MODE_MACHINE_ID = 0o444


def base_name(stack: str) -> str:
    """The stack's name as a DNS label short enough for every suffix we add; a name that
    had to change gets a hash of the original so two stacks never collide."""
    if _DNS_LABEL.match(stack):
        return stack
    name = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")[:30].strip("-")
    if not name[:1].isalpha():
        name = ("hyos-" + name).strip("-")[:30].strip("-")
    return f"{name}-{hashlib.sha256(stack.encode()).hexdigest()[:8]}"


def machine_id(stack: str) -> str:
    """Stable per stack (Hytale's auth persistence key derives from it), never all zeros."""
    return hashlib.sha256(f"hyos-machine-id\0{stack}".encode()).hexdigest()[:32]


def secret_name(settings: Settings) -> str:
    return f"{base_name(settings.stack)}-secrets"


def namespace_of(settings: Settings, namespace: str | None = None) -> str:
    return namespace or settings.kubernetes.namespace or base_name(settings.stack)


def memory_quantity(size: int) -> str:
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def cpu_quantity(nano_cpus: int) -> str:
    milli = max(1, round(nano_cpus / 1e6))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def security_context(rules: policy.Hardening) -> Obj:
    """A container's securityContext, derived from the runtime-neutral hardening."""
    caps: Obj = {"drop": list(rules.cap_drop)}
    if rules.cap_add:
        caps["add"] = list(rules.cap_add)
    seccomp = "RuntimeDefault" if rules.seccomp == policy.SECCOMP_RUNTIME_DEFAULT else "Unconfined"
    return {
        "runAsNonRoot": rules.run_as_non_root,
        "runAsUser": rules.uid,
        "runAsGroup": rules.gid,
        "allowPrivilegeEscalation": not rules.no_new_privileges,
        "privileged": rules.privileged,
        "readOnlyRootFilesystem": rules.read_only_root,
        "capabilities": caps,
        "seccompProfile": {"type": seccomp},
    }


def pod_security_context(rules: policy.Hardening) -> Obj:
    """fsGroup replaces the prepare step's chown: the kubelet makes volumes group-owned,
    and only when the root of the volume is not already (OnRootMismatch: fast restarts)."""
    seccomp = "RuntimeDefault" if rules.seccomp == policy.SECCOMP_RUNTIME_DEFAULT else "Unconfined"
    return {
        "runAsNonRoot": rules.run_as_non_root,
        "runAsUser": rules.uid,
        "runAsGroup": rules.gid,
        "fsGroup": rules.gid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": seccomp},
    }


def _probes(role: str, override: HealthcheckOverride | None) -> Obj:
    """Docker's health check as exec probes: startup covers the start period, then
    liveness restarts after `retries` failures (as the supervisor does on unhealthy) and
    readiness takes the pod out of its Services meanwhile. An image with no health check
    we know of, and no override, gets no probes (on Docker it has none either)."""
    image = IMAGE_HEALTHCHECKS.get(role)
    check = override or image
    if check is None:
        return {}
    command = list(check.test or (image.test if image else None) or [])
    period, timeout = _seconds(check.interval), _seconds(check.timeout)
    started = math.ceil(check.start_period / check.interval) if check.start_period else 0

    def probe(failures: int) -> Obj:
        # Fresh lists each time: shared ones would come out as YAML anchors.
        return {"exec": {"command": list(command)}, "periodSeconds": period,
                "timeoutSeconds": timeout, "failureThreshold": failures}  # fmt: skip

    return {
        "startupProbe": probe(max(1, started) + check.retries),
        "livenessProbe": probe(check.retries),
        "readinessProbe": probe(check.retries),
    }


def _port_name(protocol: str, port: int) -> str:
    return f"{protocol}-{port}"


def _container_ports(spec: ServiceSpec, api_port: int | None) -> list[Obj]:
    seen: dict[tuple[int, str], Obj] = {}
    for binding in spec.ports:
        key = (binding.container_port, binding.protocol.upper())
        seen.setdefault(key, {"name": _port_name(binding.protocol, binding.container_port),
                              "containerPort": binding.container_port, "protocol": key[1]})  # fmt: skip
    if api_port is not None:
        seen[(api_port, "TCP")] = {"name": "api", "containerPort": api_port, "protocol": "TCP"}
    return list(seen.values())


def _service_ports(bindings: tuple[PortBinding, ...], skip: int | None) -> list[Obj]:
    ports: dict[tuple[int, str], Obj] = {}
    for binding in bindings:
        if binding.container_port == skip and binding.protocol == "tcp":
            continue  # the API is never published, whatever `ports` says
        port = binding.host_port or binding.container_port
        ports.setdefault((port, binding.protocol), {
            "name": _port_name(binding.protocol, port),
            "port": port,
            "targetPort": binding.container_port,
            "protocol": binding.protocol.upper(),
        })  # fmt: skip
    return list(ports.values())


class _Builder:
    def __init__(self, settings: Settings, namespace: str | None) -> None:
        self.settings = settings
        self.k8s = settings.kubernetes
        self.base = base_name(settings.stack)
        self.namespace = namespace_of(settings, namespace)
        self.supplied = frozenset(settings.supplied_secrets())
        # Kubernetes cannot read an image's own command: each service's is a setting
        # named after its role (`kubernetes.<role>_command`).
        commands = {role: (tuple(getattr(self.k8s, f"{role}_command")), ()) for role in roles.NAMES}
        # No guard, no host machine-id file: those are Docker's; the rest is shared.
        self.specs = desired_services(
            settings, Runtime(system_volume="launcher", image_commands=commands)
        )
        server_env = settings.server.env
        self.api_port = int(server_env.get("API_PORT", DEFAULT_API_PORT))
        self.game_port = int(server_env.get("SERVER_PORT", GAME_PORT))

    def name(self, suffix: str) -> str:
        return f"{self.base}-{suffix}"

    def labels(self, role: str | None = None) -> dict[str, str]:
        labels = {
            "app.kubernetes.io/name": "hyos",
            "app.kubernetes.io/instance": self.base,
            "app.kubernetes.io/managed-by": "hyos-supervisor",
        }
        if role:
            labels["app.kubernetes.io/component"] = role
        return labels

    def selector(self, role: str) -> dict[str, str]:
        return {"app.kubernetes.io/instance": self.base, "app.kubernetes.io/component": role}

    def meta(self, name: str, role: str | None = None) -> Obj:
        return {"name": name, "namespace": self.namespace, "labels": self.labels(role)}

    # --- objects ----------------------------------------------------------------------

    def namespace_object(self) -> Obj:
        version = self.k8s.pod_security_version
        labels = dict(self.labels())
        for mode in ("enforce", "audit", "warn"):
            labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
            labels[f"pod-security.kubernetes.io/{mode}-version"] = version
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": self.namespace, "labels": labels}}  # fmt: skip

    def config_maps(self) -> list[Obj]:
        found = [{
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(self.name("machine-id")),
            "immutable": True, "data": {MACHINE_ID_KEY: machine_id(self.settings.stack) + "\n"},
        }]  # fmt: skip
        if any(spec.entrypoint for spec in self.specs.values()):
            found.append({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(self.name("launcher")),
                "data": {FILE_ENV_SHIM_NAME: SHIM},
            })  # fmt: skip
        return found

    def secret(self, values: Mapping[str, str]) -> Obj:
        names = {spec.name for role in self.specs for spec in self._secrets(role)}
        missing = sorted(names - set(values))
        if missing:
            raise ValueError(f"no value for secrets {missing}")
        return {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": self.meta(secret_name(self.settings)),
            "stringData": {name: values[name] for name in sorted(names)},
        }  # fmt: skip

    def _secrets(self, role: str) -> tuple[secretspec.SecretSpec, ...]:
        if not self.settings.prepare:
            return ()
        return secretspec.for_role(role, self.supplied)

    def _env(self, role: str, spec: ServiceSpec) -> list[Obj]:
        env = dict(spec.env)
        if roles.PROFILES[Role(role)].dashboard:
            # The server by its Service's name; no Docker API here, so no DOCKER_HOST.
            env["HYTALE_CONTAINER_NAME"] = self.name(Role.SERVER)
            env["HYTALE_SERVER_HOST"] = self.name(Role.SERVER)
            env.pop("HYTALE_GAME_PORT", None)
            game = self._game_player_port()
            if game is not None:
                env["HYTALE_GAME_PORT"] = str(game)
        return [{"name": key, "value": value} for key, value in sorted(env.items())]

    def _game_player_port(self) -> int | None:
        if self.k8s.game_service_type == "NodePort":
            return self.k8s.game_node_port
        ports = [p for p in _service_ports(self.specs[Role.SERVER].ports, self.api_port)
                 if p["targetPort"] == self.game_port and p["protocol"] == "UDP"]  # fmt: skip
        return int(ports[0]["port"]) if ports else None

    def _pod(self, role: str, data_claim: Obj | None) -> Obj:
        spec = self.specs[role]
        rules = policy.hardening(spec)
        service = self.settings.services()[role]
        mounts: list[Obj] = [{"name": "data", "mountPath": "/data"}]
        volumes: list[Obj] = [data_claim] if data_claim else []
        secrets = self._secrets(role)
        if secrets:
            # Same paths as on Docker: X_FILE=/data/.hyos/secrets/x, only this role's.
            mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
            volumes.append({"name": "secrets", "secret": {
                "secretName": secret_name(self.settings), "defaultMode": _MODE_SECRET,
                "items": [{"key": s.name, "path": s.name} for s in secrets],
            }})  # fmt: skip
        if spec.entrypoint:
            mounts.append({"name": "launcher", "mountPath": SYSTEM_MOUNT, "readOnly": True})
            volumes.append({"name": "launcher", "configMap": {
                "name": self.name("launcher"), "defaultMode": _MODE_SHIM}})  # fmt: skip
        if roles.PROFILES[Role(role)].stable_machine_id:
            mounts.append({"name": "machine-id", "mountPath": MACHINE_ID_PATH,
                           "subPath": MACHINE_ID_KEY, "readOnly": True})  # fmt: skip
            volumes.append({"name": "machine-id", "configMap": {
                "name": self.name("machine-id"), "defaultMode": _MODE_MACHINE_ID}})  # fmt: skip
        for index, path in enumerate(rules.scratch):
            # emptyDir for each tmpfs path (/tmp, HOME, caches); sizeLimit bounds the disk.
            mounts.append({"name": f"scratch-{index}", "mountPath": path})
            volumes.append({"name": f"scratch-{index}",
                            "emptyDir": {"sizeLimit": self.k8s.scratch_size}})  # fmt: skip
        resources = {"memory": memory_quantity(rules.memory_bytes),
                     "cpu": cpu_quantity(rules.nano_cpus)}  # fmt: skip
        container: Obj = {
            "name": role,
            "image": spec.image,
            "imagePullPolicy": _PULL_POLICY[self.settings.pull],
            "env": self._env(role, spec),
            "ports": _container_ports(spec, self.api_port if roles.is_game(role) else None),
            # Requests = limits: Guaranteed QoS, so the JVM's heap (sized from the limit) is
            # never the first thing the node evicts.
            "resources": {"requests": dict(resources), "limits": dict(resources)},
            "securityContext": security_context(rules),
            "volumeMounts": mounts,
            **_probes(role, service.healthcheck),
        }
        if spec.entrypoint:
            container["command"] = [*spec.entrypoint, *(spec.cmd or ())]
        return {
            "metadata": {"labels": {**self.labels(role), **self.selector(role)}},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": spec.stop_timeout,
                "securityContext": pod_security_context(rules),
                "containers": [container],
                "volumes": volumes,
            },
        }

    def _claim_spec(self, size: str) -> Obj:
        claim: Obj = {"accessModes": [self.k8s.access_mode],
                      "resources": {"requests": {"storage": size}}}  # fmt: skip
        if self.k8s.storage_class:
            claim["storageClassName"] = self.k8s.storage_class
        return claim

    def workload(self, role: str) -> Obj | None:
        """The role's controller object, by its profile's Kubernetes kind."""
        profile = roles.profile(role)
        kind = profile.kubernetes_kind if profile is not None else None
        if kind == "StatefulSet":
            return self.stateful_set(role)
        if kind == "Deployment":
            return self.deployment(role)
        return None

    def stateful_set(self, role: str) -> Obj:
        """The world's keeper: one pod, its data a claim of its own that outlives it."""
        template = self._pod(role, None)
        # No "data" volume in the template: the controller adds it from volumeClaimTemplates.
        return {
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": self.meta(self.name(role), role),
            "spec": {
                "serviceName": self.name(role),
                "replicas": 1,
                "selector": {"matchLabels": self.selector(role)},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain",
                                                         "whenScaled": "Retain"},
                "template": template,
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data", "labels": self.labels(role)},
                    "spec": self._claim_spec(self.k8s.storage_size),
                }],
            },
        }  # fmt: skip

    def claim(self, role: str) -> Obj:
        """A Deployment's data claim (`kubernetes.<role>_storage_size`)."""
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": self.meta(self.name(f"{role}-data"), role),
                "spec": self._claim_spec(getattr(self.k8s, f"{role}_storage_size"))}  # fmt: skip

    def deployment(self, role: str) -> Obj:
        claim = {"name": "data",
                 "persistentVolumeClaim": {"claimName": self.name(f"{role}-data")}}  # fmt: skip
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": self.meta(self.name(role), role),
            "spec": {
                "replicas": 1,
                # Its volume is ReadWriteOncePod: the old pod must be gone first.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": self.selector(role)},
                "template": self._pod(role, claim),
            },
        }  # fmt: skip

    def services(self) -> list[Obj]:
        found: list[Obj] = []
        game = _service_ports(self.specs[Role.SERVER].ports, self.api_port)
        if game:
            if self.k8s.game_service_type == "NodePort" and self.k8s.game_node_port:
                game[0]["nodePort"] = self.k8s.game_node_port
            found.append({
                "apiVersion": "v1", "kind": "Service", "metadata": self.meta(self.name("game"), Role.SERVER),
                "spec": {"type": self.k8s.game_service_type, "selector": self.selector(Role.SERVER),
                         "externalTrafficPolicy": "Local", "ports": game},
            })  # fmt: skip
        # Headless: the StatefulSet's governing Service and the manager's way to the API.
        found.append({
            "apiVersion": "v1", "kind": "Service", "metadata": self.meta(self.name(Role.SERVER), Role.SERVER),
            "spec": {"clusterIP": "None", "selector": self.selector(Role.SERVER),
                     "ports": [{"name": "api", "port": self.api_port, "targetPort": self.api_port,
                                "protocol": "TCP"}]},
        })  # fmt: skip
        dashboard = _service_ports(self.specs[Role.MANAGER].ports, None)
        if dashboard:
            found.append({
                "apiVersion": "v1", "kind": "Service",
                "metadata": self.meta(self.name("dashboard"), Role.MANAGER),
                "spec": {"type": "ClusterIP", "selector": self.selector(Role.MANAGER), "ports": dashboard},
            })  # fmt: skip
        return found

    def network_policies(self) -> list[Obj]:
        def policy_object(name: str, selector: Obj, ingress: list[Obj]) -> Obj:
            return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": self.meta(self.name(name)),
                    "spec": {"podSelector": selector, "policyTypes": ["Ingress"],
                             "ingress": ingress}}  # fmt: skip

        def open_ports(ports: list[Obj]) -> list[Obj]:
            return [{"protocol": p["protocol"], "port": p["targetPort"]} for p in ports]

        game = open_ports(_service_ports(self.specs[Role.SERVER].ports, self.api_port))
        server_ingress: list[Obj] = [{"ports": game}] if game else []
        # The API: from the manager's pods only.
        server_ingress.append(
            {
                "from": [{"podSelector": {"matchLabels": self.selector(Role.MANAGER)}}],
                "ports": [{"protocol": "TCP", "port": self.api_port}],
            }
        )
        dashboard = open_ports(_service_ports(self.specs[Role.MANAGER].ports, None))
        return [
            # Nothing reaches a pod of the stack unless a policy below lets it.
            policy_object("default-deny", {}, []),
            policy_object(Role.SERVER, {"matchLabels": self.selector(Role.SERVER)}, server_ingress),
            policy_object(Role.MANAGER, {"matchLabels": self.selector(Role.MANAGER)},
                          [{"ports": dashboard}] if dashboard else []),
        ]  # fmt: skip


def render(
    settings: Settings,
    namespace: str | None = None,
    secret_values: Mapping[str, str] | None = None,
) -> list[Obj]:
    """The whole deployment, in apply order. Without `secret_values` no Secret is rendered:
    the pods reference one that `secret_command` creates."""
    build = _Builder(settings, namespace)
    objects = [build.namespace_object(), *build.config_maps()]
    if secret_values is not None:
        objects.append(build.secret(secret_values))
    deployed = [r for r in roles.NAMES if roles.PROFILES[Role(r)].kubernetes_kind == "Deployment"]
    objects += [
        *(build.claim(role) for role in deployed),
        *build.services(),
        *build.network_policies(),
        *(w for w in (build.workload(role) for role in roles.NAMES) if w is not None),
    ]
    return objects


def needed_secrets(settings: Settings) -> list[secretspec.SecretSpec]:
    """The Secret's keys: every secret some role reads (none without the prepare step)."""
    if not settings.prepare:
        return []
    supplied = frozenset(settings.supplied_secrets())
    names = {s.name for role in roles.NAMES for s in secretspec.for_role(role, supplied)}
    return [spec for spec in secretspec.SECRETS if spec.name in names]


def secret_command(settings: Settings, namespace: str | None = None) -> str:
    """The one `kubectl create secret` that makes the Secret the pods reference."""
    parts = [f"kubectl -n {namespace_of(settings, namespace)} create secret generic "
             f"{secret_name(settings)}"]  # fmt: skip
    supplied = settings.supplied_secrets()
    for spec in needed_secrets(settings):
        if spec.name in supplied:
            # Yours: from the file you keep it in, never echoed here.
            parts.append(f"--from-file={spec.name}=./{spec.name}")
        elif spec.name == "api_client_id":
            parts.append("--from-literal=api_client_id=hyos-manager")
        else:
            parts.append(f'--from-literal={spec.name}="$(openssl rand -hex 32)"')
    return " \\\n  ".join(parts)


def file_name(obj: Mapping[str, Any]) -> str:
    return f"{str(obj['kind']).lower()}-{obj['metadata']['name']}.yaml"


def kustomization(objects: list[Obj]) -> Obj:
    """`kubectl apply -k DIR` applies every file (kustomize orders them by kind itself)."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [file_name(obj) for obj in objects],
    }
