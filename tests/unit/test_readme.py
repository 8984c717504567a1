"""The README's configuration reference names every setting there is."""

from __future__ import annotations

import re
from pathlib import Path

from supervisor.settings import HealthcheckOverride, RestartSettings, ServiceSettings, Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_top_level_setting_is_documented() -> None:
    nested = {"server", "manager", "restart"}
    missing = [
        name
        for name in Settings.model_fields
        if name not in nested and f"HYOS_{name.upper().removesuffix('_FILE')}" not in README
    ]
    assert missing == []


def test_every_service_restart_and_healthcheck_setting_is_documented() -> None:
    missing = [f"service {n}" for n in ServiceSettings.model_fields if f"`{n}`" not in README]
    missing += [
        f"restart {n}" for n in RestartSettings.model_fields if f"restart.{n}" not in README
    ]
    missing += [
        f"healthcheck {n}" for n in HealthcheckOverride.model_fields if f".{n}" not in README
    ]
    assert missing == []


def test_every_test_security_md_cites_exists() -> None:
    root = Path(__file__).resolve().parents[2]
    cited = set(re.findall(r"\b(test_[a-z0-9_]+)\b", (root / "SECURITY.md").read_text()))
    defined = set()
    for path in (root / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", path.read_text(), re.M))
    # File names are cited too (e.g. test_stack.py): those count as existing.
    files = {path.stem for path in (root / "tests").rglob("test_*.py")}
    assert sorted(cited - defined - files) == []
