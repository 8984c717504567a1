"""The Pod Security checker: one failing fixture per control it checks, a passing pod, and
every pod template `render kubernetes` makes passes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from supervisor import kubernetes, podsecurity
from supervisor.settings import load_settings

Obj = dict[str, Any]


def restricted_pod() -> Obj:
    """The smallest pod "restricted" admits."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def _c(pod: Obj) -> Obj:
    container: Obj = pod["spec"]["containers"][0]
    return container


def _csc(pod: Obj) -> Obj:
    sc: Obj = _c(pod)["securityContext"]
    return sc


# control id -> a change that breaks exactly that control.
BREAKERS: dict[str, Callable[[Obj], None]] = {
    "host-process": lambda p: _csc(p).update(windowsOptions={"hostProcess": True}),
    "host-namespaces": lambda p: p["spec"].update(hostPID=True),
    "privileged": lambda p: _csc(p).update(privileged=True),
    "capabilities-baseline": lambda p: _csc(p)["capabilities"].update(add=["SYS_ADMIN"]),
    "host-path": lambda p: p["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/x"}}]),
    "host-ports": lambda p: _c(p).update(ports=[{"containerPort": 80, "hostPort": 8080}]),
    "apparmor": lambda p: _csc(p).update(appArmorProfile={"type": "Unconfined"}),
    "selinux": lambda p: _csc(p).update(seLinuxOptions={"type": "spc_t"}),
    "proc-mount": lambda p: _csc(p).update(procMount="Unmasked"),
    "seccomp-baseline": lambda p: _csc(p).update(seccompProfile={"type": "Unconfined"}),
    "sysctls": lambda p: p["spec"]["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}]
    ),
    "volume-types": lambda p: p["spec"].update(
        volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]
    ),
    "privilege-escalation": lambda p: _csc(p).pop("allowPrivilegeEscalation"),
    "run-as-non-root": lambda p: p["spec"]["securityContext"].pop("runAsNonRoot"),
    "run-as-user": lambda p: _csc(p).update(runAsUser=0),
    "seccomp-restricted": lambda p: p["spec"]["securityContext"].pop("seccompProfile"),
    "capabilities-restricted": lambda p: _csc(p)["capabilities"].update(add=["CHOWN"]),
}


def test_every_control_has_a_failing_fixture() -> None:
    assert set(BREAKERS) == set(podsecurity.CONTROLS)


def test_the_restricted_pod_passes() -> None:
    assert podsecurity.check(restricted_pod()) == []


@pytest.mark.parametrize("control", sorted(BREAKERS))
def test_each_broken_control_is_reported(control: str) -> None:
    pod = restricted_pod()
    BREAKERS[control](pod)
    found = {v.control for v in podsecurity.check(pod)}
    assert control in found
    # Restricted controls that are also baseline ones report both; nothing unrelated.
    related = {
        "host-path": {"volume-types"},
        "capabilities-baseline": {"capabilities-restricted"},
        "seccomp-baseline": {"seccomp-restricted"},
    }
    assert found <= {control, *related.get(control, set())}


@pytest.mark.parametrize(
    ("change", "control"),
    [
        (lambda p: p["metadata"].update(
            annotations={"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}),
         "apparmor"),
        (lambda p: _csc(p).update(seLinuxOptions={"user": "system_u"}), "selinux"),
        (lambda p: _csc(p).update(runAsNonRoot=False), "run-as-non-root"),
        (lambda p: p["spec"].update(initContainers=[{"name": "i", "image": "i"}]),
         "privilege-escalation"),
        (lambda p: _csc(p)["capabilities"].update(drop=["NET_RAW"]), "capabilities-restricted"),
        (lambda p: p["spec"]["securityContext"].update(runAsUser=0), "run-as-user"),
        (lambda p: p["spec"].update(hostNetwork=True), "host-namespaces"),
    ],
)  # fmt: skip
def test_other_places_of_a_control(change: Callable[[Obj], None], control: str) -> None:
    pod = restricted_pod()
    change(pod)
    assert control in {v.control for v in podsecurity.check(pod)}


def test_allowed_values_pass() -> None:
    pod = restricted_pod()
    _csc(pod)["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    _csc(pod)["seLinuxOptions"] = {"type": "container_t", "level": "s0:c1,c2"}
    _csc(pod)["appArmorProfile"] = {"type": "RuntimeDefault"}
    pod["spec"]["securityContext"]["sysctls"] = [{"name": "net.ipv4.ping_group_range"}]
    pod["spec"]["volumes"] = [{"name": "e", "emptyDir": {}}, {"name": "s", "secret": {}}]
    assert podsecurity.check(pod) == []


def test_templates_of_workload_kinds_are_found() -> None:
    broken = restricted_pod()
    broken["spec"]["hostIPC"] = True
    template = {"metadata": broken["metadata"], "spec": broken["spec"]}
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        obj = {"kind": kind, "spec": {"template": copy.deepcopy(template)}}
        assert [v.path for v in podsecurity.check(obj)] == ["spec.template.spec.hostIPC"]
    cron = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": template}}}}
    assert podsecurity.check(cron)[0].path == "spec.jobTemplate.spec.template.spec.hostIPC"
    assert podsecurity.check({"kind": "Service", "spec": {}}) == []
    assert "Host Namespaces" in str(podsecurity.check(cron)[0])


def test_every_rendered_pod_template_passes() -> None:
    objects = kubernetes.render(load_settings())
    workloads = [o for o in objects if podsecurity.pod_template(o) is not None]
    assert {o["kind"] for o in workloads} == {"StatefulSet", "Deployment"}
    for obj in workloads:
        assert podsecurity.check(obj) == [], obj["metadata"]["name"]
