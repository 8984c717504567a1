"""Shared by every test: how many pytest-xdist workers `-n auto` starts, and which tests
must share one."""

from __future__ import annotations

import os
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

# Modules whose tests share a module-scoped stack (a compose project, a systemd box, a
# guard, a hardened manager): all their tests go to one worker, so it is built once.
WHOLE_MODULES = frozenset(
    f"tests/integration/{name}.py"
    for name in ("test_compose", "test_guard", "test_systemd", "test_upstream_manager_image")
)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Twice the CPUs (at most 8), or HYOS_TEST_WORKERS: the integration tests spend most of
    their time waiting on health intervals and timers, not on a CPU."""
    chosen = os.environ.get("HYOS_TEST_WORKERS")
    if chosen:
        return int(chosen)
    return min(8, 2 * (os.cpu_count() or 1))


class ModuleGroups(LoadScopeScheduling):
    """Each test on its own, except the WHOLE_MODULES, each of which is one unit of work.
    (xdist's own `--dist loadgroup` reads `xdist_group` marks by renaming node ids, which
    pytest 9.2's node ids no longer allow: it silently spread those modules over every
    worker, each building the module's stack again.)"""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if module in WHOLE_MODULES else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling:
    return ModuleGroups(config, log)
