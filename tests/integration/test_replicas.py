"""The replicas of HyOS's images have the facts of HyOS's own Dockerfiles where they can matter
to a supervisor: the base's filesystem layout (/var/run a link to /run, busybox's ash as
/bin/sh), the users and groups as busybox makes them, and the image's metadata. The facts
are read from ../shared/upstream/hyos (tests/upstream/dockerfile.py), so a change upstream
fails here instead of leaving the replica silently different.

Differences that are on purpose are named here, each with its reason."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.upstream.dashboard import MANAGER_IMAGE
from tests.upstream.dockerfile import ImageFacts, image_facts, upstream_dir
from tests.upstream.replica import REPLICA_IMAGE

pytestmark = pytest.mark.integration

# The server replica starts the fake Hytale cloud between tini and HyOS's command
# (tests/upstream/README.md: the login happens before Java, and nothing else runs then).
EXTRA_ENTRYPOINT = {"server": ("/opt/hyos-fakes/with-hytale-cloud",), "manager": ()}
IMAGES = {"manager": MANAGER_IMAGE, "server": REPLICA_IMAGE}


def _image(role: str) -> dict[str, Any]:
    result = subprocess.run(
        ["docker", "image", "inspect", IMAGES[role]], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        message = f"{IMAGES[role]} is not built (tests/upstream/build-{role}.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    found: dict[str, Any] = json.loads(result.stdout)[0]
    return found


def _inside(role: str, script: str) -> str:
    """A shell script run in the image by busybox, as root, with no network."""
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", "0:0",
         "--entrypoint", "/bin/busybox", IMAGES[role], "sh", "-c", script],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip


def _facts(role: str) -> ImageFacts:
    try:
        return image_facts(upstream_dir() / role / "Dockerfile")
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.mark.parametrize("role", ["manager", "server"])
def test_the_replica_has_the_metadata_of_hyos_dockerfile(role: str) -> None:
    facts, config = _facts(role), _image(role)["Config"]
    assert (config["User"], config["WorkingDir"]) == (facts.user, facts.workdir)
    assert tuple(config["Entrypoint"] or ()) == (*(facts.entrypoint or ()), *EXTRA_ENTRYPOINT[role])
    assert tuple(config["Cmd"]) == facts.cmd
    assert set(config["ExposedPorts"]) == facts.exposed
    health, want = config["Healthcheck"], facts.healthcheck
    assert want is not None
    assert tuple(health["Test"]) == want.test
    assert health["Interval"] == want.interval_s * 1e9
    assert health["Timeout"] == want.timeout_s * 1e9
    assert health["StartPeriod"] == want.start_period_s * 1e9
    assert health["Retries"] == want.retries
    env = dict(item.split("=", 1) for item in config["Env"])
    assert {k: env.get(k) for k in facts.env} == facts.env


@pytest.mark.parametrize("role", ["manager", "server"])
def test_the_replica_has_the_filesystem_of_hyos_base(role: str) -> None:
    facts, config = _facts(role), _image(role)["Config"]
    assert facts.base_family == "alpine"
    assert config["Labels"].get("io.hyos.replica.layout") == "alpine"
    out = _inside(role, "readlink /var/run; readlink -f /bin/sh; /bin/sh --help 2>&1 | head -n 1")
    var_run, shell, banner = out.splitlines()
    # Alpine (since 3.7) links /var/run to /run: a mount "at /var/run" lands on /run.
    assert var_run == "/run"
    # Alpine's /bin/sh is busybox's ash; a launcher that needs bash or dash fails here.
    assert shell.endswith("/busybox") and banner.startswith("BusyBox")


@pytest.mark.parametrize("role", ["manager", "server"])
def test_the_replica_has_the_users_and_groups_of_hyos_dockerfile(role: str) -> None:
    facts = _facts(role)
    out = _inside(role, "cat /etc/passwd; echo ---; cat /etc/group; echo ---; "
                  + "; ".join(f"stat -c '%n %u %g %a' {a.home}" for a in facts.accounts.values()))  # fmt: skip
    passwd_text, group_text, homes = out.split("---\n")
    passwd = {f[0]: f for f in (line.split(":") for line in passwd_text.splitlines())}
    group = {f[0]: f for f in (line.split(":") for line in group_text.splitlines())}
    for account in facts.accounts.values():
        entry = passwd[account.name]
        assert (int(entry[2]), int(entry[3]), entry[5], entry[6]) == (
            account.uid, account.gid, account.home, account.shell,
        )  # fmt: skip
        # busybox's adduser makes the home directory 2755, owned by the user and group.
        assert f"{account.home} {account.uid} {account.gid} 2755" in homes.splitlines()
    for name, gid in facts.groups.items():
        assert int(group[name][2]) == gid
    for name, users in facts.members.items():
        assert set(filter(None, group[name][3].split(","))) == users
    assert passwd["root"][2:4] == ["0", "0"]


def test_the_facts_come_from_hyos_source() -> None:
    """The check reads upstream's files, not a copy: both Dockerfiles exist there."""
    root: Path = upstream_dir()
    assert (root / "manager/Dockerfile").is_file() and (root / "server/Dockerfile").is_file()
