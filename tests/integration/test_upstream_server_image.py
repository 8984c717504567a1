"""HyOS's own server scripts, unmodified, in the replica image (tests/upstream/build-server.sh)
under the supervisor's hardening: what they write, how they exit, what their health check
says. The parts of Hytale that cannot be had here are fakes at the process boundary
(tests/upstream/README.md); everything named HyOS here is HyOS's code.

Skipped when the image is not built; failed instead when CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.harness import poll
from tests.upstream.replica import (
    REPLICA_IMAGE,
    cloud_token,
    fake_module,
    injected_tokens,
)

pytestmark = pytest.mark.integration

IMAGE = REPLICA_IMAGE
HARDENING = (
    "--user", "568:568", "--read-only", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges:true",
)  # fmt: skip
TMP_EXEC = "/tmp:rw,exec,nosuid,nodev,size=64m,uid=568,gid=568,mode=0700"
TMP_NOEXEC = "/tmp:rw,noexec,nosuid,nodev,size=64m,uid=568,gid=568,mode=0700"
# $HOME mounted noexec on purpose: nothing the server runs needs to execute from it.
HOME_NOEXEC = "/home/hytale:rw,noexec,nosuid,nodev,size=16m,uid=568,gid=568,mode=0700"
API_ID = "hyos-manager"
# Java's pid from a shell, the way HyOS's scripts find it; "[H]" keeps pgrep from matching
# the shell whose own command line holds the pattern.
JAVA_PID = "$(pgrep -f '[H]ytaleServer.jar')"


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.fixture(scope="module", autouse=True)
def replica_image() -> None:
    reason = None
    if shutil.which("docker") is None or docker("version").returncode != 0:
        reason = "no Docker engine answers"
    elif docker("image", "inspect", IMAGE).returncode != 0:
        reason = f"{IMAGE} is not built: bash tests/upstream/build-server.sh"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the replica tests must run)")
        pytest.skip(reason)


def _health_time(stamp: str) -> float:
    """Docker's RFC 3339 nanosecond timestamps, as epoch seconds."""
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


class Replica:
    """One replica container over a host directory mounted as /data (uid 568)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.name = ""

    def run(
        self, *, env: dict[str, str] | None = None, tmp: str = TMP_EXEC, hardened: bool = True
    ) -> None:
        """A new container on the same /data (the previous one is removed)."""
        self.remove()
        self.name = f"hyos-upstream-{uuid.uuid4().hex[:10]}"
        args = ["run", "-d", "--name", self.name, "-v", f"{self.data}:/data"]
        if hardened:
            args += [*HARDENING, "--tmpfs", tmp, "--tmpfs", HOME_NOEXEC]
        args += ["--health-interval", "1s", "--health-timeout", "10s", "--health-retries", "3"]
        for key, value in {"HYOS_FAKE_DEVICE_INTERVAL": "1", **(env or {})}.items():
            args += ["-e", f"{key}={value}"]
        done = docker(*args, IMAGE)
        assert done.returncode == 0, done.stderr

    def remove(self) -> None:
        if self.name:
            docker("rm", "-f", "-v", self.name)

    def logs(self) -> str:
        done = docker("logs", self.name)
        return done.stdout + done.stderr

    def inspect(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(docker("inspect", self.name).stdout)[0]
        return result

    def state(self, name: str) -> dict[str, Any]:
        """/data/.state/<name>.json as HyOS's lib/state.sh wrote it ({} when missing)."""
        try:
            loaded = json.loads((self.data / ".state" / f"{name}.json").read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def control(self, name: str, content: str = "") -> None:
        """A test control file for the fakes in /data/.test, owned by the server's uid."""
        folder = self.data / ".test"
        folder.mkdir(exist_ok=True)
        os.chown(folder, 568, 568)
        path = folder / name
        path.write_text(content)
        os.chown(path, 568, 568)

    def exec(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return docker("exec", "--user", "568:568", self.name, *cmd, timeout=timeout)

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        def alive_check() -> Any:
            result = check()
            if not result and not self.inspect()["State"]["Running"]:
                pytest.fail(f"the container exited while waiting for {what}:\n{self.logs()}")
            return result

        try:
            return poll(alive_check, timeout, what, interval=0.1)
        except TimeoutError as err:
            pytest.fail(f"{err}\n{self.logs()[-4000:]}")

    def wait_exit(self, timeout: float = 60) -> int:
        done = docker("wait", self.name, timeout=timeout)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    def wait_serving(self, timeout: float = 60) -> None:
        """Until Java runs (server.json "running", the boot banner logged) and then a check
        of the image's own HEALTHCHECK that started afterwards passed. (HyOS's check
        reports healthy while server.json says "starting", so earlier passes prove nothing.)"""
        self.wait(
            lambda: (
                self.state("server").get("status") == "running"
                and "Hytale Server Booted!" in self.logs()
            ),
            "Java to run",
            timeout,
        )
        booted = time.time()

        def checked_healthy() -> bool:
            health = self.inspect()["State"]["Health"]
            passed = [
                entry
                for entry in health["Log"]
                if _health_time(entry["Start"]) > booted and entry["ExitCode"] == 0
            ]
            return health["Status"] == "healthy" and bool(passed)

        self.wait(checked_healthy, "a passing health check after boot", timeout)

    def java_cmdline(self) -> list[str]:
        done = self.exec("sh", "-c", f'cat /proc/"{JAVA_PID}"/cmdline')
        return done.stdout.split("\0")

    def api(self, method: str, path: str, *args: str) -> tuple[int, Any]:
        """(status, JSON body) of a request to the REST API plugin, from inside."""
        done = self.exec(
            "curl", "-s", "-X", method, "-w", "\n%{http_code}", *args,
            f"http://127.0.0.1:30381{path}",
        )  # fmt: skip
        body, _, status = done.stdout.rpartition("\n")
        return int(status), json.loads(body) if body else None


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 568, 568)
    data.chmod(0o750)
    made = Replica(data)
    yield made
    made.remove()


# 1. cached tokens -----------------------------------------------------------------------


def test_cached_tokens_are_refreshed_and_the_server_becomes_healthy(replica: Replica) -> None:
    """lib/auth.sh reads /data/.auth/tokens.json; an access token within 5 min of expiry is
    refreshed (grant_type=refresh_token), then a game session is created."""
    auth = replica.data / ".auth"
    auth.mkdir(mode=0o700)
    expired = cloud_token(-60)
    tokens = {
        "access_token": expired,
        "refresh_token": "refresh-from-an-earlier-login",
        "profile_uuid": fake_module("hytale_cloud").PROFILE["uuid"],
        "profile_name": "HyOSTester",
    }
    (auth / "tokens.json").write_text(json.dumps(tokens))
    for path in (auth, auth / "tokens.json"):
        os.chown(path, 568, 568)
    (auth / "tokens.json").chmod(0o600)

    replica.run()
    replica.wait_serving()

    logs = replica.logs()
    assert "Loading cached tokens" in logs
    assert "Refreshing access token" in logs
    assert "AUTHENTICATION REQUIRED" not in logs
    state = replica.state("auth")
    assert state["status"] == "authenticated"
    assert state["profile"] == "HyOSTester"
    saved = json.loads((auth / "tokens.json").read_text())
    assert saved["access_token"] != expired
    assert (auth / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert auth.stat().st_mode & 0o777 == 0o700


def test_injected_tokens_skip_the_login_and_reach_javas_command_line(replica: Replica) -> None:
    """HYTALE_SERVER_SESSION_TOKEN + HYTALE_SERVER_IDENTITY_TOKEN (no *_FILE variants):
    lib/auth.sh uses them as they are and lib/options.sh passes them to Java as
    --session-token/--identity-token, readable in /proc/<pid>/cmdline."""
    tokens = injected_tokens()
    replica.run(env=tokens)
    replica.wait_serving()

    state = replica.state("auth")
    assert (state["status"], state["profile"]) == ("authenticated", "injected")
    cmdline = replica.java_cmdline()
    assert tokens["HYTALE_SERVER_SESSION_TOKEN"] in cmdline
    assert tokens["HYTALE_SERVER_IDENTITY_TOKEN"] in cmdline
    assert not (replica.data / ".auth" / "tokens.json").exists()


def test_rejected_session_token_ends_the_server_with_exit_2(replica: Replica) -> None:
    """The game's exit 2 (authentication failed) as HyOS passes it on: server.json
    "crashed" while auth.json still says "authenticated" (injected)."""
    replica.run(
        env={"HYTALE_SERVER_SESSION_TOKEN": "stale", "HYTALE_SERVER_IDENTITY_TOKEN": "stale"}
    )
    assert replica.wait_exit() == 2
    assert replica.state("server")["status"] == "crashed"
    assert replica.state("auth")["status"] == "authenticated"


def test_revoked_refresh_token_falls_back_to_the_device_login(replica: Replica) -> None:
    auth = replica.data / ".auth"
    auth.mkdir(mode=0o700)
    tokens = {
        "access_token": cloud_token(-60),
        "refresh_token": "revoked",
        "profile_uuid": fake_module("hytale_cloud").PROFILE["uuid"],
    }
    (auth / "tokens.json").write_text(json.dumps(tokens))
    os.chown(auth, 568, 568)
    os.chown(auth / "tokens.json", 568, 568)
    replica.control("revoke")
    replica.run()
    replica.wait(lambda: replica.state("auth").get("status") == "pending", "auth.json pending")
    assert "Cached tokens invalid, re-authenticating..." in replica.logs()


# 2. the whole login ---------------------------------------------------------------------


def test_device_login_pending_then_approved(replica: Replica) -> None:
    replica.run()
    pending = replica.wait(
        lambda: replica.state("auth") if replica.state("auth").get("status") == "pending" else None,
        "auth.json pending",
    )
    code = pending["auth_code"]
    assert re.fullmatch(r"[A-Z0-9]{8}", code)
    url = f"https://oauth.accounts.hytale.com/oauth2/device/verify?user_code={code}"
    assert pending["auth_url"] == url
    assert pending["authenticated"] is False
    # The fake cloud logs the code as it issues it, before HyOS's box and its log lines:
    # wait for the last of those, "Auth URL" (seen in CI under load: not out yet).
    line = f"Auth URL: {url}"
    logs = replica.wait(lambda: line in replica.logs() and replica.logs(), "the code's lines")
    assert f"And enter code: {code}" in logs
    assert replica.state("server")["status"] == "starting"  # what HyOS's check calls healthy

    replica.control("approve")
    replica.wait_serving()

    state = replica.state("auth")
    assert (state["status"], state["profile"], state["auth_code"]) == (
        "authenticated",
        "HyOSTester",
        None,
    )
    assert (replica.data / ".auth" / "tokens.json").stat().st_mode & 0o777 == 0o600


# 3. login timeout -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grace", "status"),
    [("600", "timeout"), ("0", "failed")],
    ids=["server-still-pending-timeout", "server-expires-code-failed"],
)
def test_login_timeout_exits_1(replica: Replica, grace: str, status: str) -> None:
    """auth.sh polls for the device response's expires_in (900 s from Hytale; not an env
    setting of HyOS's). If the server still answers authorization_pending at its last
    poll, auth.json says "timeout"; a server that has expired the code by then answers
    expired_token (auth.sh polls just past expires_in), and auth.json says "failed".
    Either way the entrypoint exits 1 with server.json "crashed"."""
    replica.run(env={"HYOS_FAKE_DEVICE_EXPIRES_IN": "3", "HYOS_FAKE_DEVICE_GRACE": grace})
    assert replica.wait_exit() == 1
    auth = replica.state("auth")
    assert (auth["status"], auth["authenticated"], auth["auth_url"]) == (status, False, None)
    assert replica.state("server")["status"] == "crashed"
    assert "AUTHENTICATION REQUIRED" in replica.logs()


def test_denied_login_fails_and_exits_1(replica: Replica) -> None:
    replica.control("deny")
    replica.run()
    assert replica.wait_exit() == 1
    assert replica.state("auth")["status"] == "failed"
    assert "Authentication error: access_denied" in replica.logs()


# 4. java's native library in /tmp ------------------------------------------------------


def test_noexec_tmp_fails_the_native_library_and_exec_tmp_works(replica: Replica) -> None:
    replica.run(env=injected_tokens(), tmp=TMP_NOEXEC)
    assert replica.wait_exit() == 1
    logs = replica.logs()
    assert "java.lang.UnsatisfiedLinkError" in logs
    assert "failed to map segment from shared object" in logs
    assert replica.state("server")["status"] == "crashed"

    replica.run(env=injected_tokens(), tmp=TMP_EXEC)
    replica.wait_serving()
    assert "Bound QUIC transport" in replica.logs()


# 5. the REST API plugin's bcrypt hash ---------------------------------------------------


def _config_hash(replica: Replica) -> str:
    path = replica.data / "Server/mods/com.hytale_HytaleAPI/config.json"
    assert path.stat().st_mode & 0o777 == 0o600
    (client,) = json.loads(path.read_text())["clients"]
    assert client["id"] == API_ID
    secret: str = client["secret"]
    return secret


def _token_status(replica: Replica, secret: str) -> int:
    body = json.dumps({"clientId": API_ID, "secret": secret})
    status, _ = replica.api(
        "POST", "/auth/token", "-H", "Content-Type: application/json", "-d", body
    )
    return status


def test_api_secret_hash_verifies_and_is_regenerated_only_when_asked(replica: Replica) -> None:
    first, second = "first-secret-0123456789", "second-secret-9876543210"
    replica.run(
        env={**injected_tokens(), "API_CLIENT_SECRET": first, "API_REGENERATE_CONFIG": "true"}
    )
    replica.wait_serving()

    hashed = _config_hash(replica)
    assert hashed.startswith("$2a$12$")  # htpasswd -B's $2y$, rewritten for Java's bcrypt
    verify = 'printf "%s:%s\\n" "$1" "$2" >/tmp/htpasswd && htpasswd -vb /tmp/htpasswd "$1" "$3"'
    right = replica.exec("sh", "-c", verify, "-", API_ID, hashed, first)
    assert right.returncode == 0, right.stderr
    wrong = replica.exec("sh", "-c", verify, "-", API_ID, hashed, second)
    assert wrong.returncode != 0
    assert _token_status(replica, first) == 200
    assert _token_status(replica, second) == 401
    assert replica.api("GET", "/server/status")[0] == 401
    status, token = replica.api(
        "POST", "/auth/token", "-d", f"grant_type=client_credentials&client_id={API_ID}"
        f"&client_secret={first}",
    )  # fmt: skip
    assert status == 200
    status, body = replica.api(
        "GET", "/server/status", "-H", f"Authorization: Bearer {token['access_token']}"
    )
    assert (status, body["online"]) == (200, True)

    # A new secret without API_REGENERATE_CONFIG=true: the old hash stays.
    replica.run(env={**injected_tokens(), "API_CLIENT_SECRET": second})
    replica.wait_serving()
    assert _config_hash(replica) == hashed
    assert _token_status(replica, second) == 401
    assert _token_status(replica, first) == 200

    replica.run(
        env={**injected_tokens(), "API_CLIENT_SECRET": second, "API_REGENERATE_CONFIG": "true"}
    )
    replica.wait_serving()
    assert _config_hash(replica) != hashed
    assert _token_status(replica, second) == 200
    assert _token_status(replica, first) == 401


# 6. the dashboard's "update" -------------------------------------------------------------


def _debug_states(output: str) -> list[str]:
    """The state writes lib/state.sh logs with DEBUG=true, in order."""
    return re.findall(r"(\w+ state: [^\n]*)", output)


def test_auto_update_once_stops_java_and_the_container_before_updating(replica: Replica) -> None:
    """What POST /api/server/update runs (docker exec auto-update.sh --once, as the
    container's user): with a newer version it stops Java itself (SIGTERM to the
    pgrep'd pid), Java saves and exits 143, the entrypoint writes server.json "stopped"
    and exits 143, and the container's end kills auto-update.sh in its wait loop: the
    update is never installed and update.json stays "downloading"."""
    replica.run(env={**injected_tokens(), "HYOS_FAKE_LATEST_VERSION": "2026.01.01-old"})
    replica.wait_serving()
    assert (replica.data / ".version").read_text().strip() == "2026.01.01-old"
    replica.control("latest-version", "2026.02.01-new")

    done = docker(
        "exec", "--user", "568:568", "-e", "DEBUG=true", replica.name,
        "/opt/scripts/cmd/auto-update.sh", "--once",
    )  # fmt: skip
    assert replica.wait_exit() == 143
    assert done.returncode == 137  # killed with the container
    assert _debug_states(done.stdout) == [
        "Update state: checking",
        "Version state: current=2026.01.01-old, latest=2026.02.01-new",
        "Update state: idle",
        "Update state: downloading",
    ]
    assert "Stopping server for update..." in done.stdout
    update = replica.state("update")
    assert (update["status"], update["message"]) == (
        "downloading",
        "Downloading update: 2026.01.01-old -> 2026.02.01-new",
    )
    version = replica.state("version")
    assert (version["current"], version["latest"], version["needs_update"]) == (
        "2026.01.01-old",
        "2026.02.01-new",
        True,
    )
    assert replica.state("server")["status"] == "stopped"  # by the entrypoint, after Java
    assert (replica.data / ".version").read_text().strip() == "2026.01.01-old"
    saved = json.loads((replica.data / "Server/universe/save-marker.json").read_text())
    assert (saved["reason"], saved["version"]) == ("SIGTERM", "2026.01.01-old")
    assert "Server killed by signal 15 (exit code 143)" in replica.logs()

    # The path that does install it: schedule-update.sh, then a start of the container.
    assert docker("start", replica.name).returncode == 0
    replica.wait_serving()
    scheduled = replica.exec("/opt/scripts/cmd/schedule-update.sh")
    assert scheduled.returncode == 0, scheduled.stdout
    flag = json.loads((replica.data / ".state/.update-on-restart").read_text())
    assert flag["target_version"] == "2026.02.01-new"
    assert docker("restart", "-t", "30", replica.name).returncode == 0
    replica.wait_serving()
    assert (replica.data / ".version").read_text().strip() == "2026.02.01-new"
    assert "Version: 2026.02.01-new" in replica.logs()
    assert not (replica.data / ".state/.update-on-restart").exists()
    assert list(replica.data.glob("backup-2026.01.01-old-*/Server/HytaleServer.jar"))
    assert replica.state("update")["status"] == "downloading"  # nobody rewrites it


# Stopping: how the world gets saved, or not ---------------------------------------------


def test_docker_stop_ends_the_container_before_javas_save(replica: Replica) -> None:
    """tini forwards `docker stop`'s SIGTERM to entrypoint.sh, whose trap forwards it to
    Java; the trap interrupts `wait`, so the entrypoint exits 143 at once, tini exits and
    the kernel kills Java in the middle of its shutdown save."""
    replica.run(env={**injected_tokens(), "HYOS_FAKE_SAVE_SECONDS": "3"})
    replica.wait_serving()
    started = time.monotonic()
    assert docker("stop", "-t", "30", replica.name).returncode == 0
    assert time.monotonic() - started < 2.5
    assert replica.wait_exit() == 143
    logs = replica.logs()
    assert "Saving Chunks..." in logs
    assert "Done Saving Chunks!" not in logs
    assert not (replica.data / "Server/universe/save-marker.json").exists()
    assert replica.state("server")["status"] == "stopped"


def test_sigterm_to_java_itself_saves_then_the_container_exits_143(replica: Replica) -> None:
    """What auto-update.sh does, and a graceful stop can do: SIGTERM to Java's pid."""
    replica.run(env={**injected_tokens(), "HYOS_FAKE_SAVE_SECONDS": "1"})
    replica.wait_serving()
    assert replica.exec("sh", "-c", f"kill -TERM {JAVA_PID}").returncode == 0
    assert replica.wait_exit() == 143
    assert "Done Saving Chunks!" in replica.logs()
    saved = json.loads((replica.data / "Server/universe/save-marker.json").read_text())
    assert (saved["saves"], saved["reason"]) == (1, "SIGTERM")
    assert replica.state("server")["status"] == "stopped"


@pytest.mark.parametrize(("code", "status"), [(0, "stopped"), (2, "crashed"), (8, "crashed")])
def test_the_games_exit_code_is_the_containers(replica: Replica, code: int, status: str) -> None:
    """launch_and_wait: Java's exit code becomes the container's; server.json says
    "stopped" for 0 and >= 128, "crashed" for anything else (8, update requested, too)."""
    replica.run(env=injected_tokens())
    replica.wait_serving()
    replica.control("java-exit", str(code))
    assert replica.wait_exit() == code
    assert replica.state("server")["status"] == status


# Started as root (HyOS's default without `user:`) ---------------------------------------


def test_started_as_root_first_boot_leaves_server_files_root_owned(replica: Replica) -> None:
    """As root, entrypoint.sh chowns /data to hytale, then downloads, authenticates and
    writes as root, and runs only Java as hytale (su-exec): on a fresh volume Java cannot
    write /data/Server and exits 1; the next start's chown -R repairs it."""
    replica.run(env=injected_tokens(), hardened=False)
    assert replica.wait_exit() == 1
    assert (replica.data / "Server").stat().st_uid == 0
    assert "AccessDeniedException" in replica.logs()

    assert docker("start", replica.name).returncode == 0
    replica.wait_serving()
    assert (replica.data / "Server").stat().st_uid == 568
    users = replica.exec("ps", "-o", "user=,args=", "-e").stdout.splitlines()
    java = [line for line in users if "HytaleServer.jar" in line]
    assert len(java) == 1 and java[0].startswith("hytale ")
    assert any(line.startswith("root ") and "entrypoint.sh" in line for line in users)
