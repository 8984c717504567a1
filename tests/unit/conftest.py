"""Shared by every unit test: the anyio backend, an environment without the settings'
variables, and the `network` marker's switch."""

from __future__ import annotations

import os

import pytest

# What the settings and the log setup read from the environment. The harness's own
# HYOS_TEST_* variables (the checkov cache) stay.
CLEARED = ("DOCKER_HOST", "JOURNAL_STREAM")
NETWORK = "HYOS_TEST_NETWORK"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings_variables() -> list[str]:
    """The variables of this process the settings (or the log format) would read."""
    return [
        name
        for name in os.environ
        if (name.startswith("HYOS_") and not name.startswith("HYOS_TEST_")) or name in CLEARED
    ]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every unit test starts from the defaults: no HYOS_*, DOCKER_HOST or JOURNAL_STREAM
    of the shell it runs in; a test sets what it needs with monkeypatch."""
    for name in settings_variables():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def network_switch(request: pytest.FixtureRequest) -> None:
    """`network` tests install from a package index: they run with HYOS_TEST_NETWORK=1
    (.ci/run sets it) and are skipped with the reason without it, except under CI=true,
    where they fail instead (CI never passes by skipping them)."""
    if request.node.get_closest_marker("network") is None or os.environ.get(NETWORK) == "1":
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {NETWORK} is not 1: this network test would not run")
    pytest.skip(f"installs from a package index: set {NETWORK}=1 to run it")
