"""Every mount the supervisor adds, on each layout an image's /var/run can have.

HyOS's images are Alpine, where /var/run is a symbolic link to /run and Docker resolves a
mount target through it: a directory mounted "at /var/run" covered the image's /run and with
it the launcher at /run/hyos-system, and the real dashboard crash-looped. The stand-ins come
in three layouts (tests/images/build.sh): /var/run a link to /run, a directory, absent.
What each container sees is read from the host through /proc/<pid>/root, which is the
container's own mount namespace: the same paths its processes open.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path, PurePosixPath

import pytest

from tests.harness import docker, inspect
from tests.integration.conftest import DaemonFactory, Stack, wait_for

LAYOUTS = ("link", "dir", "none")


def _root(container: str) -> Path:
    pid = inspect(container)["State"]["Pid"]
    assert pid > 0, f"{container} is not running"
    return Path(f"/proc/{pid}/root")


def _inside(container: str, path: str) -> Path:
    """`path` as the container's processes resolve it, as a host path: symbolic links are
    followed within the container's root (an absolute link read through /proc/<pid>/root
    would otherwise lead into the host's own tree: /var/run -> /run is the host's /run)."""
    root = _root(container)
    resolved = PurePosixPath("/")
    todo = list(PurePosixPath(path).parts[1:])
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            resolved = resolved.parent
            continue
        host = root / (resolved / part).relative_to("/")
        if not host.is_symlink():
            resolved = resolved / part
            continue
        links += 1
        assert links < 40, f"too many links resolving {path} in {container}"
        target = PurePosixPath(os.readlink(host))
        if target.is_absolute():
            resolved = PurePosixPath("/")
            todo = [*target.parts[1:], *todo]
        else:
            todo = [*target.parts, *todo]
    return root / resolved.relative_to("/")


def _ping(sock: Path) -> bytes:
    """GET /_ping on the socket the container's processes would open."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(sock))
        client.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def _reaches_the_guard(container: str) -> bool:
    try:
        return _ping(_inside(container, "/var/run/docker.sock")).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _check_layout(stack: Stack, layout: str) -> None:
    manager, server = stack.container("manager"), stack.container("server")
    for container in (manager, server):
        root = _root(container)
        # The image's own /var/run is what it was: our mounts changed no directory's kind.
        if layout == "link":
            assert (root / "var/run").is_symlink() and str((root / "var/run").readlink()) == "/run"
        elif layout == "dir":
            assert (root / "var/run").is_dir() and not (root / "var/run").is_symlink()
        # The launcher is found: the workload started through it (a hidden launcher is exit 2).
        assert _inside(container, "/run/hyos-system/file-env.sh").is_file()
    mounts = {m["Destination"]: m for m in inspect(manager)["Mounts"]}
    # One file, not a directory: nothing of the image is covered.
    guard = mounts["/var/run/docker.sock"]
    assert guard["Type"] == "bind" and not guard["RW"]
    assert guard["Source"] == f"{stack.env['HYOS_GUARD_DIR']}/{stack.name}/docker.sock"
    assert not {"/var/run", "/run"} & set(mounts)
    # The manager reaches the guard where dockerode looks, and only the guard.
    assert _reaches_the_guard(manager)
    assert docker("exec", manager, "cat", "/var/run/docker.sock", check=False).returncode != 0
    # The server's machine-id is the stack's, mounted as one file.
    machine_id = _inside(server, "/etc/machine-id").read_text().strip()
    assert len(machine_id) == 32 and int(machine_id, 16) >= 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_mount_works_on_each_var_run_layout_across_a_guard_re_creation(
    stack: Stack, daemon: DaemonFactory, layout: str
) -> None:
    env = {
        "HYOS_SERVER__IMAGE": f"hyos-test/server:var-run-{layout}",
        "HYOS_MANAGER__IMAGE": f"hyos-test/manager:var-run-{layout}",
    }
    d = daemon(env)
    assert d.service("manager")["restart_count"] == 0
    _check_layout(stack, layout)
    manager = stack.container("manager")
    started = inspect(manager)["State"]["StartedAt"]

    # The guard is bound anew by the next daemon: the manager's mount holds the old socket,
    # which nobody serves; the daemon restarts the manager, which then reaches the new one.
    d.kill9()
    assert not _reaches_the_guard(manager)
    d = daemon(env)
    d.wait_log("the manager holds the guard's previous socket; restarting it", timeout=30)
    wait_for(lambda: _reaches_the_guard(manager), 60, "the manager reaching the new guard")
    assert inspect(manager)["State"]["StartedAt"] != started
    _check_layout(stack, layout)
    # The server is not touched by the guard's re-creation.
    assert not d.events("restart issued", service="server")
