"""HyOS's own server scripts (the replica image, tests/upstream/build-server.sh) under the
supervisor: full hardening, the native library the JVM maps from /tmp, and a stop that
lets Java finish its world save although HyOS's entrypoint exits at the first SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    REPO,
    DaemonFactory,
    DaemonProc,
    Stack,
    docker,
    inspect,
    proc_status,
    wait_for,
)
from tests.standin import SERVER_IMAGE
from tests.upstream.replica import REPLICA_IMAGE, injected_tokens, replica_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def replica_image() -> None:
    reason = None
    if shutil.which("docker") is None or docker("version", check=False).returncode != 0:
        reason = "no Docker engine answers"
    elif docker("image", "inspect", REPLICA_IMAGE, check=False).returncode != 0:
        reason = f"{REPLICA_IMAGE} is not built: bash tests/upstream/build-server.sh"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: these tests must run)")
        pytest.skip(reason)


@pytest.fixture
def hyos(stack: Stack) -> Iterator[Stack]:
    """The stand-in stack with HyOS's server scripts as its server."""
    stack.env.update(replica_env(injected_tokens()))
    yield stack


def volume_file(stack: Stack, path: str) -> str | None:
    """A file on the stack's data volume, read by a throwaway container (None if absent)."""
    done = docker(
        "run", "--rm", "--network", "none", "-v", f"{stack.name}-data:/data:ro",
        "--entrypoint", "/bin/cat", SERVER_IMAGE, f"/data/{path}", check=False,
    )  # fmt: skip
    return done.stdout if done.returncode == 0 else None


def server_logs(stack: Stack) -> str:
    done = docker("logs", stack.container("server"), check=False)
    return done.stdout + done.stderr


def wait_java(stack: Stack, timeout: float = 90) -> None:
    wait_for(lambda: "Hytale Server Booted!" in server_logs(stack), timeout, "Java to boot")


def test_hyos_server_runs_hardened_and_maps_its_native_library_from_tmp(hyos: Stack) -> None:
    hyos.up()
    wait_java(hyos)
    server = hyos.container("server")
    status = proc_status(server)
    assert status["Uid"].split()[0] == "568"
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"] == "1"
    host = inspect(server)["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert (",exec," in host["Tmpfs"]["/tmp"] and "noexec" in host["Tmpfs"]["/home/hytale"]) or (
        ",exec," in host["Tmpfs"]["/home/hytale"]
    )
    logs = server_logs(hyos)
    assert "UnsatisfiedLinkError" not in logs
    assert "Loaded native library" in logs or "quiche" in logs
    audit = hyos.run("audit", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    found = [
        f for f in json.loads(audit.stdout)
        if f["container"] == server and f["rule"] == "read-only-root"
    ]  # fmt: skip
    assert found and "/tmp (exec)" in found[0]["detail"], found


def _save_marker(stack: Stack) -> dict[str, Any] | None:
    text = volume_file(stack, "Server/universe/save-marker.json")
    return json.loads(text) if text else None


@pytest.mark.parametrize("how", ["docker stop", "hyos-supervisor down"])
def test_a_stop_lets_java_finish_the_world_save(hyos: Stack, how: str) -> None:
    """HyOS's entrypoint exits as soon as it forwards SIGTERM; the launcher keeps the
    container until Java has saved (the replica saves for 3 s)."""
    hyos.env["HYOS_SERVER__ENV"] = json.dumps(
        {**json.loads(hyos.env["HYOS_SERVER__ENV"]), "HYOS_FAKE_SAVE_SECONDS": "3"}
    )
    hyos.up()
    wait_java(hyos)
    assert _save_marker(hyos) is None
    started = time.monotonic()
    if how == "docker stop":
        # What the dashboard's Stop does through the guard, and what `docker stop` does.
        docker("stop", "-t", "30", hyos.container("server"))
        logs = server_logs(hyos)
        assert "Done Saving Chunks!" in logs, logs[-2000:]
        assert inspect(hyos.container("server"))["State"]["ExitCode"] == 143
    else:
        done = hyos.run("down")
        assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 3  # the save was waited for, not cut
    marker = _save_marker(hyos)
    assert marker is not None and marker["reason"] == "SIGTERM"


# --- the Hytale login, first-class ----------------------------------------------------


def _server_view(d: DaemonProc) -> dict[str, Any]:
    """The daemon's view of the server ({} while it is still starting up)."""
    d.assert_alive()
    view = d.view()
    server: dict[str, Any] = view["services"]["server"] if view is not None else {}
    return server


def _status_json(stack: Stack) -> dict[str, Any]:
    done = stack.run("status", "--json")
    assert done.returncode == 0, done.stderr
    return next(s for s in json.loads(done.stdout)["services"] if s["service"] == "server")


def _approve(stack: Stack) -> None:
    """The fake Hytale cloud approves pending codes once this control file exists; made
    through our own exec, as the service user."""
    done = stack.run(
        "exec", "server", "--", "sh", "-c", "mkdir -p /data/.test && touch /data/.test/approve"
    )
    assert done.returncode == 0, done.stderr


def test_the_whole_login_shows_in_status_and_auth_then_clears(
    stack: Stack, daemon: DaemonFactory
) -> None:
    stack.env.update(replica_env())  # no tokens: HyOS's device-code login
    d = daemon(wait=False)
    login = wait_for(
        lambda: (_server_view(d).get("login") or {}).get("code") and _server_view(d)["login"],
        90, "the login code in the daemon's view",
    )  # fmt: skip
    assert login["status"] == "pending" and login["url"].startswith(
        "https://oauth.accounts.hytale.com/"
    )
    entry = _status_json(stack)
    assert entry["auth"] == login
    assert entry["supervisor"]["status"] == "needs_auth" and entry["supervisor"]["needs_auth"]
    text = stack.run("status").stdout
    assert f"login: open {login['url']} and enter {login['code']}" in text
    # A restart of the container (same id) is a new run with a new code, followed too.
    docker("restart", "-t", "1", stack.container("server"))
    login = wait_for(
        lambda: (new := _server_view(d).get("login") or {}).get("code") not in (None, login["code"])
        and new,
        30, "the new run's code",
    )  # fmt: skip
    printed = stack.run("auth", "--no-wait")
    assert (
        printed.returncode == 0
        and login["code"] in printed.stdout
        and login["url"] in printed.stdout
    )
    # The code is logged once, with the URL, and sent in sd_notify's STATUS too.
    lines = d.events("the Hytale login waits for approval: open the URL and enter the code "
                     "(or run `hyos-supervisor auth`)")  # fmt: skip
    assert [line["code"] for line in lines][-1] == login["code"]
    assert len({line["code"] for line in lines}) == len(lines)  # once per code
    waiting = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "auth"], env=stack.env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _approve(stack)
    out, err = waiting.communicate(timeout=90)
    assert waiting.returncode == 0, err
    assert login["code"] in out and out.rstrip().endswith("logged in")
    d.wait_healthy(90, roles=("server",))
    assert _server_view(d)["login"]["status"] == "authenticated"
    assert _status_json(stack)["supervisor"]["status"] == "running"
    assert volume_file(stack, ".auth/tokens.json") is not None  # HyOS cached its tokens


def test_a_login_that_runs_out_is_needs_auth_not_a_crash(
    stack: Stack, daemon: DaemonFactory
) -> None:
    stack.env.update(
        replica_env({"HYOS_FAKE_DEVICE_EXPIRES_IN": "3", "HYOS_FAKE_DEVICE_GRACE": "600"})
    )
    stack.env["HYOS_RESTART__AUTH_RETRY_S"] = "4"
    d = daemon(wait=False)
    first = wait_for(lambda: (_server_view(d).get("login") or {}).get("code"), 90, "a first code")
    exited = d.wait_log("exited", timeout=60, service="server")[0]
    assert exited["exit_code"] == 1 and exited["decision"] == "retry_login"
    server = _server_view(d)
    assert server["status"] == "needs_auth" and server["recent_failures"] == 0
    assert server["restart_count"] == 0
    # After auth_retry_s a fresh container run shows a fresh code; still no failure counted.
    second = wait_for(
        lambda: (code := (_server_view(d).get("login") or {}).get("code")) != first and code,
        60, "a second code",
    )  # fmt: skip
    assert second and _server_view(d)["recent_failures"] == 0
    assert not d.events("crash loop: not restarting; the container is kept for inspection. "
                        "Fix the cause, then run `hyos-supervisor restart server`")  # fmt: skip


def test_exec_runs_as_the_service_user_and_passes_the_exit_code(hyos: Stack) -> None:
    hyos.up()
    done = hyos.run("exec", "server", "--", "id", "-u")
    assert done.returncode == 0 and done.stdout.strip() == "568", done.stderr
    done = hyos.run("exec", "server", "--", "sh", "-c", "cat; exit 7", input_text="through stdin\n")
    assert done.returncode == 7 and done.stdout == "through stdin\n"
    done = hyos.run("exec", "manager", "--", "id", "-u")
    assert done.returncode == 0 and done.stdout.strip() == "568"
    # HyOS's own operator scripts run the same way, no Docker socket needed.
    done = hyos.run("exec", "server", "--", "/opt/scripts/cmd/status.sh")
    assert done.returncode == 0, done.stdout + done.stderr


def test_tokens_come_from_files_and_never_show_in_inspect(hyos: Stack, tmp_path: Path) -> None:
    tokens = injected_tokens()
    for key, setting in (("HYTALE_SERVER_SESSION_TOKEN", "HYTALE_SESSION_TOKEN"),
                         ("HYTALE_SERVER_IDENTITY_TOKEN", "HYTALE_IDENTITY_TOKEN")):  # fmt: skip
        path = tmp_path / setting.lower()
        path.write_text(tokens[key] + "\n")
        hyos.env[f"HYOS_{setting}_FILE"] = str(path)
    hyos.env["HYOS_SERVER_PASSWORD"] = "let-players-in"
    hyos.env["HYOS_SERVER__ENV"] = json.dumps({"HYOS_FAKE_BOOT_SECONDS": "0.2"})  # no env tokens
    hyos.up()
    wait_java(hyos)
    info = inspect(hyos.container("server"))
    dumped = json.dumps(info)
    for value in (*tokens.values(), "let-players-in"):
        assert value not in dumped
    assert (
        "HYTALE_SERVER_SESSION_TOKEN_FILE=/data/.hyos/secrets/hytale_session_token"
        in info["Config"]["Env"]
    )
    state = json.loads(volume_file(hyos, ".state/auth.json") or "{}")
    assert state["profile"] == "injected"  # HyOS took the tokens and skipped the login
    listing = docker("exec", hyos.container("server"), "stat", "-c", "%a %U %n",
                     "/data/.hyos/secrets", "/data/.hyos/secrets/hytale_session_token",
                     "/data/.hyos/secrets/server_password").stdout.split("\n")  # fmt: skip
    assert listing[0].startswith("700 hytale") and listing[1].startswith("600 hytale")
    assert listing[2].startswith("600 hytale")
    assert "let-players-in" in (volume_file(hyos, "Server/config.json") or "")
    logs = hyos.run("--log-level", "DEBUG", "up").stderr
    assert not any(value in logs for value in tokens.values())


def test_rotation_regenerates_the_plugins_hash_and_the_new_secret_is_accepted(
    stack: Stack, daemon: DaemonFactory
) -> None:
    stack.env.update(replica_env(injected_tokens()))
    d = daemon()
    wait_java(stack)
    done = stack.run("secrets", "rotate", "api")
    assert done.returncode == 0, done.stderr
    d.wait_log("restarted", service="server", timeout=60)
    d.wait_healthy(90)
    wait_java(stack)
    secret = (volume_file(stack, ".hyos/secrets/api_client_secret") or "").strip()
    client_id = (volume_file(stack, ".hyos/secrets/api_client_id") or "").strip()
    verified = docker(
        "exec", stack.container("server"), "sh", "-c",
        # HyOS's api.sh writes clients[0].{id, secret = bcrypt hash}; htpasswd reads id:hash.
        "f=$(mktemp); jq -r '.clients[0] | \"\\(.id):\\(.secret)\"' "
        "/data/Server/mods/com.hytale_HytaleAPI/config.json > $f; "
        'htpasswd -vb "$f" "$0" "$1"; r=$?; rm -f $f; exit $r', client_id, secret, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    token = docker(
        "exec", stack.container("server"), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
        "-H", "Content-Type: application/json", "-d", json.dumps({"clientId": client_id, "secret": secret}),
        "http://127.0.0.1:30381/auth/token", check=False,
    )  # fmt: skip
    assert token.stdout == "200", token.stdout + token.stderr


def test_the_dashboards_update_is_an_asked_for_restart_that_installs_it(
    stack: Stack, daemon: DaemonFactory
) -> None:
    """HyOS's update button runs cmd/auto-update.sh --once in the server: it stops Java
    itself (exit 143) before it could install anything. The supervisor reads update.json,
    asks HyOS's entrypoint to install the update on the next start (.update-on-restart, as
    schedule-update.sh does) and starts it: no failure, the new version runs. (Since issue
    26 through the update transaction: snapshot, install, a health gate of gate_s.)"""
    stack.env.update(replica_env(injected_tokens()), HYOS_UPDATE__GATE_S="5")
    d = daemon()
    wait_java(stack)
    assert "Version: 2026.01.01-replica1" in server_logs(stack)
    newer = "mkdir -p /data/.test && echo 2026.02.01-replica2 > /data/.test/latest-version"
    assert stack.run("exec", "server", "--", "sh", "-c", newer).returncode == 0
    update = stack.run("exec", "server", "--", "/opt/scripts/cmd/auto-update.sh", "--once")
    assert update.returncode != 0  # the container (and with it the exec) went down
    exited = d.wait_log("exited", timeout=60, service="server")[0]
    assert exited["exit_code"] == 143 and exited["decision"] == "install_update"
    d.wait_log("installing the update the dashboard asked for", timeout=30)
    wait_for(lambda: "Version: 2026.02.01-replica2" in server_logs(stack), 120, "the new version")
    d.wait_healthy(90, roles=("server",))
    server = _server_view(d)
    assert server["recent_failures"] == 0 and server["status"] == "running"
    assert volume_file(stack, ".state/.update-on-restart") is None  # HyOS consumed it
    journal = Path(stack.env["HYOS_STATE_DIR"]) / f"{stack.name}.update.json"
    last = json.loads(journal.read_text())["record"]["last"]
    assert last["source"] == "dashboard" and last["result"] == "applied"
    assert last["version"] == "2026.02.01-replica2" and last["snapshot"]
