"""deploy/systemd/hyos-supervisor.service under a real systemd.

A Debian container with systemd as PID 1 (tests/images/build-systemd.sh, cached by the
hash of its inputs) gets the unit exactly as shipped, the host engine's socket, the guard
directory bind-mounted at the same path as on the host (the engine resolves bind sources
there) and this checkout at /opt/hyos-src. It shows, through systemd's own tools:
- the unit starts on a host without docker.service (Wants=, not Requires=);
- READY and STATUS arrive by sd_notify (`systemctl show`);
- the journal gets plain lines, no JSON, with syslog priorities (`journalctl -p warning`,
  PRIORITY in `-o json`);
- a failed start is exactly one `err` line (what failed, Docker's message, the likely fix)
  and exit status 1.
Everything it creates is removed afterwards, except the cached image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO, poll
from tests.integration.conftest import docker
from tests.standin import MANAGER_IMAGE, SERVER_IMAGE, remove_stack_objects

# One xdist worker runs the whole module: its module-scoped fixtures are built once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("systemd")]

UNIT = "hyos-supervisor.service"
GUARD_ROOT = Path("/run/hyos-supervisor")  # the unit's RuntimeDirectory, shared with the host
HOST_SOCKET = Path("/var/run/docker.sock")


def _prerequisites() -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (debootstrap, chroot)")
    for tool in ("docker", "debootstrap", "chroot"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if shutil.which("docker") and docker("version", check=False).returncode != 0:
        missing.append("a Docker engine that answers")
    if not HOST_SOCKET.is_socket():
        missing.append(str(HOST_SOCKET))
    if not Path("/sys/fs/cgroup").is_dir():
        missing.append("/sys/fs/cgroup")
    return missing


@dataclass
class Box:
    """The systemd container."""

    name: str

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = docker("exec", self.name, *args, check=False, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}: {done.stderr}{done.stdout}")
        return done.stdout

    def show(self, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", "-p", ",".join(props), UNIT)
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> list[dict[str, Any]]:
        out = self.run("journalctl", "--no-pager", "-o", "json", *args)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def configure(self, stack: str, **extra: str) -> None:
        settings = {
            "HYOS_STACK": stack,
            "HYOS_SERVER__IMAGE": SERVER_IMAGE,
            "HYOS_MANAGER__IMAGE": MANAGER_IMAGE,
            "HYOS_SERVER__MEMORY": "128m",
            "HYOS_MANAGER__MEMORY": "64m",
            "HYOS_SERVER__CPUS": "0.5",
            "HYOS_MANAGER__CPUS": "0.5",
            "HYOS_SERVER__STOP_TIMEOUT": "10",
            "HYOS_SERVER__PORTS": '["127.0.0.1:0:5520/udp"]',
            "HYOS_MANAGER__PORTS": '["127.0.0.1:0:3000"]',
            "HYOS_PULL": "never",
            "HYOS_DOCKER_RETRIES": "2",
            **extra,
        }
        text = "".join(f"{key}={value}\n" for key, value in settings.items())
        done = subprocess.run(
            ["docker", "exec", "-i", self.name, "sh", "-c",
             "umask 027 && cat > /etc/hyos-supervisor/env"],
            input=text, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def box(test_images: None) -> Iterator[Box]:
    missing = _prerequisites()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the systemd test needs: {', '.join(missing)}")
        pytest.skip(f"needs: {', '.join(missing)}")
    built = subprocess.run(
        ["bash", str(REPO / "tests/images/build-systemd.sh")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    image = built.stdout.split()[-1]
    GUARD_ROOT.mkdir(parents=True, exist_ok=True)
    name = f"hyos-systemd-{uuid.uuid4().hex[:10]}"
    try:
        docker(
            "run", "-d", "--name", name,
            "--cap-add", "SYS_ADMIN", "-v", "/sys/fs/cgroup:/sys/fs/cgroup",
            "--tmpfs", "/run", "--tmpfs", "/tmp", "--network", "none",
            "-v", f"{HOST_SOCKET}:/run/docker.sock",
            "-v", f"{GUARD_ROOT}:{GUARD_ROOT}",
            "-v", f"{REPO}:/opt/hyos-src:ro",
            image,
        )  # fmt: skip
        handle = Box(name)

        def booted() -> bool:
            state = handle.run("systemctl", "is-system-running", check=False).strip()
            return state in ("running", "degraded")

        poll(booted, 60, "systemd to boot in the container")
        # SupplementaryGroups=docker: the group that owns the host's socket.
        gid = HOST_SOCKET.stat().st_gid
        handle.run("groupadd", "--non-unique", "--gid", str(gid), "docker")
        handle.run("mkdir", "-p", "/etc/hyos-supervisor")
        docker("cp", str(REPO / "deploy/systemd" / UNIT), f"{name}:/etc/systemd/system/{UNIT}")
        handle.run("systemctl", "daemon-reload")
        yield handle
    finally:
        docker("rm", "-f", "-v", name, check=False)


@pytest.fixture(scope="module")
def supervised(box: Box) -> Iterator[str]:
    """The unit started for a stand-in stack; stopped and the stack removed afterwards."""
    stack = f"t{uuid.uuid4().hex[:10]}"
    box.configure(stack)
    try:
        box.run("systemctl", "start", UNIT, timeout=180)
        yield stack
    finally:
        box.run("systemctl", "stop", UNIT, check=False, timeout=120)
        remove_stack_objects(stack)
        shutil.rmtree(GUARD_ROOT / stack, ignore_errors=True)


def test_the_shipped_unit_starts_without_docker_service_and_reports_ready_and_status(
    box: Box, supervised: str
) -> None:
    assert box.run("systemctl", "cat", UNIT).count("Requires=docker.service") == 0
    assert (
        box.run("systemctl", "list-unit-files", "docker.service", check=False).count(
            "docker.service"
        )
        == 0
    ), "the container must not have a docker.service"
    # `systemctl start` of a Type=notify unit returned: READY=1 arrived.
    shown = box.show("ActiveState", "SubState", "Type", "StatusText")
    assert (shown["ActiveState"], shown["SubState"], shown["Type"]) == (
        "active",
        "running",
        "notify",
    )

    def healthy_status() -> bool:
        status = box.show("StatusText")["StatusText"]
        return status == "server=running(healthy) manager=running(healthy)"

    poll(healthy_status, 60, "STATUS= showing both services healthy")


def test_the_journal_gets_plain_lines_with_syslog_priorities(box: Box, supervised: str) -> None:
    poll(
        lambda: "manager=running(healthy)" in box.show("StatusText")["StatusText"],
        60,
        "the stack healthy",
    )
    # A crash the daemon did not ask for is a warning.
    docker("kill", f"{supervised}-server")
    pid = box.show("MainPID")["MainPID"]

    def ours() -> list[dict[str, Any]]:
        return [e for e in box.journal("-u", UNIT) if e.get("_PID") == pid]

    def exited() -> list[dict[str, Any]]:
        return [
            e
            for e in ours()
            if "exited" in str(e.get("MESSAGE")) and "137" in str(e.get("MESSAGE"))
        ]

    (warning,) = poll(exited, 30, "the server's exit in the journal")
    lines = ours()
    messages = [str(e.get("MESSAGE")) for e in lines]
    assert not [m for m in messages if m.lstrip().startswith("{")], "JSON in the journal"
    assert not [m for m in messages if m.startswith("<")], "a priority prefix journald kept"
    by_message = {
        m.split(" stack=")[0]: e["PRIORITY"] for m, e in zip(messages, lines, strict=True)
    }
    assert by_message["INFO supervisor.daemon: supervising"] == "6"
    assert warning["PRIORITY"] == "4"
    assert str(warning["MESSAGE"]).startswith("WARNING supervisor.daemon: exited stack=")
    assert "exit_code=137" in str(warning["MESSAGE"])
    # journalctl -p warning: the warning, and no info line.
    filtered = [e for e in box.journal("-u", UNIT, "-p", "warning") if e.get("_PID") == pid]
    assert warning["MESSAGE"] in [e["MESSAGE"] for e in filtered]
    assert all(int(e["PRIORITY"]) <= 4 for e in filtered)
    assert not [e for e in filtered if "supervising" in str(e["MESSAGE"])]


def test_a_failed_start_is_one_err_line_and_exit_status_1(box: Box, supervised: str) -> None:
    """The guard directory in a place the engine's host does not have (the container's
    own state directory): Docker refuses the manager's bind mount."""
    box.run("systemctl", "stop", UNIT, timeout=120)
    stack = f"t{uuid.uuid4().hex[:10]}"
    guard = "/var/lib/hyos-supervisor/guard"
    box.configure(stack, HYOS_GUARD_DIR=guard)
    try:
        started = docker("exec", box.name, "systemctl", "start", UNIT, check=False, timeout=180)
        assert started.returncode != 0, "the start should have failed"
        shown = box.show("ExecMainStatus", "ExecMainCode", "ExecMainPID", "Result")
        # Restart=on-failure would try again in 5 s: not here.
        box.run("systemctl", "stop", UNIT, timeout=120)
        assert (shown["Result"], shown["ExecMainCode"], shown["ExecMainStatus"]) == (
            "exit-code",
            "1",  # CLD_EXITED
            "1",  # README: the stack could not be brought to the asked state
        )
        pid = shown["ExecMainPID"]

        def lines() -> list[dict[str, Any]]:
            return [e for e in box.journal("-u", UNIT) if e.get("_PID") == pid]

        errors = poll(
            lambda: [e for e in lines() if int(e["PRIORITY"]) <= 3], 15, "the failure line"
        )
        (failure,) = errors
        assert failure["MESSAGE"] == (
            f"hyos-supervisor: could not create container {stack}-manager: invalid mount config "
            f'for type "bind": bind source path does not exist: {guard}/{stack}/docker.sock; the guard '
            f"directory {guard} must exist on the host where the Docker engine runs, at the "
            f"same path (a supervisor in a container needs -v {guard}:{guard})"
        )
        text = "\n".join(str(e.get("MESSAGE")) for e in lines())
        assert "Traceback" not in text and "ExceptionGroup" not in text
    finally:
        remove_stack_objects(stack)
