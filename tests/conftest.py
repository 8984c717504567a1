"""Shared by every test: how many pytest-xdist workers `-n auto` starts."""

from __future__ import annotations

import os

import pytest


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Twice the CPUs (at most 8), or HYOS_TEST_WORKERS: the integration tests spend most of
    their time waiting on health intervals and timers, not on a CPU."""
    chosen = os.environ.get("HYOS_TEST_WORKERS")
    if chosen:
        return int(chosen)
    return min(8, 2 * (os.cpu_count() or 1))
