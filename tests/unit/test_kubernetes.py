"""`render kubernetes`: what is rendered, that the schema (Kubernetes 1.29 and the newest
bundled) and Pod Security "restricted" accept it for any valid settings, and that the
Docker body and the Kubernetes securityContext follow the one hardening in policy.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from supervisor import kubernetes, podsecurity, policy
from supervisor.cli import main
from supervisor.settings import Settings, load_settings
from supervisor.stack import desired_services

Obj = dict[str, Any]
# The oldest Kubernetes we promise, and the newest the validator bundles.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def by_kind(objects: list[Obj]) -> dict[str, Obj]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def container(objects: list[Obj], kind_name: str) -> Obj:
    found: Obj = by_kind(objects)[kind_name]["spec"]["template"]["spec"]["containers"][0]
    return found


def validate_all(objects: list[Obj]) -> None:
    for obj in objects:
        assert podsecurity.check(obj) == [], obj["metadata"]["name"]
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_default_objects() -> None:
    objects = kubernetes.render(load_settings())
    assert list(by_kind(objects)) == [
        "Namespace/hyos",
        "ConfigMap/hyos-machine-id",
        "ConfigMap/hyos-launcher",
        "PersistentVolumeClaim/hyos-manager-data",
        "Service/hyos-game",
        "Service/hyos-server",
        "Service/hyos-dashboard",
        "NetworkPolicy/hyos-default-deny",
        "NetworkPolicy/hyos-server",
        "NetworkPolicy/hyos-manager",
        "StatefulSet/hyos-server",
        "Deployment/hyos-manager",
    ]
    assert all(o["metadata"].get("namespace", "hyos") == "hyos" for o in objects)


def test_default_objects_pass_the_schema_strictly_and_pod_security() -> None:
    validate_all(kubernetes.render(load_settings()))


def test_schema_validation_catches_a_typo() -> None:
    objects = by_kind(kubernetes.render(load_settings()))
    broken = objects["Deployment/hyos-manager"]
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_namespace_is_pod_security_restricted() -> None:
    labels = kubernetes.render(load_settings())[0]["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"


def test_server_statefulset() -> None:
    objects = kubernetes.render(
        load_settings(kubernetes={"storage_size": "50Gi", "storage_class": "fast-ssd"})
    )
    sts = by_kind(objects)["StatefulSet/hyos-server"]
    assert sts["spec"]["replicas"] == 1
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim == {
        "accessModes": ["ReadWriteOncePod"],
        "resources": {"requests": {"storage": "50Gi"}},
        "storageClassName": "fast-ssd",
    }
    pod = sts["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60  # the server's stop_timeout
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["fsGroup"] == 568
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    server = pod["containers"][0]
    limits = {"memory": "6Gi", "cpu": "2"}
    assert server["resources"] == {"requests": limits, "limits": limits}
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert mounts["/etc/machine-id"] == {
        "name": "machine-id", "mountPath": "/etc/machine-id", "subPath": "machine-id",
        "readOnly": True,
    }  # fmt: skip
    volumes = {v["name"]: v for v in pod["volumes"]}
    scratch = {mounts[p]["name"] for p in ("/tmp", "/home/hytale")}
    assert all(volumes[n]["emptyDir"] == {"sizeLimit": "1Gi"} for n in scratch)
    # The probes are HyOS's HEALTHCHECK: 30 s interval, 10 s timeout, 3 retries, 180 s start.
    assert server["livenessProbe"] == {
        "exec": {"command": ["/bin/sh", "-c", "/opt/scripts/healthcheck.sh || exit 1"]},
        "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3,
    }  # fmt: skip
    assert server["readinessProbe"] == server["livenessProbe"]
    assert server["startupProbe"]["failureThreshold"] == 180 // 30 + 3


def test_healthcheck_setting_drives_the_probes() -> None:
    settings = load_settings(
        manager={"healthcheck": {"test": ["/bin/true"], "interval": 2.5, "timeout": 0.5,
                                 "retries": 4, "start_period": 10}}
    )  # fmt: skip
    probe = container(kubernetes.render(settings), "Deployment/hyos-manager")["startupProbe"]
    assert probe == {"exec": {"command": ["/bin/true"]}, "periodSeconds": 3,
                     "timeoutSeconds": 1, "failureThreshold": 4 + 4}  # fmt: skip


def test_manager_deployment_and_services() -> None:
    objects = by_kind(kubernetes.render(load_settings()))
    deploy = objects["Deployment/hyos-manager"]
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    env = {
        e["name"]: e["value"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["HYTALE_SERVER_HOST"] == "hyos-server"
    assert "DOCKER_HOST" not in env  # no Docker API on Kubernetes
    game = objects["Service/hyos-game"]["spec"]
    assert game["type"] == "NodePort"
    assert game["ports"] == [{"name": "udp-5520", "port": 5520, "targetPort": 5520,
                              "protocol": "UDP"}]  # fmt: skip
    assert objects["Service/hyos-dashboard"]["spec"]["type"] == "ClusterIP"
    # The API: only from the manager's pods.
    api_rule = objects["NetworkPolicy/hyos-server"]["spec"]["ingress"][1]
    assert api_rule == {
        "from": [{"podSelector": {"matchLabels": {
            "app.kubernetes.io/instance": "hyos", "app.kubernetes.io/component": "manager"}}}],
        "ports": [{"protocol": "TCP", "port": 30381}],
    }  # fmt: skip
    lb = by_kind(kubernetes.render(load_settings(kubernetes={"game_service_type": "LoadBalancer"})))
    assert lb["Service/hyos-game"]["spec"]["type"] == "LoadBalancer"


def test_a_published_api_port_never_reaches_the_game_service() -> None:
    settings = load_settings(server={"ports": ["5520:5520/udp", "30381:30381/tcp"]})
    game = by_kind(kubernetes.render(settings))["Service/hyos-game"]["spec"]["ports"]
    assert [p["port"] for p in game] == [5520]


def test_secrets_as_files_with_the_docker_paths_and_no_values() -> None:
    settings = load_settings()
    objects = kubernetes.render(settings)
    assert not [o for o in objects if o["kind"] == "Secret"]
    for kind_name, role in (("StatefulSet/hyos-server", "server"),
                            ("Deployment/hyos-manager", "manager")):  # fmt: skip
        k8s_env = {e["name"]: e["value"] for e in container(objects, kind_name)["env"]}
        docker_env = dict(desired_services(settings)[role].env)
        files = {k: v for k, v in docker_env.items() if k.endswith("_FILE")}
        assert files and files.items() <= k8s_env.items()
        assert "HYOS_FILE_ENV" in k8s_env
        command = container(objects, kind_name)["command"]
        assert command[:2] == ["/bin/sh", "/run/hyos-system/file-env.sh"]
    manager_secret = next(
        v
        for v in by_kind(objects)["Deployment/hyos-manager"]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "secrets"
    )
    assert [i["key"] for i in manager_secret["secret"]["items"]] == [
        "api_client_id", "api_client_secret", "session_secret"]  # fmt: skip
    assert "kubectl -n hyos create secret generic hyos-secrets" in kubernetes.secret_command(
        settings
    )


def test_machine_id_is_stable_per_stack() -> None:
    first = kubernetes.machine_id("hyos")
    assert first == kubernetes.machine_id("hyos") != kubernetes.machine_id("blue")
    assert len(first) == 32 and int(first, 16) > 0


def test_stack_names_that_are_not_dns_labels_get_a_hashed_name() -> None:
    assert kubernetes.base_name("hyos") == "hyos"
    odd = kubernetes.base_name("My_Stack.1")
    assert odd.startswith("my-stack-1-") and odd != kubernetes.base_name("my-stack-1")
    assert kubernetes.base_name("9lives").startswith("hyos-9lives-")


# --- one source of truth for hardening --------------------------------------------------


def test_a_hardening_change_shows_up_in_docker_and_kubernetes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = policy.hardening

    def relaxed(spec: Any) -> policy.Hardening:
        return dataclasses.replace(
            original(spec), read_only_root=False, no_new_privileges=False,
            cap_drop=("NET_RAW",), seccomp="unconfined", uid=1234,
        )  # fmt: skip

    monkeypatch.setattr(policy, "hardening", relaxed)
    settings = load_settings()
    body = policy.build_create_body(desired_services(settings)["server"])
    host = body["HostConfig"]
    assert (host["ReadonlyRootfs"], host["CapDrop"], host["SecurityOpt"]) == (
        False, ["NET_RAW"], ["seccomp=unconfined"])  # fmt: skip
    assert body["User"] == "1234:568"
    objects = kubernetes.render(settings)
    sc = container(objects, "StatefulSet/hyos-server")["securityContext"]
    assert (sc["readOnlyRootFilesystem"], sc["capabilities"]["drop"]) == (False, ["NET_RAW"])
    assert (sc["allowPrivilegeEscalation"], sc["seccompProfile"]) == (True, {"type": "Unconfined"})
    assert sc["runAsUser"] == 1234
    found = {v.control for v in podsecurity.check(by_kind(objects)["StatefulSet/hyos-server"])}
    assert {"privilege-escalation", "capabilities-restricted", "seccomp-baseline"} <= found


def test_render_refuses_settings_restricted_would_not_admit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYOS_SERVER__CAP_ADD", '["CHOWN"]')
    assert main(["render", "kubernetes"]) == 78
    err = capsys.readouterr().err
    assert "capabilities" in err and "CHOWN" in err


# --- the CLI ----------------------------------------------------------------------------


def test_render_to_a_directory_with_kustomization(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k8s"
    assert main(["render", "kubernetes", "--namespace", "games", "--output", str(out)]) == 0
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    files = sorted(p.name for p in out.iterdir() if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files
    docs = [yaml.safe_load((out / name).read_text()) for name in files]
    assert {d["metadata"].get("namespace", d["metadata"]["name"]) for d in docs} == {"games"}
    validate_all(docs)
    err = capsys.readouterr().err
    assert "kubectl apply -k" in err and "create secret generic hyos-secrets" in err
    assert "Secret" not in {d["kind"] for d in docs}


def test_render_with_secrets_writes_them_0600_and_only_then(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "kubernetes", "-o", str(tmp_path), "--with-secrets"]) == 0
    path = tmp_path / "secret-hyos-secrets.yaml"
    assert path.stat().st_mode & 0o777 == 0o600
    secret = yaml.safe_load(path.read_text())
    values = secret["stringData"]
    assert sorted(values) == ["api_client_id", "api_client_secret", "session_secret"]
    assert len(values["session_secret"]) >= 32
    kubernetes_validate.validate(secret, K8S_VERSIONS[0], strict=True)
    # Without the flag, no value anywhere on stdout.
    assert main(["render", "kubernetes"]) == 0
    out = capsys.readouterr().out
    assert values["session_secret"] not in out and "stringData" not in out


def test_render_to_stdout_is_one_yaml_stream(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "kubernetes", "-o", "-"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == [o["kind"] for o in kubernetes.render(load_settings())]
    assert "&id" not in yaml.safe_dump(docs)  # no YAML anchors


def test_render_bad_namespace_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "kubernetes", "--namespace", "Bad_NS"]) == 78
    assert "not a Kubernetes namespace name" in capsys.readouterr().err


# --- any valid settings -----------------------------------------------------------------

_stack = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", fullmatch=True)
_memory = st.one_of(
    st.integers(min_value=6, max_value=65536).map(lambda n: f"{n}m"),
    st.integers(min_value=1, max_value=64).map(lambda n: f"{n}GiB"),
    st.integers(min_value=6 * 1024**2, max_value=2**36).map(str),  # bytes: not a round unit
)
_port = st.builds(
    lambda host, container, proto: f"{host}:{container}/{proto}",
    st.integers(min_value=0, max_value=65535),
    st.integers(min_value=1, max_value=65535),
    st.sampled_from(["udp", "tcp"]),
)
_namespace = st.none() | st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


@given(
    stack=_stack,
    server_memory=_memory,
    manager_memory=_memory,
    cpus=st.floats(min_value=0.001, max_value=64),
    server_ports=st.lists(_port, max_size=4),
    manager_ports=st.lists(_port, max_size=2),
    namespace=_namespace,
    service_type=st.sampled_from(["NodePort", "LoadBalancer"]),
    prepare=st.booleans(),
    storage=st.sampled_from(["1Gi", "500Mi", "2.5Gi", "100G"]),
    password=st.none() | st.text("abcdefgh12345", min_size=1, max_size=20),
)
@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_valid_settings_render_admissible_valid_objects(
    stack: str,
    server_memory: str,
    manager_memory: str,
    cpus: float,
    server_ports: list[str],
    manager_ports: list[str],
    namespace: str | None,
    service_type: str,
    prepare: bool,
    storage: str,
    password: str | None,
) -> None:
    settings: Settings = load_settings(
        stack=stack,
        prepare=prepare,
        server_password=password,
        server={"memory": server_memory, "cpus": cpus, "ports": server_ports},
        manager={"memory": manager_memory, "ports": manager_ports},
        kubernetes={"game_service_type": service_type, "storage_size": storage},
    )
    objects = kubernetes.render(settings, namespace)
    validate_all(objects)
    names = [f"{o['kind']}/{o['metadata']['name']}" for o in objects]
    assert len(names) == len(set(names))


def test_supplied_secrets_are_referenced_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYOS_SERVER_PASSWORD", "join-us-please")
    monkeypatch.setenv("HYOS_KUBERNETES__NAMESPACE", "games")
    settings = load_settings()
    command = kubernetes.secret_command(settings)
    assert "--from-file=server_password=./server_password" in command
    assert command.startswith("kubectl -n games create secret generic hyos-secrets")
    assert main(["render", "kubernetes"]) == 0
    captured = capsys.readouterr()
    assert "join-us-please" not in captured.out + captured.err
    assert "SERVER_PASSWORD_FILE" in captured.out


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_validate_cli_strict_passes_every_file(tmp_path: Path, version: str) -> None:
    """The command an operator would run, on the files `render` writes."""
    import shutil
    import subprocess
    import sys

    assert main(["render", "kubernetes", "-o", str(tmp_path), "--with-secrets"]) == 0
    files = sorted(str(p) for p in tmp_path.glob("*.yaml") if p.name != "kustomization.yaml")
    binary = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).parent / "kubernetes-validate"
    )
    result = subprocess.run(
        [binary, "--strict", "-k", version, *files], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(files) == 13
