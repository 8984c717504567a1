"""The Docker API guard in front of the real engine, driven by the docker CLI and raw HTTP."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from supervisor.guard import serve_guard
from supervisor.guard_rules import Policy
from tests.standin import SERVER_IMAGE

# One xdist worker runs the whole module: its module-scoped fixtures are built once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("guard")]

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
UPSTREAM = "/var/run/docker.sock"
GRACE_S = 30
# sh as PID 1 ignores SIGTERM unless trapped; the short sleep lets the trap run quickly.
SERVER_SCRIPT = 'trap "exit 0" TERM; echo hello-guard; while :; do echo tick; sleep 0.3; done'


def _docker_direct(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{UPSTREAM}"}
    return subprocess.run(
        [DOCKER, *args], env=env, capture_output=True, text=True, check=check, timeout=120
    )


def _wait_for(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def image(test_images: None) -> str:
    """Any busybox image will do; the stand-in server is one (its commands are given)."""
    return SERVER_IMAGE


@dataclass
class Env:
    stack: str
    sock: Path
    server: str
    server_id: str
    other: str
    other_id: str
    manager: str
    config_dir: Path

    def docker(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.sock}",
            "DOCKER_CONFIG": str(self.config_dir),
            "DOCKER_CLI_HINTS": "false",
        }
        return subprocess.run(
            [DOCKER, *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.sock}",
            "DOCKER_CONFIG": str(self.config_dir),
        }
        return subprocess.Popen(
            [DOCKER, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@pytest.fixture(scope="module")
def env(image: str) -> Iterator[Env]:
    prefix = "hyos-guard-test-" + secrets.token_hex(4)
    stack = prefix
    tmp = Path(tempfile.mkdtemp(prefix="hyos-guard-test-"))
    names = [f"{prefix}-srv", f"{prefix}-other", f"{prefix}-mgr"]
    labels = ["io.hyos.managed=true", f"io.hyos.stack={stack}"]
    try:
        lab = [a for lb in labels for a in ("--label", lb)]
        srv_id = _docker_direct(
            "run",
            "-d",
            "--name",
            names[0],
            *lab,
            "--label",
            "io.hyos.role=server",
            "--user",
            "568:568",
            image,
            "sh",
            "-c",
            SERVER_SCRIPT,
        ).stdout.strip()
        other_id = _docker_direct(
            "run", "-d", "--name", names[1], image, "sleep", "3600"
        ).stdout.strip()
        _docker_direct("create", "--name", names[2], *lab, "--label", "io.hyos.role=manager", image)
        sock = tmp / "run" / "docker.sock"  # parent does not exist yet: the guard makes it
        with start_blocking_portal() as portal:
            policy = Policy(stack, min_stop_timeout=GRACE_S)
            future, _ = portal.start_task(partial(serve_guard, sock, UPSTREAM, policy, os.getgid()))
            try:
                yield Env(stack, sock, names[0], srv_id, names[1], other_id, names[2], tmp / "cfg")
            finally:
                future.cancel()
    finally:
        _docker_direct("rm", "-f", *names, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def raw_http(sock: Path, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send raw bytes, read the whole answer (the guard always closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(request)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    status = int(buf.split(b" ", 2)[1])
    return status, buf.partition(b"\r\n\r\n")[2]


def get(target: str, method: str = "GET", body: bytes = b"", json_body: bool = False) -> bytes:
    ctype = "Content-Type: application/json\r\n" if json_body else ""
    return (
        f"{method} {target} HTTP/1.1\r\nHost: docker\r\n{ctype}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def assert_denied(proc: subprocess.CompletedProcess[str], rule: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert f"denied by rule '{rule}'" in proc.stderr, proc.stderr


# --- the socket itself ---------------------------------------------------------------------


def test_socket_mode_and_group(env: Env) -> None:
    st = env.sock.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == os.getgid()
    # The private bind directory is gone: only the socket is left in the parent.
    assert [p.name for p in env.sock.parent.iterdir()] == ["docker.sock"]


# --- allowed verbs through the docker CLI --------------------------------------------------


def test_version_and_ps_show_only_the_stack_server(env: Env) -> None:
    assert env.docker("version", "--format", "{{.Server.APIVersion}}").returncode == 0
    ps = env.docker("ps", "-a", "--no-trunc", "--format", "{{.Names}}")
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout.split() == [env.server]
    # A client filter cannot widen the forced one.
    ps = env.docker("ps", "-a", "--filter", "label=io.hyos.role=manager", "--format", "{{.Names}}")
    assert ps.returncode == 0 and ps.stdout.split() == []


def test_inspect_and_logs(env: Env) -> None:
    out = env.docker("container", "inspect", env.server, "--format", "{{.Id}}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == env.server_id
    # By id prefix too: Docker's own lookup rules, then the label check.
    out = env.docker("container", "inspect", env.server_id[:12], "--format", "{{.Name}}")
    assert out.stdout.strip() == "/" + env.server
    _wait_for(lambda: "hello-guard" in env.docker("logs", env.server).stdout, "server logs")
    stats = env.docker("stats", "--no-stream", "--format", "{{.Name}}", env.server)
    assert stats.returncode == 0, stats.stderr
    assert env.server in stats.stdout


def test_logs_follow_streams(env: Env) -> None:
    proc = env.popen("logs", "-f", "--tail", "0", env.server)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        ticks = 0
        # Lines arriving one by one while the container runs prove nothing is buffered.
        while ticks < 3 and time.monotonic() < deadline:
            if proc.stdout.readline().strip() == "tick":
                ticks += 1
        assert ticks == 3
        assert proc.poll() is None  # still following
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _state(name: str) -> str:
    return _docker_direct("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


def _exit_code(name: str) -> int:
    return int(_docker_direct("inspect", "--format", "{{.State.ExitCode}}", name).stdout)


def test_stop_start_restart(env: Env) -> None:
    before = _docker_direct("inspect", "--format", "{{.State.StartedAt}}", env.server).stdout
    # Asked for no grace at all, the server still gets its SIGTERM and time to save:
    # its trap exits 0, where a SIGKILL after 0 s would show 137.
    assert env.docker("stop", "-t", "0", env.server).returncode == 0
    assert _state(env.server) == "exited"
    assert _exit_code(env.server) == 0
    r = env.docker("start", env.server)
    assert r.returncode == 0, r.stderr
    assert _state(env.server) == "running"
    r = env.docker("restart", "-t", "2", env.server_id)
    assert r.returncode == 0, r.stderr
    after = _docker_direct("inspect", "--format", "{{.State.StartedAt}}", env.server).stdout
    assert after != before and _state(env.server) == "running"


def test_exec_non_root(env: Env) -> None:
    r = env.docker("exec", env.server, "id", "-u")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "568"
    r = env.docker("exec", "-u", "1000:1000", env.server, "id", "-u")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1000"
    # stdin through the hijacked connection, and the exit code via GET /exec/{id}/json.
    r = env.docker("exec", "-i", env.server, "sh", "-c", "cat; exit 3", input="through-guard\n")
    assert r.stdout == "through-guard\n"
    assert r.returncode == 3


# --- denied through the docker CLI ---------------------------------------------------------


def test_cli_denials(env: Env, image: str) -> None:
    assert_denied(env.docker("exec", "-u", "root", env.server, "id"), "exec-user")
    assert_denied(env.docker("exec", "-u", "0:0", env.server, "id"), "exec-user")
    assert_denied(env.docker("exec", "--privileged", env.server, "id"), "exec-privileged")
    assert_denied(env.docker("run", "--rm", "--privileged", image, "true"), "not-in-allowlist")
    assert_denied(env.docker("create", "-v", "/:/host", image), "not-in-allowlist")
    assert_denied(env.docker("stop", env.other), "container-not-in-stack")
    assert_denied(env.docker("start", env.other), "container-not-in-stack")
    assert_denied(env.docker("start", env.manager), "container-not-in-stack")
    assert_denied(env.docker("exec", env.other, "id"), "container-not-in-stack")
    assert_denied(env.docker("container", "inspect", env.other), "container-not-in-stack")
    assert_denied(env.docker("logs", env.other_id), "container-not-in-stack")
    assert_denied(env.docker("images"), "not-in-allowlist")
    assert_denied(env.docker("volume", "ls"), "not-in-allowlist")
    assert_denied(env.docker("rm", "-f", env.server), "not-in-allowlist")
    assert _state(env.other) == "running"
    assert _state(env.server) == "running"


# --- denied with raw HTTP ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fn", "rule"),
    [
        (lambda e: get("/containers/create", "POST", b'{"Image":"x"}'), "not-in-allowlist"),
        (lambda e: get("/v1.41/containers/create", "POST", b"{}"), "not-in-allowlist"),
        (lambda e: get("/images/json"), "not-in-allowlist"),
        (lambda e: get("/v1.41/images/create?fromImage=x", "POST"), "not-in-allowlist"),
        (lambda e: get("/volumes"), "not-in-allowlist"),
        (lambda e: get("/volumes/json"), "not-in-allowlist"),
        (lambda e: get("/containers/../images/json"), "path"),
        (lambda e: get("/v1.41/../../images/json"), "path"),
        (lambda e: get("//containers/json"), "path"),
        (lambda e: get("/containers/%2e%2e/images/json"), "path-encoding"),
        (lambda e: get(f"/containers/{e.server.replace('-', '%2D')}/json"), "path-encoding"),
        (lambda e: get(f"/containers/{e.server}%2Fjson"), "path-encoding"),
        (lambda e: get("/v9999/containers/json"), "api-version"),
        (
            lambda e: get(
                f"/v1.23/containers/{e.server}/start",
                "POST",
                b'{"Privileged":true,"Binds":["/:/host"]}',
            ),
            "api-version",
        ),
        (
            lambda e: get(
                f"/containers/{e.server}/start", "POST", b'{"Privileged":true,"Binds":["/:/host"]}'
            ),
            "body-not-allowed",
        ),
        (lambda e: get(f"/v1.41/containers/{e.other_id}/json"), "container-not-in-stack"),
        (
            lambda e: get(f"/containers/{e.server}/exec", "POST", b'{"Cmd":["id"],"user":"root"}'),
            "exec-user",
        ),
        (
            lambda e: (
                b"POST /containers/create HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\n{}\r\n0\r\n\r\n"
            ),
            "chunked-body",
        ),
    ],
)
def test_raw_denials(env: Env, request_fn: Callable[[Env], bytes], rule: str) -> None:
    status, body = raw_http(env.sock, request_fn(env))
    assert status == 403, body
    assert json.loads(body)["message"].startswith(f"denied by rule '{rule}'")


def test_raw_allowed_and_no_smuggling(env: Env) -> None:
    status, body = raw_http(env.sock, get(f"/v1.41/containers/{env.server}/json"))
    assert status == 200
    # A second request pipelined behind an allowed one never reaches Docker.
    status, body = raw_http(env.sock, get("/_ping") + get("/images/json") + get("/info"))
    assert status == 200
    assert body.endswith(b"OK") or b"OK" in body
    assert b"RepoTags" not in body and b"KernelVersion" not in body


def test_malformed_head_gets_400(env: Env) -> None:
    status, body = raw_http(env.sock, b"GET /_ping HTTP/1.1\r\n folded\r\n\r\n")
    assert status == 400
    assert "denied by rule 'bad-request'" in json.loads(body)["message"]


# --- events --------------------------------------------------------------------------------


def test_events_forced_to_the_stack(env: Env) -> None:
    since = int(time.time()) - 1
    _docker_direct("kill", "-s", "USR1", env.other)
    _docker_direct("kill", "-s", "USR1", env.server)
    until = int(time.time()) + 1
    # `type=image` is overridden to container; the other container's kill is filtered out.
    r = env.docker(
        "events",
        "--since",
        str(since),
        "--until",
        str(until),
        "--filter",
        "type=image",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f"container kill {env.server}" in lines
    assert all(line.endswith(" " + env.server) for line in lines), lines
    assert all(line.startswith("container ") for line in lines), lines


# --- logging -------------------------------------------------------------------------------


def test_decisions_are_logged(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="supervisor.guard"):
        raw_http(env.sock, get("/images/json"))
        raw_http(env.sock, get("/_ping"))
    # The structured fields each decision line carries (as logging `extra`).
    recs = [vars(r) for r in caplog.records if r.name == "supervisor.guard" and hasattr(r, "rule")]
    denied = [r for r in recs if r["rule"] == "not-in-allowlist"]
    assert denied and denied[0]["allowed"] is False and denied[0]["path"] == "/images/json"
    assert denied[0]["method"] == "GET"
    assert any(r["rule"] == "ping" and r["allowed"] is True for r in recs)


# --- attacks on the real engine: smuggling, users, the world save, framing ----------------


def _exec_create(env: Env, cmd: list[str]) -> str:
    body = json.dumps(
        {"Cmd": cmd, "AttachStdin": True, "AttachStdout": True, "AttachStderr": True}
    ).encode()
    status, answer = raw_http(
        env.sock, get(f"/containers/{env.server}/exec", "POST", body, json_body=True)
    )
    assert status == 201, answer
    exec_id: str = json.loads(answer)["Id"]
    return exec_id


def _exec_create_as(env: Env, cmd: list[str], user: str) -> str:
    body = json.dumps({"Cmd": cmd, "User": user, "AttachStdout": True, "AttachStderr": True})
    status, out = raw_http(env.sock, get(f"/containers/{env.server}/exec", "POST", body.encode(), True))  # fmt: skip
    assert status == 201, out
    exec_id: str = json.loads(out)["Id"]
    return exec_id


def _exec_start(prefix: str, exec_id: str, body: bytes, content_type: str) -> bytes:
    return (
        f"POST {prefix}/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
        f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _smuggled(name: str) -> bytes:
    """Two requests the guard must never let through: a volume and a container binding /."""
    volume = json.dumps({"Name": name}).encode()
    container = json.dumps(
        {"Image": SERVER_IMAGE, "HostConfig": {"Privileged": True, "Binds": ["/:/host"]}}
    ).encode()
    return get("/volumes/create", "POST", volume, json_body=True) + get(
        f"/containers/create?name={name}", "POST", container, json_body=True
    )


def _send_and_read(sock: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(sock))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # lets a `cat` exec end if the stream was upgraded
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize(
    ("shape", "prefix", "body", "content_type", "started_before"),
    [
        ("detached start", "", b'{"Detach":true}', "application/json", False),
        ("malformed body", "", b"{", "application/json", False),
        ("text/plain start", "", b'{"Detach":false}', "text/plain", False),
        ("version the engine refuses", "/v1.99", b'{"Detach":false}', "application/json", False),
        ("engine answers an error (exec already ran)", "", b'{"Detach":false}',
         "application/json", True),
    ],
)  # fmt: skip
def test_no_request_smuggling_after_exec_start(
    env: Env, shape: str, prefix: str, body: bytes, content_type: str, started_before: bool
) -> None:
    name = "hyos-smuggled-" + secrets.token_hex(4)
    exec_id = _exec_create(env, ["cat"])
    if started_before:
        out = _send_and_read(env.sock, _exec_start("", exec_id, b'{"Detach":true}', "x"))
        # The guard refuses a detached start that asks for an Upgrade; start it plainly.
        assert b"Detach cannot be combined with Upgrade" in out
        detached = get(f"/exec/{exec_id}/start", "POST", b'{"Detach":true}', json_body=True)
        assert raw_http(env.sock, detached)[0] == 200
    out = _send_and_read(
        env.sock, _exec_start(prefix, exec_id, body, content_type) + _smuggled(name)
    )
    assert out, shape
    # Neither smuggled request reached Docker.
    assert _docker_direct("volume", "inspect", name, check=False).returncode != 0, shape
    assert _docker_direct("container", "inspect", name, check=False).returncode != 0, shape
    _docker_direct("volume", "rm", "-f", name, check=False)
    _docker_direct("rm", "-f", name, check=False)


@pytest.mark.parametrize(
    "user", ["4294967296", "4294967296:4294967296", "568:4294967296", "2147483648", "0", "root"]
)
def test_exec_users_that_are_or_wrap_to_root_are_refused(env: Env, user: str) -> None:
    assert_denied(env.docker("exec", "-u", user, env.server, "id"), "exec-user")


def _groups(id_output: str) -> tuple[int, set[int]]:
    """(gid, supplementary gids) from busybox's or coreutils' `id` output."""
    fields = dict(f.split("=", 1) for f in id_output.split() if "=" in f)
    gid = int(fields["gid"].split("(")[0])
    groups = {int(g.split("(")[0]) for g in fields.get("groups", "").split(",") if g}
    return gid, groups


@pytest.mark.parametrize("user", ["568", "12345", "1", "2147483647", "12345:12345"])
def test_no_exec_runs_in_group_0(env: Env, user: str) -> None:
    """runc gives a uid with no passwd entry gid 0: through c7d2e34's guard `-u 12345`
    ran as `uid=12345 gid=0 groups=0`. Now a bare uid runs in the service's group."""
    r = env.docker("exec", "-u", user, env.server, "id")
    assert r.returncode == 0, r.stderr
    gid, groups = _groups(r.stdout)
    assert gid != 0 and 0 not in groups, r.stdout
    assert r.stdout.startswith(f"uid={user.split(':')[0]}")
    # The same with a raw body, started over the raw socket.
    exec_id = _exec_create_as(env, ["id"], user)
    out = _send_and_read(
        env.sock, _exec_start("", exec_id, b'{"Detach":false}', "application/json")
    )
    text = out.partition(b"\r\n\r\n")[2].decode("latin-1")
    gid, groups = _groups(text[text.index("uid=") :])
    assert gid != 0 and 0 not in groups, text


@pytest.mark.parametrize("user", ["hytale", "nobody", "568:root", "daemon:568"])
def test_exec_users_given_by_name_are_refused(env: Env, user: str) -> None:
    assert_denied(env.docker("exec", "-u", user, env.server, "id"), "exec-user")


def test_start_checkpoint_options_never_reach_the_engine(env: Env) -> None:
    for query in ("checkpoint=c1&checkpoint-dir=/tmp/hyos-guard", "checkpoint=c1"):
        status, body = raw_http(env.sock, get(f"/containers/{env.server}/start?{query}", "POST"))
        assert status == 403, body
        assert b"denied by rule 'query-param'" in body


def test_a_content_length_of_5000_digits_gets_an_answer(env: Env) -> None:
    head = (
        f"POST /containers/{env.server}/exec HTTP/1.1\r\nHost: docker\r\n"
        f"Content-Length: {'9' * 5000}\r\n\r\n"
    ).encode()
    status, body = raw_http(env.sock, head)
    assert status == 413, body


def test_the_stop_signal_cannot_be_chosen(env: Env) -> None:
    for target in (
        f"/containers/{env.server}/stop?signal=SIGKILL&t=0",
        f"/v1.41/containers/{env.server}/restart?signal=KILL",
    ):
        status, body = raw_http(env.sock, get(target, "POST"))
        assert status == 403 and b"stop-signal" in body
    status, body = raw_http(
        env.sock, get(f"/containers/{env.server}/stop", "POST", b'{"signal":"SIGKILL"}', True)
    )
    assert status == 403 and b"stop-signal" in body
    assert _state(env.server) == "running"


def test_half_closed_client_gets_its_answer(env: Env) -> None:
    out = _send_and_read(env.sock, get(f"/containers/{env.server}/json"))
    assert out.startswith(b"HTTP/1.1 200 ")
    assert env.server_id.encode() in out


def test_deep_json_nesting_is_a_400(env: Env) -> None:
    status, body = raw_http(
        env.sock, get(f"/containers/{env.server}/exec", "POST", b"[" * 60000, json_body=True)
    )
    assert status == 400 and b"nested too deeply" in body


# --- the manager's own client: dockerode 4 -------------------------------------------------

CLIENTS = Path(__file__).resolve().parents[1] / "clients"


def test_dockerode_replays_the_managers_calls(env: Env) -> None:
    """HyOS's manager's Docker calls (src/lib/docker.ts) with its client, dockerode 4, which
    sends `{"t":30}` bodies on stop and restart and echoes its options on exec start."""
    if not (CLIENTS / "node_modules" / "dockerode").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("dockerode is not installed: npm ci --prefix tests/clients")
        pytest.skip("dockerode is not installed: npm ci --prefix tests/clients")
    done = subprocess.run(
        ["node", str(CLIENTS / "manager-calls.js"), str(env.sock), env.server],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["ping"] == {"ok": True, "value": "OK"}
    assert results["inspect"]["value"]["running"] is True
    assert results["logs"]["ok"] and results["logs"]["value"] > 0
    assert results["exec"]["value"] == {"exitCode": 0, "output": "568"}
    assert results["stop"] == {"ok": True, "value": "exited"}
    assert results["start"] == {"ok": True, "value": "running"}
    assert results["restart"] == {"ok": True, "value": {"status": "running", "restarted": True}}
    # ...and what a compromised dashboard would try with the same client is refused.
    for denied, rule in (("volumes", "not-in-allowlist"), ("create", "not-in-allowlist"),
                         ("root-exec", "exec-user")):  # fmt: skip
        assert results[denied]["ok"] is False, results[denied]
        assert results[denied]["status"] == 403
        assert f"denied by rule '{rule}'" in results[denied]["error"]
    assert _state(env.server) == "running"
