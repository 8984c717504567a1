"""HyOS's real manager (hyos-upstream/manager:local, built by tests/upstream/build-manager.sh)
under the hardening the supervisor applies: uid 568, read-only root, every capability dropped,
no-new-privileges, uid-owned tmpfs, the manager's memory, cpu and pids limits.

The run flags are derived from the supervisor's own create body (policy.build_create_body), so
the test follows the policy. The image is not built here (that needs the npm registry and a
minute): without it these tests skip, unless CI=true, where a missing image is a failure.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from supervisor.policy import build_create_body
from supervisor.settings import ManagerSettings, Settings
from supervisor.stack import desired_services
from tests.harness import poll
from tests.upstream.dashboard import MANAGER_IMAGE, SESSION_COOKIE, Reply

# One xdist worker runs the whole module: its module-scoped fixtures are built once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("upstream_manager_image")]

IMAGE = MANAGER_IMAGE
BUILD = "bash tests/upstream/build-manager.sh"
UID = 568
PREFIX = "hyos-upstream-test"
# HyOS's Dockerfile, verbatim.
HEALTHCHECK = "wget --no-verbose --tries=1 --spider http://127.0.0.1:3000/api/health || exit 1"
ADMIN = {"username": "admin", "password": "correct-horse-battery-staple"}


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def inspect(ref: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(docker("inspect", ref).stdout)[0]
    return result


@pytest.fixture(scope="session")
def manager_image() -> str:
    """The image, or a skip saying how to build it (a failure when CI=true)."""
    if shutil.which("docker") is None or docker("version", check=False).returncode != 0:
        reason = "no Docker engine answers"
    elif docker("image", "inspect", IMAGE, check=False).returncode != 0:
        reason = f"{IMAGE} is not built: run `{BUILD}` (needs the npm registry, about a minute)"
    else:
        return IMAGE
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires HyOS's real manager image")
    pytest.skip(reason)


def supervisor_hardening() -> tuple[list[str], dict[str, Any]]:
    """`docker run` flags equal to the supervisor's HostConfig for the manager, and that
    HostConfig (network, mounts and ports are the test's own)."""
    settings = Settings(stack=PREFIX, manager=ManagerSettings(image=IMAGE), prepare=False)
    spec = desired_services(settings)["manager"]
    host: dict[str, Any] = build_create_body(spec)["HostConfig"]
    flags = ["--user", spec.user]
    if host["ReadonlyRootfs"]:
        flags.append("--read-only")
    if host["Init"]:
        flags.append("--init")
    for cap in host["CapDrop"]:
        flags += ["--cap-drop", cap]
    for cap in host["CapAdd"]:
        flags += ["--cap-add", cap]
    for opt in host["SecurityOpt"]:
        flags += ["--security-opt", opt]
    for path, options in host["Tmpfs"].items():
        flags += ["--tmpfs", f"{path}:{options}"]
    flags += [
        "--memory", str(host["Memory"]),
        "--memory-swap", str(host["MemorySwap"]),
        "--cpus", str(host["NanoCpus"] / 1e9),
        "--pids-limit", str(host["PidsLimit"]),
        "--ipc", host["IpcMode"],
    ]  # fmt: skip
    return flags, host


@dataclass
class Manager:
    """One running manager container, published on 127.0.0.1 at an ephemeral port."""

    name: str
    volume: str
    host: str = field(default="127.0.0.1")
    port: int = 0

    def request(
        self, method: str, path: str, body: Any = None, session: str | None = None
    ) -> Reply:
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if session is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={session}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def get(self, path: str, session: str | None = None) -> Reply:
        return self.request("GET", path, session=session)

    def post(self, path: str, body: Any = None, session: str | None = None) -> Reply:
        return self.request("POST", path, body=body, session=session)

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, *args, check=check)

    def proc_status(self, pid: str) -> dict[str, str]:
        text = self.exec("cat", f"/proc/{pid}/status").stdout
        return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)

    def node_pid(self) -> str:
        pids = self.exec("pidof", "node").stdout.split()
        assert len(pids) == 1, pids
        return pids[0]

    def logs(self) -> str:
        out = docker("logs", self.name, check=False)
        return out.stdout + out.stderr

    def assert_running(self) -> None:
        state = inspect(self.name)["State"]
        if state["Status"] != "running":
            pytest.fail(
                f"{self.name} is {state['Status']} (exit {state['ExitCode']}):\n{self.logs()}"
            )

    def wait_answering(self, timeout: float = 60) -> None:
        def answers() -> bool:
            self.assert_running()
            try:
                return self.get("/api/health").status == 200
            except OSError:
                return False

        wait(answers, timeout, f"{self.name} to answer /api/health", interval=0.1)

    def wait_healthy(self, timeout: float = 150) -> dict[str, Any]:
        """Until the engine runs the image's own HEALTHCHECK and it passes (its first probe
        comes one interval, 30 s, after the start)."""

        def healthy() -> dict[str, Any] | None:
            self.assert_running()
            health: dict[str, Any] = inspect(self.name)["State"].get("Health") or {}
            return health if health.get("Status") == "healthy" else None

        result: dict[str, Any] = wait(healthy, timeout, f"{self.name} healthy", interval=0.5)
        return result


def wait(check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    try:
        return poll(check, timeout, what, interval)
    except TimeoutError as err:
        pytest.fail(str(err))


class Containers:
    """Creates managers (and helpers) with unique names; removes all of them and their
    volumes and networks on close, even after a failure."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.networks: list[str] = []

    def name(self, kind: str) -> str:
        return f"{PREFIX}-{kind}-{secrets.token_hex(4)}"

    def volume(self) -> str:
        """A fresh /data volume owned by 568:568 (the supervisor's prepare step does that)."""
        volume = self.name("data")
        docker("volume", "create", volume)
        self.volumes.append(volume)
        docker(
            "run", "--rm", "--network", "none", "--user", "0:0", "--cap-drop", "ALL",
            "--cap-add", "CHOWN", "--mount", f"type=volume,source={volume},target=/data",
            "--entrypoint", "chown", self.image, f"{UID}:{UID}", "/data",
        )  # fmt: skip
        return volume

    def network(self) -> str:
        network = self.name("net")
        docker("network", "create", network)
        self.networks.append(network)
        return network

    def run(self, name: str, *args: str) -> None:
        self.containers.append(name)
        docker("run", "-d", "--name", name, *args)

    def manager(
        self,
        volume: str | None = None,
        network: str = "bridge",
        hardened: bool = True,
        **env: str,
    ) -> Manager:
        volume = volume or self.volume()
        name = self.name("manager")
        environment = {
            "SESSION_SECRET": secrets.token_hex(32),
            "API_CLIENT_ID": "hyos-manager",
            "API_CLIENT_SECRET": secrets.token_hex(16),
            "HYTALE_STATE_DIR": "/data/.state",
            **env,
        }
        flags = supervisor_hardening()[0] if hardened else ["--user", f"{UID}:{UID}"]
        env_flags = [f"--env={key}={value}" for key, value in environment.items()]
        self.run(
            name, *flags, *env_flags,
            "--network", network, "--publish", "127.0.0.1::3000",
            "--mount", f"type=volume,source={volume},target=/data",
            self.image,
        )  # fmt: skip
        address = docker("port", name, "3000/tcp").stdout.split()[0]
        host, port = address.rsplit(":", 1)
        return Manager(name, volume, host, int(port))

    def close(self) -> None:
        if self.containers:
            docker("rm", "-f", "-v", *self.containers, check=False)
        for network in self.networks:
            docker("network", "rm", network, check=False)
        if self.volumes:
            docker("volume", "rm", "-f", *self.volumes, check=False)


@pytest.fixture(scope="module")
def module_containers(manager_image: str) -> Iterator[Containers]:
    made = Containers(manager_image)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def containers(manager_image: str) -> Iterator[Containers]:
    made = Containers(manager_image)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def hardened(module_containers: Containers) -> Manager:
    """One hardened manager, healthy by its own HEALTHCHECK, never set up (read-only tests)."""
    manager = module_containers.manager()
    manager.wait_healthy()
    return manager


def setup_admin(manager: Manager, telemetry_opt_out: bool = False) -> str:
    reply = manager.post("/api/auth/setup", {**ADMIN, "telemetryOptOut": telemetry_opt_out})
    assert reply.status == 200, reply.body
    assert reply.json() == {"success": True}
    session = reply.session()
    assert session is not None, reply.headers
    return session


# --- the image and the hardening ------------------------------------------------------------


def test_image_carries_the_hash_of_what_it_was_built_from(manager_image: str) -> None:
    # Its metadata against HyOS's own Dockerfile: tests/integration/test_replicas.py.
    label = inspect(manager_image)["Config"]["Labels"]["io.hyos.upstream-hash"]
    assert len(label) == 64 and int(label, 16) >= 0


def test_becomes_healthy_by_its_own_healthcheck_under_the_supervisors_hardening(
    hardened: Manager,
) -> None:
    container = inspect(hardened.name)
    _, expected = supervisor_hardening()
    host = container["HostConfig"]
    for key in ("ReadonlyRootfs", "CapDrop", "SecurityOpt", "Tmpfs", "Memory", "PidsLimit", "Init"):
        assert host[key] == expected[key], key
    health = container["State"]["Health"]
    assert health["Status"] == "healthy"
    assert health["Log"][-1]["ExitCode"] == 0, health["Log"][-1]
    # HyOS's probe ran, and nothing else: the image's HEALTHCHECK was not overridden.
    assert container["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", HEALTHCHECK]


def test_every_process_runs_as_568_without_capabilities(hardened: Manager) -> None:
    # PID 1 is the engine's init (the supervisor sets Init), node its child.
    for pid in ("1", hardened.node_pid()):
        status = hardened.proc_status(pid)
        assert status["Uid"].split() == [str(UID)] * 4, (pid, status["Uid"])
        assert status["Gid"].split() == [str(UID)] * 4, (pid, status["Gid"])
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[cap], 16) == 0, (pid, cap, status[cap])
        assert status["NoNewPrivs"] == "1", pid
        assert status["Seccomp"] == "2", pid  # the engine's default profile, filtering


def test_health_and_auth_status_answer(hardened: Manager) -> None:
    health = hardened.get("/api/health")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    status = hardened.get("/api/auth/status")
    assert status.status == 200
    assert status.json() == {"authenticated": False, "needsSetup": True}


def test_read_only_root_leaves_only_tmpfs_and_data_writable(hardened: Manager) -> None:
    denied = hardened.exec("touch", "/app/server.js", "/app/.next/x", "/x", check=False)
    assert denied.returncode != 0
    assert denied.stderr.count("Read-only file system") == 3, denied.stderr
    hardened.exec("touch", "/tmp/x", "/app/.next/cache/x", "/data/x")
    # Next.js's own writes (the image optimizer's cache) land in the tmpfs.
    image = hardened.get("/_next/image?url=%2Ffavicon.ico&w=64&q=75")
    assert image.status == 200, image.body[:300]
    cached = hardened.exec("find", "/app/.next/cache/images", "-type", "f").stdout.split()
    assert cached, "the image optimizer cached nothing"


def test_idle_rss_fits_the_supervisors_memory_limit(
    hardened: Manager, record_property: Any
) -> None:
    status = hardened.proc_status(hardened.node_pid())
    rss_kib = int(status["VmRSS"].split()[0])
    record_property("manager_idle_rss_kib", rss_kib)
    print(f"manager idle RSS: {rss_kib / 1024:.0f} MiB")
    limit = ManagerSettings(image=IMAGE).memory
    # Idle, after its health checks: far below the limit it must also upload worlds in.
    assert rss_kib * 1024 < limit / 2, (rss_kib, limit)


def test_next_writes_nothing_outside_next_cache(containers: Containers) -> None:
    """Without a read-only root, `docker diff` shows where Next.js writes by itself: pages,
    static assets, API routes, first-run setup and the image optimizer write only under
    /app/.next/cache (and /data, a volume, which diff does not show)."""
    manager = containers.manager(hardened=False)
    manager.wait_answering()
    for path in ("/login", "/setup", "/api/auth/status"):
        assert manager.get(path).status == 200, path
    session = setup_admin(manager, telemetry_opt_out=True)
    pages = ("/", "/worlds", "/mods", "/logs", "/commands", "/permissions")
    api = ("/api/server/status", "/api/worlds/slots", "/api/mods", "/api/config")
    for path in pages + api:
        assert manager.get(path, session=session).status == 200, path
    assert manager.get("/_next/image?url=%2Ffavicon.ico&w=64&q=75").status == 200
    changes = docker("diff", manager.name).stdout.splitlines()
    paths = {line.split(" ", 1)[1] for line in changes}
    parents = {"/app", "/app/.next", "/data"}  # changed directories and the mountpoint
    unexpected = sorted(p for p in paths - parents if not f"{p}/".startswith("/app/.next/cache/"))
    assert unexpected == [], changes
    assert any(p.startswith("/app/.next/cache/images/") for p in paths), changes


# --- first-run setup and login through the HTTP API ----------------------------------------


def test_first_run_setup_login_and_an_authenticated_status(containers: Containers) -> None:
    manager = containers.manager()
    manager.wait_answering()
    assert manager.get("/api/auth/status").json() == {"authenticated": False, "needsSetup": True}
    # The middleware turns API calls without the session cookie away.
    refused = manager.get("/api/server/status")
    assert (refused.status, refused.json()) == (401, {"error": "Unauthorized"})

    # Setup creates the admin and logs it in; it works once.
    reply = manager.post("/api/auth/setup", {**ADMIN, "telemetryOptOut": False})
    assert (reply.status, reply.json()) == (200, {"success": True})
    cookie = reply.set_cookie()
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower(), cookie
    again = manager.post("/api/auth/setup", {"username": "mallory", "password": "x" * 12})
    assert (again.status, again.json()) == (403, {"error": "Setup has already been completed"})

    # The user lives in HYTALE_STATE_DIR on the data volume, bcrypt-hashed, owned by 568.
    users = json.loads(manager.exec("cat", "/data/.state/users.json").stdout)["users"]
    assert [u["username"] for u in users] == [ADMIN["username"]]
    assert users[0]["passwordHash"].startswith("$2")
    owner = manager.exec("stat", "-c", "%u:%g", "/data/.state", "/data/.state/users.json")
    assert owner.stdout.split() == [f"{UID}:{UID}"] * 2

    # Login: wrong password refused, right one (case-insensitive username) answered with
    # a session cookie that the dashboard's API accepts.
    wrong = manager.post("/api/auth/login", {"username": "admin", "password": "nope"})
    assert (wrong.status, wrong.json()) == (401, {"error": "Invalid username or password"})
    login = manager.post("/api/auth/login", {"username": "ADMIN", "password": ADMIN["password"]})
    assert (login.status, login.json()) == (200, {"success": True})
    session = login.session()
    assert manager.get("/api/auth/status", session=session).json() == {
        "authenticated": True,
        "needsSetup": False,
        "username": "admin",
    }
    status = manager.get("/api/server/status", session=session)
    assert status.status == 200, status.body
    # No server and no Docker socket here: the dashboard reports it stopped.
    assert status.json()["online"] is False
    assert status.json()["state"] == "stopped"

    logout = manager.post("/api/auth/logout", session=session)
    assert logout.status == 200
    assert "Max-Age=0" in logout.set_cookie() or "Expires=Thu, 01 Jan 1970" in logout.set_cookie()


# --- how it reaches the server's REST API --------------------------------------------------

FAKE_API = r"""
const http = require("http");
const { EXPECT_ID, EXPECT_SECRET } = process.env;
http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    console.log(JSON.stringify({ method: req.method, url: req.url,
                                 auth: req.headers.authorization || null, body }));
    const send = (code, obj) => {
      res.writeHead(code, { "content-type": "application/json" });
      res.end(JSON.stringify(obj));
    };
    if (req.url === "/health") return send(200, { status: "ok" });
    if (req.method === "POST" && req.url === "/auth/token") {
      const creds = JSON.parse(body || "{}");
      if (creds.clientId !== EXPECT_ID || creds.secret !== EXPECT_SECRET)
        return send(401, { error: "invalid client" });
      return send(200, { access_token: "fake-token", token_type: "Bearer", expires_in: 3600 });
    }
    if (req.url === "/server/status") {
      if (req.headers.authorization !== "Bearer fake-token") return send(401, { error: "no" });
      return send(200, { name: "Fake Hytale", motd: "hi", playerCount: 1, maxPlayers: 10,
                         uptime: 42, memory: { used: 1, max: 4, free: 3 }, online: true });
    }
    send(404, { error: "not found" });
  });
}).listen(30381, "0.0.0.0");
"""


def fake_server_api(made: Containers, network: str, client_id: str, secret: str) -> str:
    """A stand-in for the server's REST API plugin at HyOS's default address
    (hyos-server:30381), checking credentials the way the plugin does and logging each
    request as a JSON line."""
    name = made.name("fake-api")
    hardening = supervisor_hardening()[0]
    made.run(
        name, *hardening, "--network", network, "--network-alias", "hyos-server",
        f"--env=EXPECT_ID={client_id}", f"--env=EXPECT_SECRET={secret}",
        made.image, "node", "-e", FAKE_API,
    )  # fmt: skip
    return name


def api_requests(name: str) -> list[dict[str, Any]]:
    out = docker("logs", name).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_status_reaches_the_server_api_by_name_with_the_env_credentials(
    containers: Containers,
) -> None:
    network = containers.network()
    client_id, secret = "hyos-manager", secrets.token_hex(16)
    fake = fake_server_api(containers, network, client_id, secret)
    manager = containers.manager(network=network, API_CLIENT_ID=client_id, API_CLIENT_SECRET=secret)
    manager.wait_answering()
    session = setup_admin(manager)
    status = manager.get("/api/server/status", session=session)
    assert status.status == 200, status.body
    assert status.json()["online"] is True
    assert status.json()["name"] == "Fake Hytale"
    assert status.json()["state"] == "running"
    seen = [(r["method"], r["url"]) for r in api_requests(fake)]
    assert seen[:3] == [("GET", "/health"), ("POST", "/auth/token"), ("GET", "/server/status")]
    token_request = api_requests(fake)[1]
    assert json.loads(token_request["body"]) == {"clientId": client_id, "secret": secret}


def test_upstream_setup_with_telemetry_opt_out_freezes_the_api_secret_on_the_volume(
    containers: Containers,
) -> None:
    """Upstream behaviour the supervisor must live with: first-run setup with the telemetry
    opt-out saves the whole merged config, including API_CLIENT_SECRET from the environment,
    to /data/.state/manager-config.json, and that file outranks the environment afterwards.
    A rotated secret in the environment is then ignored until the file is changed."""
    network = containers.network()
    volume = containers.volume()
    old, new = secrets.token_hex(16), secrets.token_hex(16)
    first = containers.manager(volume=volume, network=network, API_CLIENT_SECRET=old)
    first.wait_answering()
    setup_admin(first, telemetry_opt_out=True)
    saved = json.loads(first.exec("cat", "/data/.state/manager-config.json").stdout)
    assert saved["apiClientSecret"] == old
    assert saved["telemetryEnabled"] is False
    docker("rm", "-f", first.name)

    # The secret is rotated: the API now expects `new`, the manager's environment says `new`.
    fake = fake_server_api(containers, network, "hyos-manager", new)
    second = containers.manager(volume=volume, network=network, API_CLIENT_SECRET=new)
    second.wait_answering()
    login = second.post("/api/auth/login", ADMIN)
    assert login.status == 200, login.body
    status = second.get("/api/server/status", session=login.session())
    assert status.status == 200
    assert status.json()["online"] is False  # refused by the API
    sent = [json.loads(r["body"]) for r in api_requests(fake) if r["url"] == "/auth/token"]
    assert sent and all(body["secret"] == old for body in sent), sent


def test_upstream_middleware_lets_any_session_cookie_value_through(hardened: Manager) -> None:
    """Upstream behaviour the threat model must assume: the middleware checks only that a
    `hyos_session` cookie is present, and only the /api/auth routes decrypt it. Any value
    reaches every other API route (server start/stop/restart, worlds, mods) unauthenticated,
    so the dashboard port must not be reachable by anyone the operator does not trust."""
    assert hardened.get("/api/server/status").status == 401
    forged = hardened.get("/api/server/status", session="forged")
    assert forged.status == 200, forged.body
    # The session itself is not valid: the auth routes see no user.
    assert hardened.get("/api/auth/status", session="forged").json()["authenticated"] is False
