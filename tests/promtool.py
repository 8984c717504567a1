"""Debian's promtool (package `prometheus`) for the tests that check what Prometheus
reads: the metrics page (`check metrics`) and the shipped alerting rules (`check rules`,
`test rules`). Skipped with the reason on a machine without it; a failure under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (Debian package prometheus)")
        pytest.skip("needs promtool (Debian package prometheus)")
    return found


def check_metrics(text: bytes) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on a page: exit 0 and no output is 0 findings."""
    return subprocess.run(
        [promtool(), "check", "metrics"],
        input=text.decode(),
        capture_output=True,
        text=True,
        timeout=60,
    )
