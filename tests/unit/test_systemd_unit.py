"""deploy/systemd/hyos-supervisor.service on hosts whose Docker unit has another name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy/systemd/hyos-supervisor.service"


def unit_values(key: str) -> list[str]:
    text = UNIT.read_text()
    section = text.split("[Unit]", 1)[1].split("\n[", 1)[0]
    return [
        word
        for line in section.splitlines()
        if line.startswith(f"{key}=")
        for word in line.split("=", 1)[1].split()
    ]


def test_docker_is_wanted_and_ordered_before_never_required() -> None:
    assert unit_values("Requires") == []
    assert "docker.service" in unit_values("Wants")
    assert {"docker.service", "docker.socket"} <= set(unit_values("After"))


def test_the_unit_loads_on_a_host_without_docker_service(tmp_path: Path) -> None:
    """systemd's own loader (systemd-analyze verify) on a copy in which Docker's units
    have names no host has (as with snap's or Podman's): it must still load and start."""
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (Debian package systemd)")
        pytest.skip("needs systemd-analyze")
    entry = Path(sys.executable).with_name("hyos-supervisor")
    text = re.sub(r"\bdocker\.(service|socket)\b", r"no-such-docker.\1", UNIT.read_text())
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={entry}", text, flags=re.M)
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "no-such-docker" not in done.stderr
