"""The prepare step, secrets delivered as files, rotation and the manager's guard socket."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Stack, docker, inspect, wait_for

pytestmark = pytest.mark.integration

SECRETS = "/data/.hyos/secrets"


def read_secrets(stack: Stack) -> dict[str, str]:
    server = stack.container("server")
    names = docker("exec", server, "ls", SECRETS).stdout.split()
    return {n: docker("exec", server, "cat", f"{SECRETS}/{n}").stdout.strip() for n in names}


def test_root_owned_data_is_prepared_before_the_server_starts(stack: Stack) -> None:
    result = stack.up(HYOS_SERVER__IMAGE="hyos-test/server-rootdata:1")
    assert "is up (healthy)" in result.stdout
    owner = docker("exec", stack.container("server"), "stat", "-c", "%u:%g", "/data").stdout
    assert owner.strip() == "568:568"
    prepared = [
        json.loads(line) for line in result.stderr.splitlines() if '"prepare: prepared"' in line
    ]
    assert prepared and prepared[0]["result"]["failed"] == 0


def test_machine_id_is_read_only_and_survives_recreation(stack: Stack) -> None:
    stack.up()
    server = stack.container("server")
    first = docker("exec", server, "cat", "/etc/machine-id").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert docker("exec", server, "stat", "-c", "%a", "/etc/machine-id").stdout.strip() == "444"
    denied = docker("exec", server, "sh", "-c", "echo x > /etc/machine-id", check=False)
    assert denied.returncode != 0
    stack.up(HYOS_SERVER__IMAGE="hyos-test/server:2")  # drift: a new server container
    assert docker("exec", server, "cat", "/etc/machine-id").stdout.strip() == first


def test_a_failing_prepare_step_starts_nothing(stack: Stack) -> None:
    # An image without python3 cannot run the prepare step.
    result = stack.run("up", "--wait", HYOS_HELPER_IMAGE="hyos-test/server:1")
    assert result.returncode == 1
    assert "prepare step failed" in result.stderr and "nothing was started" in result.stderr
    assert stack.ids() == {}
    assert docker("ps", "-aq", "--filter", f"name={stack.name}-prepare").stdout.strip() == ""


def test_secret_files_are_private_and_never_exposed(stack: Stack) -> None:
    result = stack.up()
    server = stack.container("server")
    listing = docker("exec", server, "stat", "-c", "%n %u:%g %a", SECRETS, *(
        f"{SECRETS}/{n}" for n in ("api_client_id", "api_client_secret", "session_secret")
    )).stdout.splitlines()  # fmt: skip
    assert listing[0] == f"{SECRETS} 568:568 700"
    assert all(line.endswith(" 568:568 600") for line in listing[1:]), listing
    values = read_secrets(stack)
    assert len(values) == 3 and all(len(v) >= 43 for v in values.values())
    for role in ("server", "manager"):
        info = inspect(stack.container(role))
        exposed = json.dumps(
            [info["Config"].get(k) for k in ("Env", "Cmd", "Entrypoint")] + [info.get("Args")]
        )
        assert not any(v in exposed for v in values.values())
        assert f"API_CLIENT_SECRET_FILE={SECRETS}/api_client_secret" in info["Config"]["Env"]
    manager_env = inspect(stack.container("manager"))["Config"]["Env"]
    assert f"SESSION_SECRET_FILE={SECRETS}/session_secret" in manager_env
    logs = result.stdout + result.stderr
    assert not any(v in logs for v in values.values())


def test_a_supplied_secret_is_used_and_a_weak_one_refused(stack: Stack, tmp_path: Path) -> None:
    strong = tmp_path / "api_secret"
    strong.write_text("S3cure-operator-chosen-secret-value\n")
    result = stack.up(HYOS_API_CLIENT_SECRET_FILE=str(strong))
    assert read_secrets(stack)["api_client_secret"] == "S3cure-operator-chosen-secret-value"
    assert "S3cure" not in json.dumps(inspect(stack.container("server")))
    assert "S3cure" not in result.stdout + result.stderr
    weak = tmp_path / "weak"
    weak.write_text("changeme123\n")
    refused = stack.run("up", HYOS_API_CLIENT_SECRET_FILE=str(weak))
    assert refused.returncode == 78
    assert "api_client_secret_file" in refused.stderr and "known default" in refused.stderr


def test_weak_secret_creates_nothing(stack: Stack) -> None:
    refused = stack.run("up", HYOS_SESSION_SECRET="short")
    assert refused.returncode == 78
    assert "session_secret" in refused.stderr
    assert stack.leftovers() == []


def test_rotation_changes_values_leaves_no_old_value_and_stays_healthy(stack: Stack) -> None:
    stack.up()
    before = read_secrets(stack)
    result = stack.run("secrets", "rotate", "all")
    assert result.returncode == 0, result.stderr
    after = read_secrets(stack)
    assert after["api_client_id"] == before["api_client_id"]
    for name in ("api_client_secret", "session_secret"):
        assert after[name] != before[name]
        # No file in the volume holds the old value any more.
        found = docker(
            "run", "--rm", "-v", f"{stack.name}-data:/data", "hyos-test/server:1",
            "grep", "-r", "-l", "-F", before[name], "/data", check=False,
        )  # fmt: skip
        assert found.returncode == 1, found.stdout
    for role in ("server", "manager"):
        assert inspect(stack.container(role))["State"]["Health"]["Status"] == "healthy"
    assert not any(v in result.stdout + result.stderr for v in after.values())


def test_the_manager_reaches_docker_only_through_the_guard(stack: Stack, tmp_path: Path) -> None:
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "--log-format", "json", "run"],
        env=stack.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    socket_path = Path(stack.env["HYOS_GUARD_DIR"]) / stack.name / "docker.sock"

    def manager_sees_the_guard() -> bool:
        """The manager (once running) finds at /var/run/docker.sock the very guard socket."""
        seen = docker(
            "exec", stack.container("manager"), "stat", "-L", "-c", "%i", "/var/run/docker.sock",
            check=False,
        )  # fmt: skip
        return seen.returncode == 0 and int(seen.stdout) == socket_path.stat().st_ino

    try:
        deadline = time.monotonic() + 60
        while not socket_path.exists():
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            assert time.monotonic() < deadline, "the guard socket never appeared"
            time.sleep(0.2)
        mode = socket_path.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o660 and mode.st_gid == 568
        # The guard listens before the first pass creates the manager.
        assert wait_for(manager_sees_the_guard, 60, "the manager to see the guard socket")
        manager = inspect(stack.container("manager"))
        assert "DOCKER_HOST=unix:///var/run/docker.sock" in manager["Config"]["Env"]
        # HyOS's manager hard-codes /var/run/docker.sock: there it finds the guard's socket,
        # mounted as one read-only file; no directory of the image is covered.
        sockets = [m for m in manager["Mounts"] if "docker.sock" in m["Source"]]
        assert [(m["Source"], m["Destination"], m["RW"]) for m in sockets] == [
            (str(socket_path), "/var/run/docker.sock", False)
        ]
        assert not [m for m in manager["Mounts"] if m["Destination"] in ("/var/run", "/run")]
        env = {**os.environ, "DOCKER_HOST": f"unix://{socket_path}"}
        listed = subprocess.run(
            ["docker", "ps", "--format", "{{.Names}}"], env=env, capture_output=True, text=True
        )
        assert listed.stdout.split() == [stack.container("server")], listed.stderr
        denied = subprocess.run(["docker", "volume", "ls"], env=env, capture_output=True, text=True)
        assert denied.returncode != 0
        # A new daemon re-creates the socket; the manager, restarted by it, sees the new one,
        # not a dead inode.
        daemon.kill()
        daemon.wait(timeout=30)
        old_inode = socket_path.stat().st_ino
        daemon = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--log-format", "json", "run"],
            env=stack.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def recreated() -> bool:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            return socket_path.exists() and socket_path.stat().st_ino != old_inode

        wait_for(recreated, 60, "a re-created guard socket")
        assert wait_for(manager_sees_the_guard, 60, "the manager to see the new socket")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
        log.close()


def test_the_shim_gives_plain_variable_images_their_secret(stack: Stack) -> None:
    stack.up()
    server = stack.container("server")
    info = inspect(server)
    assert info["Config"]["Entrypoint"][:2] == ["/bin/sh", "/run/hyos-system/file-env.sh"]
    assert info["Config"]["Cmd"] == ["/bin/sh", "/server.sh"]  # the image's own command
    secret = read_secrets(stack)["api_client_secret"]
    # The workload saw the value in its environment...
    logs = docker("logs", server).stdout
    assert f"api client secret: set ({len(secret)} characters)" in logs
    # ...which docker inspect never shows.
    assert secret not in json.dumps(info)
    shim = docker("exec", server, "stat", "-c", "%u %a", "/run/hyos-system/file-env.sh").stdout
    assert shim.split() == ["0", "555"]
    denied = docker(
        "exec", server, "sh", "-c", "echo x >> /run/hyos-system/file-env.sh", check=False
    )
    assert denied.returncode != 0


def test_file_delivery_exports_nothing(stack: Stack) -> None:
    """`file` delivery: only X_FILE; the launcher still runs the image's own command (for
    the graceful stop) but exports no value."""
    stack.up(HYOS_SERVER__SECRET_DELIVERY="file")
    info = inspect(stack.container("server"))
    assert info["Config"]["Entrypoint"][:2] == ["/bin/sh", "/run/hyos-system/file-env.sh"]
    assert info["Config"]["Cmd"] == ["/bin/sh", "/server.sh"]
    assert not any(e.startswith("HYOS_FILE_ENV=") for e in info["Config"]["Env"])
    assert "api client secret: \n" in docker("logs", stack.container("server")).stdout + "\n"
