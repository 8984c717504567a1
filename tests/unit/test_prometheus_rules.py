"""deploy/prometheus/: the alerting rules pass `promtool check rules`, their unit tests
pass `promtool test rules`, and every metric they name is one the daemon serves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.promtool import promtool
from tests.unit.test_metrics import busy_holdings, page, types

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "hyos-supervisor.rules.yml"
REQUIRED = {"HyosSupervisorDown", "HyosCrashLoop", "HyosNeedsAuth", "HyosBackupStale",
            "HyosUpdateRolledBack"}  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, cwd=RULES_DIR
    )


def test_the_rules_pass_promtool_check_rules() -> None:
    done = run("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(REQUIRED)} rules found" in done.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    done = run("test", "rules", "hyos-supervisor.rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_required_alert_is_there_and_tested() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == REQUIRED
    tests = yaml.safe_load((RULES_DIR / "hyos-supervisor.rules.test.yml").read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert firing == REQUIRED


def test_the_rules_name_only_metrics_the_daemon_serves() -> None:
    served = set(types(page(busy_holdings()).decode()))
    named = set(re.findall(r"\bhyos_[a-z0-9_]+", RULES.read_text()))
    assert named and named <= served, named - served
