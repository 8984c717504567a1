"""deploy/systemd/metrics.conf, the drop-in a metrics listener needs under systemd: the unit
still loads with it, it opens only what a loopback listener needs, and the exposure score
SECURITY.md gives is what systemd computes."""

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
DROP_IN = ROOT / "deploy/systemd/metrics.conf"


def settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")


def test_the_drop_in_opens_loopback_only() -> None:
    found = settings(DROP_IN.read_text())
    assert found == {
        "PrivateNetwork": "no",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "IPAddressDeny": "any",
        "IPAddressAllow": "localhost",
    }
    assert "[Service]" in DROP_IN.read_text()


def analyze(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (Debian package systemd)")
        pytest.skip("needs systemd-analyze")
    entry = Path(sys.executable).with_name("hyos-supervisor")
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={entry}", UNIT.read_text(), flags=re.M)
    (tmp_path / UNIT.name).write_text(text)
    drop_ins = tmp_path / f"{UNIT.name}.d"
    drop_ins.mkdir(exist_ok=True)
    shutil.copy(DROP_IN, drop_ins / DROP_IN.name)
    return subprocess.run(
        ["systemd-analyze", *args, str(tmp_path / UNIT.name)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_unit_loads_with_the_drop_in(tmp_path: Path) -> None:
    done = analyze(tmp_path, "verify")
    assert done.returncode == 0, done.stderr


def test_the_exposure_with_the_drop_in_is_what_security_md_says(tmp_path: Path) -> None:
    done = analyze(tmp_path, "security", "--offline=yes")
    assert done.returncode == 0, done.stderr
    # The drop-in was read: the network is open (without it: "has access to no network").
    assert "Service has access to the host's network" in done.stdout
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found is not None, done.stdout
    assert found.group(1) == "1.2"
    assert "**1.2 OK**" in (ROOT / "SECURITY.md").read_text()
