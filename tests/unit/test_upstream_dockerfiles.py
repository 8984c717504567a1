"""The facts read from HyOS's own Dockerfiles (tests/upstream/dockerfile.py), which the
replicas are checked against (tests/integration/test_replicas.py). A change upstream shows up
here first, as a failing test, rather than as a silent difference in a replica."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.upstream.dockerfile import Account, Healthcheck, image_facts, upstream_dir


@pytest.fixture(scope="module")
def upstream() -> Path:
    try:
        return upstream_dir()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_the_manager_dockerfile(upstream: Path) -> None:
    facts = image_facts(upstream / "manager/Dockerfile")
    assert facts.base_family == "alpine" and facts.base == "node:22-alpine"
    assert (facts.user, facts.workdir) == ("nextjs", "/app")
    assert (facts.entrypoint, facts.cmd) == (None, ("node", "server.js"))
    assert facts.exposed == {"3000/tcp"}
    assert facts.healthcheck == Healthcheck(
        ("CMD-SHELL", "wget --no-verbose --tries=1 --spider http://127.0.0.1:3000/api/health || exit 1"),
        30.0, 10.0, 60.0, 3,
    )  # fmt: skip
    assert facts.groups == {"nodejs": 568}
    # busybox: a --system user without --ingroup is put in nogroup, with shell /bin/false.
    assert facts.accounts == {"nextjs": Account("nextjs", 568, 65533, "/home/nextjs", "/bin/false")}
    assert facts.members == {"nodejs": set(), "nogroup": {"nextjs"}}
    assert facts.env["PORT"] == "3000" and facts.env["HOSTNAME"] == "0.0.0.0"
    assert "APP_VERSION" not in facts.env  # a builder stage's, not the runner's


def test_the_server_dockerfile(upstream: Path) -> None:
    facts = image_facts(upstream / "server/Dockerfile")
    assert facts.base_family == "alpine"
    assert (facts.user, facts.workdir) == ("", "/data")
    assert facts.entrypoint == ("/sbin/tini", "--")
    assert facts.cmd == ("/bin/bash", "/opt/scripts/entrypoint.sh")
    assert facts.exposed == {"5520/udp", "30381/tcp"}
    assert facts.healthcheck == Healthcheck(
        ("CMD-SHELL", "/opt/scripts/healthcheck.sh || exit 1"), 30.0, 10.0, 180.0, 3
    )
    assert facts.groups == {"hytale": 568}
    assert facts.accounts == {"hytale": Account("hytale", 568, 568, "/home/hytale", "/bin/bash")}
    assert facts.members == {"hytale": {"hytale"}}
    assert facts.env["API_CLIENT_SECRET"] == "" and facts.env["SERVER_NAME"] == "Hytale Server"
    assert facts.env["HOME"] == "/home/hytale" and facts.env["DATA_DIR"] == "/data"
