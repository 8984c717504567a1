"""Foundation: a hardened stack brought up, adopted and torn down on a real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import Stack, docker, inspect, proc_status

pytestmark = pytest.mark.integration


def test_up_wait_gives_two_healthy_hardened_containers(stack: Stack) -> None:
    result = stack.up()
    assert f"stack {stack.name} is up (healthy)" in result.stdout
    for role in ("server", "manager"):
        name = stack.container(role)
        info = inspect(name)
        assert info["State"]["Health"]["Status"] == "healthy"
        host = info["HostConfig"]
        assert info["Config"]["User"] == "568:568"
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
        assert list(info["NetworkSettings"]["Networks"]) == [f"{stack.name}-net"]
        assert info["Config"]["Labels"]["io.hyos.role"] == role
        # From inside: the kernel's view of PID 1 (the init) and of the workload.
        status = proc_status(name)
        assert status["Uid"].split()[0] != "0"
        assert int(status["CapEff"], 16) == 0
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == "2"
        denied = docker("exec", name, "touch", "/written-to-root", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
        # /tmp is a private tmpfs owned by the workload's uid.
        stat = docker("exec", name, "stat", "-c", "%u:%g %a", "/tmp").stdout.split()
        assert stat == ["568:568", "700"]
    # The API port is not published; the manager only on loopback.
    server_ports = inspect(stack.container("server"))["HostConfig"]["PortBindings"]
    assert "30381/tcp" not in server_ports
    manager_ports = inspect(stack.container("manager"))["HostConfig"]["PortBindings"]
    assert manager_ports["3000/tcp"][0]["HostIp"] == "127.0.0.1"
    audit = stack.run("audit")
    assert audit.returncode == 0, audit.stdout
    assert " 0 failed" in audit.stdout


def test_second_up_keeps_the_same_containers(stack: Stack) -> None:
    stack.up()
    before = stack.ids()
    again = stack.up()
    assert "nothing changed" in again.stdout
    assert stack.ids() == before


def test_drift_recreates_only_that_container_and_keeps_data(stack: Stack) -> None:
    stack.up()
    before = stack.ids()
    docker("exec", stack.container("server"), "sh", "-c", "echo world-1 > /data/world.txt")
    # A new image tag is drift for the server alone.
    stack.up(HYOS_SERVER__IMAGE="hyos-test/server:2")
    after = stack.ids()
    assert after["server"] != before["server"]
    assert after["manager"] == before["manager"]
    world = docker("exec", stack.container("server"), "cat", "/data/world.txt").stdout
    assert world.strip() == "world-1"
    # Memory is drift for the manager alone.
    stack.up(HYOS_SERVER__IMAGE="hyos-test/server:2", HYOS_MANAGER__MEMORY="96m")
    final = stack.ids()
    assert final["server"] == after["server"]
    assert final["manager"] != after["manager"]
    assert inspect(stack.container("manager"))["HostConfig"]["Memory"] == 96 * 1024**2


def test_down_keeps_the_volume_and_down_volumes_removes_it(stack: Stack) -> None:
    stack.up()
    docker("exec", stack.container("server"), "sh", "-c", "echo kept > /data/kept.txt")
    down = stack.run("down")
    assert down.returncode == 0, down.stderr
    assert stack.ids() == {}
    assert docker("network", "inspect", f"{stack.name}-net", check=False).returncode != 0
    # The graceful stop let the stand-in save its world.
    saved = docker(
        "run", "--rm", "-v", f"{stack.name}-data:/data", "hyos-test/server:1",
        "cat", "/data/kept.txt", "/data/saved-marker",
    ).stdout  # fmt: skip
    assert saved.startswith("kept\nsaved ")
    down = stack.run("down", "--volumes")
    assert down.returncode == 0, down.stderr
    assert docker("volume", "inspect", f"{stack.name}-data", check=False).returncode != 0


INVALID = {
    "negative memory": ({"HYOS_SERVER__MEMORY": "-1g"}, "server.memory"),
    "unparsable memory": ({"HYOS_MANAGER__MEMORY": "lots"}, "manager.memory"),
    "manager as root": ({"HYOS_MANAGER__USER": "0:0"}, "manager.user"),
    "server as root": ({"HYOS_SERVER__USER": "0:568"}, "server.user"),
    "bad image": ({"HYOS_SERVER__IMAGE": "Not An Image"}, "server.image"),
    "port out of range": ({"HYOS_MANAGER__PORTS": '["127.0.0.1:70000:3000"]'}, "manager.ports"),
    "missing config file": ({"HYOS_CONFIG": "/nonexistent/hyos.toml"}, "config"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_settings_exit_78_and_create_nothing(stack: Stack, case: str) -> None:
    env, field = INVALID[case]
    result = stack.run("up", "--wait", env=env)
    assert result.returncode == 78
    lines = [line for line in result.stderr.splitlines() if "config error" in line]
    assert len(lines) == 1 and field in lines[0], result.stderr
    assert stack.leftovers() == []


def test_unknown_toml_key_exits_78_and_creates_nothing(stack: Stack, tmp_path: Path) -> None:
    stack.config = tmp_path / "hyos.toml"
    stack.config.write_text('[server]\nmemroy = "1g"\n')
    result = stack.run("up")
    assert result.returncode == 78
    assert "server.memroy: unknown setting" in result.stderr
    assert stack.leftovers() == []


def test_a_foreign_container_with_our_name_is_refused(stack: Stack) -> None:
    foreign = docker(
        "create", "--name", stack.container("server"), "hyos-test/server:1"
    ).stdout.strip()
    result = stack.run("up")
    assert result.returncode == 1
    assert "is not managed by stack" in result.stderr
    assert inspect(foreign)["Config"]["Labels"].get("io.hyos.managed") is None
    assert stack.ids() == {}
    assert docker("network", "inspect", f"{stack.name}-net", check=False).returncode != 0


def test_unreachable_docker_is_one_clear_line(stack: Stack) -> None:
    result = stack.run("status", HYOS_DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert result.returncode == 69
    assert "cannot reach Docker at unix:///nonexistent/docker.sock" in result.stderr


def test_missing_image_names_the_image_and_creates_nothing(stack: Stack) -> None:
    result = stack.run("up", HYOS_SERVER__IMAGE="hyos-test/absent:1", HYOS_PULL="missing")
    assert result.returncode == 1
    assert "hyos-test/absent:1" in result.stderr
    assert stack.leftovers() == []


def test_up_wait_reports_an_exit_with_the_last_log_lines(stack: Stack) -> None:
    volume = f"{stack.name}-data"
    docker("volume", "create", volume)
    docker(
        "run", "--rm", "--user", "568:568", "-v", f"{volume}:/data", "hyos-test/server:1",
        "sh", "-c", "mkdir -p /data/control && echo 3 > /data/control/exit",
    )  # fmt: skip
    result = stack.run("up", "--wait", "--timeout", "60")
    assert result.returncode == 1
    assert "server exited with code 3" in result.stderr
    assert "exiting with code 3 as told" in result.stderr
    # The manager is created but never started without a healthy server.
    manager = stack.ids().get("manager")
    assert manager is None or inspect(manager)["State"]["StartedAt"].startswith("0001")


def test_status_json_reports_each_service(stack: Stack) -> None:
    stack.up()
    result = stack.run("status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["service"]: row for row in json.loads(result.stdout)["services"]}
    assert rows["server"]["state"] == "running" and rows["server"]["health"] == "healthy"
    assert rows["manager"]["image"] == "hyos-test/manager:1"
    assert rows["server"]["uptime_s"] >= 0 and rows["server"]["exit_code"] is None


def test_restart_without_a_daemon_starts_it_and_forgets_its_saved_state(stack: Stack) -> None:
    stack.up()
    server = stack.container("server")
    docker("stop", "-t", "10", server)
    # What a daemon that ran earlier left: accounting for both services.
    state = Path(stack.env["HYOS_STATE_DIR"]) / f"{stack.name}.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    saved = {"restart": {"status": "crash_loop", "restart_count": 5}, "container_id": "x"}
    state.write_text(json.dumps({"services": {"server": saved, "manager": saved}}))
    result = stack.run("restart", "server")
    assert result.returncode == 0, result.stderr
    assert "server restarted (no daemon running)" in result.stdout
    assert inspect(server)["State"]["Running"] is True
    kept = json.loads(state.read_text())["services"]
    # The operator cleared the server's crash loop only; its totals stay and count the
    # restart (supervisor.totals).
    assert kept["manager"] == saved
    assert set(kept["server"]) == {"totals"}
    assert kept["server"]["totals"]["restarts"] == {"operator": 1}
    assert state.stat().st_mode & 0o777 == 0o600
