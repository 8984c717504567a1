"""compose.yaml on the real engine with Debian's docker-compose 1.29 (or Compose v2).

One compose project per module: `up -d` starts only the supervisor (the locally built
image), the supervisor brings up the stand-in server and manager hardened; the image's
HEALTHCHECK turns the supervisor healthy; the daemon runs as uid 568 with no
capabilities and no_new_privs; `down` stops the supervisor, which stops the stack
gracefully (the server saves its world) and leaves the data volume intact. Everything
the project and the stack created is removed afterwards, on failure too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.enginelock import once_per_run
from tests.harness import REPO, docker, inspect
from tests.integration.conftest import base_env
from tests.standin import remove_stack_objects

# One xdist worker runs the whole module: its module-scoped fixtures are built once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("compose")]

IMAGE = "hyos-supervisor:dev"
HYOS_UID = 568
GUARD_ROOT = Path("/run/hyos-supervisor")


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if docker("compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor the docker compose plugin is installed")


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float, describe: Callable[[], str]
) -> float:
    """Poll `probe` until true; returns the seconds it took, fails with `describe()`."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} not reached within {timeout:.0f} s: {describe()}")
        time.sleep(0.5)
    return time.monotonic() - started


def state(ref: str) -> dict[str, Any]:
    result = docker("inspect", ref, check=False)
    return json.loads(result.stdout)[0]["State"] if result.returncode == 0 else {}


def health(ref: str) -> str:
    return str(state(ref).get("Health", {}).get("Status", "missing"))


def proc_table(container: str) -> list[dict[str, str]]:
    """cmdline and /proc/PID/status fields of every process in the container."""
    script = (
        'for p in /proc/[0-9]*; do [ "$p" = /proc/self ] && continue; '
        'printf "cmdline:\\t%s\\n" "$(tr "\\0" " " < "$p/cmdline")"; cat "$p/status"; echo; done'
    )
    out = docker("exec", container, "sh", "-c", script).stdout
    table = []
    for block in out.split("\n\n"):
        fields = dict(line.split(":\t", 1) for line in block.splitlines() if ":\t" in line)
        if fields.get("Pid") and fields.get("Name") not in ("sh", "cat", "tr"):
            table.append(fields)
    return table


@dataclass
class ComposeProject:
    project: str
    stack: str
    env: dict[str, str]
    timings: dict[str, float]

    def compose(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env_file = self.env["HYOS_TEST_ENV_FILE"]
        return subprocess.run(
            [*compose_command(), "--env-file", env_file, "-p", self.project,
             "-f", str(REPO / "compose.yaml"), *args],
            capture_output=True, text=True, env=self.env, timeout=timeout, cwd=REPO,
        )  # fmt: skip

    @property
    def supervisor(self) -> str:
        """The supervisor container's id (compose v1 and v2 name it differently)."""
        ids = docker(
            "ps", "-aq", "--no-trunc",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", "label=com.docker.compose.service=supervisor",
        ).stdout.split()  # fmt: skip
        assert len(ids) == 1, f"expected one supervisor container, found {ids}"
        return ids[0]

    def workload(self, role: str) -> str:
        return f"{self.stack}-{role}"

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "40").stdout[-4000:]


@pytest.fixture(scope="module")
def supervisor_image() -> str:
    def build() -> None:
        out = subprocess.run(
            [str(REPO / "scripts/build-image.sh")],
            capture_output=True, text=True, timeout=900, env={**os.environ, "IMAGE": IMAGE},
        )  # fmt: skip
        assert out.returncode == 0, f"build-image.sh failed: {out.stderr[-2000:]}"

    once_per_run("supervisor-image-dev", build)
    return IMAGE


@pytest.fixture(scope="module")
def project(
    test_images: None, supervisor_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeProject]:
    token = uuid.uuid4().hex[:10]
    stack = f"t{token}"
    # An empty env file: a developer's .env next to compose.yaml must not leak in.
    env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    env_file.write_text("")
    env = base_env(stack)
    env.update(
        HYOS_SUPERVISOR_IMAGE=supervisor_image,
        HYOS_TEST_ENV_FILE=str(env_file),
        # The stand-ins stop in well under a second; keep the daemon's default otherwise.
        HYOS_SERVER__STOP_TIMEOUT="20",
    )
    handle = ComposeProject(f"hyosc{token}", stack, env, {})
    try:
        started = time.monotonic()
        up = handle.compose("up", "-d", "--no-build")
        handle.timings["up"] = time.monotonic() - started
        assert up.returncode == 0, up.stderr
        yield handle
    finally:
        handle.compose("down", "--volumes", "--timeout", "30")
        remove_stack_objects(stack)
        shutil.rmtree(GUARD_ROOT / stack, ignore_errors=True)


def test_up_starts_only_the_supervisor_which_starts_the_stack_healthy(
    project: ComposeProject,
) -> None:
    services = docker(
        "ps", "-a", "--filter", f"label=com.docker.compose.project={project.project}",
        "--format", '{{.Label "com.docker.compose.service"}}',
    ).stdout.split()  # fmt: skip
    assert services == ["supervisor"]

    def both_healthy() -> bool:
        return all(health(project.workload(r)) == "healthy" for r in ("server", "manager"))

    took = wait_for(
        "server and manager healthy",
        both_healthy,
        120,
        lambda: (
            f"server={health(project.workload('server'))} "
            f"manager={health(project.workload('manager'))}\n{project.logs()}"
        ),
    )
    project.timings["workloads healthy"] = took
    for role in ("server", "manager"):
        info = inspect(project.workload(role))
        assert info["Config"]["Labels"]["io.hyos.stack"] == project.stack
        assert info["Config"]["Labels"]["io.hyos.role"] == role
        # The docker socket went to the supervisor alone; the manager has the guard's.
        sockets = {m["Source"] for m in info["Mounts"] if "docker.sock" in m.get("Source", "")}
        guard = {f"/run/hyos-supervisor/{project.stack}/docker.sock"}
        assert sockets == (guard if role == "manager" else set()), role
        assert info["HostConfig"]["CapDrop"] == ["ALL"]


def test_image_healthcheck_turns_the_supervisor_healthy(project: ComposeProject) -> None:
    container = project.supervisor
    took = wait_for(
        "supervisor container healthy",
        lambda: health(container) == "healthy",
        90,
        lambda: f"{json.dumps(state(container).get('Health'))[-1500:]}\n{project.logs()}",
    )
    project.timings["supervisor healthy"] = took
    log = state(container)["Health"]["Log"]
    assert log[-1]["ExitCode"] == 0 and "healthy" in log[-1]["Output"]


def test_supervisor_container_is_hardened_and_the_daemon_unprivileged(
    project: ComposeProject,
) -> None:
    container = project.supervisor
    host = inspect(container)["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert set(host["CapAdd"]) <= {"CHOWN", "DAC_READ_SEARCH", "SETUID", "SETGID"}
    assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"])
    assert host["NetworkMode"] == "none"
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    socket_gid = os.stat("/var/run/docker.sock").st_gid

    table = proc_table(container)
    pid1 = next(p for p in table if p["Pid"] == "1")
    daemon = [p for p in table if "hyos-supervisor run" in p["cmdline"] and p["Pid"] != "1"]
    assert daemon, f"no hyos-supervisor process: {[p['cmdline'] for p in table]}"
    # PID 1 is the entrypoint's init: it dropped privileges before spawning the daemon.
    for proc in (pid1, *daemon):
        assert proc["Uid"].split() == [str(HYOS_UID)] * 4, proc["cmdline"]
        assert proc["Gid"].split() == [str(HYOS_UID)] * 4, proc["cmdline"]
        assert int(proc["CapEff"], 16) == 0, proc["cmdline"]
        assert int(proc["CapPrm"], 16) == 0, proc["cmdline"]
        assert int(proc["CapAmb"], 16) == 0, proc["cmdline"]
        assert proc["NoNewPrivs"].strip() == "1", proc["cmdline"]
        assert str(socket_gid) in proc["Groups"].split(), proc["cmdline"]
    # The state dir is private to the daemon.
    listing = docker("exec", container, "stat", "-c", "%u %a", "/var/lib/hyos-supervisor")
    assert listing.stdout.split() == [str(HYOS_UID), "700"]


def test_down_stops_the_stack_gracefully_and_keeps_the_data(project: ComposeProject) -> None:
    def is_running(role: str) -> Callable[[], bool]:
        return lambda: bool(state(project.workload(role)).get("Running"))

    for role in ("server", "manager"):
        wait_for(f"{role} running", is_running(role), 120, project.logs)
    supervisor = project.supervisor
    started = time.monotonic()
    down = project.compose("down", "--timeout", "90")
    project.timings["down"] = time.monotonic() - started
    assert down.returncode == 0, down.stderr
    assert docker("inspect", supervisor, check=False).returncode != 0, "supervisor not removed"

    # The daemon stopped the stack on its way out (and does not remove it: adoption on
    # the next `up`); nothing of the stack keeps running.
    running = docker("ps", "-q", "--filter", f"label=io.hyos.stack={project.stack}").stdout
    assert running.split() == []
    server = state(project.workload("server"))
    assert server["Status"] == "exited"
    assert server["ExitCode"] == 0, "the server was killed, not stopped gracefully"
    assert state(project.workload("manager"))["Status"] == "exited"

    # The data volume survives `down` and holds the world save made on SIGTERM.
    volume = f"{project.stack}-data"
    assert docker("volume", "inspect", volume, check=False).returncode == 0
    marker = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "cat",
        "-v", f"{volume}:/data:ro", IMAGE, "/data/saved-marker",
    )  # fmt: skip
    assert marker.stdout.startswith("saved "), marker.stderr
    print(f"compose timings: {json.dumps({k: round(v, 1) for k, v in project.timings.items()})}")


def test_the_documented_cleanup_after_down_removes_containers_and_network_keeps_data(
    project: ComposeProject,
) -> None:
    """README: `compose down` leaves the stopped workloads and the network (the supervisor
    cannot tell `down` from a host shutdown); `compose run --rm supervisor hyos-supervisor
    down` removes them and keeps the data volume."""
    network = f"{project.stack}-net"
    left = docker("ps", "-aq", "--filter", f"label=io.hyos.stack={project.stack}").stdout
    assert len(left.split()) == 2, "compose down should leave server and manager, stopped"
    assert docker("network", "inspect", network, check=False).returncode == 0
    cleanup = project.compose("run", "--rm", "supervisor", "hyos-supervisor", "down")
    assert cleanup.returncode == 0, cleanup.stderr
    assert f"stack {project.stack} is down" in cleanup.stdout, cleanup.stdout
    assert docker("ps", "-aq", "--filter", f"label=io.hyos.stack={project.stack}").stdout == ""
    assert docker("network", "inspect", network, check=False).returncode != 0
    assert docker("volume", "inspect", f"{project.stack}-data", check=False).returncode == 0
    # `run --rm` leaves no supervisor container behind either.
    assert (
        docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={project.project}"
        ).stdout.split()
        == []
    )
