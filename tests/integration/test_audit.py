"""`audit` against live containers: a fresh stack passes, a hand-made privileged one fails."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Stack, docker, proc_status

pytestmark = pytest.mark.integration


def test_audit_fails_exactly_the_rules_a_privileged_container_breaks(stack: Stack) -> None:
    labels = {"io.hyos.managed": "true", "io.hyos.stack": stack.name}
    docker(
        "network", "create", *(f"--label={k}={v}" for k, v in labels.items()), f"{stack.name}-net"
    )
    # Hardened in every way but one: --privileged.
    docker(
        "run", "-d", "--name", stack.container("server"), "--privileged",
        "--user", "568:568", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
        "--read-only", "--tmpfs", "/tmp", "--memory", "64m", "--cpus", "0.5",
        "--pids-limit", "100", "--network", f"{stack.name}-net", "--init",
        "--log-opt", "max-size=1m",
        *(f"--label={k}={v}" for k, v in labels.items()),
        "--label", "io.hyos.role=server", "--label", "io.hyos.spec-hash=by-hand",
        "hyos-test/server:1",
    )  # fmt: skip
    # From the outside, the kernel agrees it is dangerous: every capability, no seccomp.
    status = proc_status(stack.container("server"))
    assert int(status["CapBnd"], 16) != 0 and status["Seccomp"] == "0"
    result = stack.run("audit", "--json")
    assert result.returncode == 1
    findings = json.loads(result.stdout)
    failed = {f["rule"] for f in findings if f["result"] == "FAIL"}
    assert failed == {"not-privileged", "capabilities", "no-devices", "seccomp"}
    by_rule = {f["rule"]: f for f in findings}
    assert by_rule["not-privileged"]["cis"] == "5.5"
    assert by_rule["not-privileged"]["fix"]
    table = stack.run("audit")
    assert table.returncode == 1
    assert "FAIL" in table.stdout and "4 failed" in table.stdout


def test_a_root_equivalent_capability_is_refused_then_allowed_loudly_and_failed_by_audit(
    stack: Stack,
) -> None:
    refused = stack.run("up", "--wait", HYOS_SERVER__CAP_ADD="SYS_ADMIN")
    assert refused.returncode == 78
    assert "allow_dangerous_capabilities" in refused.stderr
    assert stack.leftovers() == []  # nothing created
    env = {
        "HYOS_SERVER__CAP_ADD": "SYS_ADMIN",
        "HYOS_SERVER__ALLOW_DANGEROUS_CAPABILITIES": "true",
    }
    up = stack.up(**env)
    assert "amounts to root" in up.stderr  # the warning at start
    # The kernel agrees: the server's init holds CAP_SYS_ADMIN (bit 21) in its bounding set.
    status = proc_status(stack.container("server"))
    assert int(status["CapBnd"], 16) & (1 << 21)
    audit = stack.run("audit", "--json", env=env)
    assert audit.returncode == 1
    failed = [f for f in json.loads(audit.stdout) if f["result"] == "FAIL"]
    assert [(f["container"], f["rule"]) for f in failed] == [
        (stack.container("server"), "capabilities")
    ], failed
    assert "SYS_ADMIN" in failed[0]["detail"] and "amounts to root" in failed[0]["detail"]
