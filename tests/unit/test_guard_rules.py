"""Allow/deny table, forced filters, exec bodies and a property test for the guard rules."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from entrypoint.contract import LABEL_MANAGED, LABEL_ROLE, LABEL_STACK
from supervisor import guard_rules as r
from supervisor.dockertypes import ExecInfo
from tests import docker_model

STACK = "s1"
SERVER_ID = "a" * 64
OTHER_ID = "b" * 64
MANAGER_ID = "c" * 64
FOREIGN_ID = "d" * 64
EXEC_OK = "1" * 64
EXEC_ROOT = "2" * 64
EXEC_OTHER = "3" * 64
EXEC_PRIV = "4" * 64

SERVER = r.Resolution(SERVER_ID, {LABEL_MANAGED: "true", LABEL_STACK: STACK, LABEL_ROLE: "server"})
CONTAINERS = {
    "srv": SERVER,
    SERVER_ID: SERVER,
    "aaaa": SERVER,
    "other": r.Resolution(OTHER_ID, {}),
    OTHER_ID: r.Resolution(OTHER_ID, {}),
    "mgr": r.Resolution(
        MANAGER_ID, {LABEL_MANAGED: "true", LABEL_STACK: STACK, LABEL_ROLE: "manager"}
    ),
    "foreign": r.Resolution(
        FOREIGN_ID, {LABEL_MANAGED: "true", LABEL_STACK: "s2", LABEL_ROLE: "server"}
    ),
    # Labelled right but not managed: refused too.
    "unmanaged": r.Resolution("e" * 64, {LABEL_STACK: STACK, LABEL_ROLE: "server"}),
}
EXECS = {
    EXEC_OK: ExecInfo(EXEC_OK, SERVER_ID, "568:568", False),
    EXEC_ROOT: ExecInfo(EXEC_ROOT, SERVER_ID, "root", False),
    EXEC_OTHER: ExecInfo(EXEC_OTHER, OTHER_ID, "", False),
    EXEC_PRIV: ExecInfo(EXEC_PRIV, SERVER_ID, "", True),
}


POLICY = r.Policy(STACK, min_stop_timeout=60, max_api_minor=41)


T = TypeVar("T")


def _at_once(step: Coroutine[Any, Any, T]) -> T:
    """A coroutine whose awaits never suspend (table lookups), run to its result."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise AssertionError("a lookup suspended")


def decide_with(
    method: str,
    target: str,
    body: bytes,
    policy: r.Policy,
    containers: Callable[[str], r.Resolution | None] = lambda _ref: None,
    execs: Callable[[str], ExecInfo | None] = lambda _id: None,
    head: r.Head | None = None,
) -> r.Decision:
    """What the guard decides, by its own path: `decide_head` with these tables as its
    lookups, then `accept_body` for an allowed head (the guard reads the body between)."""

    async def container(ref: str) -> r.Resolution | None:
        return containers(ref)

    async def exec_info(exec_id: str) -> ExecInfo | None:
        return execs(exec_id)

    head = head or r.Head(method, target)
    first = _at_once(r.decide_head(head, policy, container, exec_info))
    return first if isinstance(first, r.Deny) else r.accept_body(first, body, head, policy)


def decide(method: str, target: str, body: bytes = b"", head: r.Head | None = None) -> r.Decision:
    return decide_with(method, target, body, POLICY, CONTAINERS.get, EXECS.get, head)


def rule_of(method: str, target: str, body: bytes = b"") -> str:
    d = decide(method, target, body)
    return ("allow:" if isinstance(d, r.Allow) else "deny:") + d.rule


EXEC_BODY = json.dumps({"Cmd": ["id"], "AttachStdout": True}).encode()

CASES: list[tuple[str, str, bytes, str]] = [
    # allowed
    ("GET", "/_ping", b"", "allow:ping"),
    ("HEAD", "/_ping", b"", "allow:ping"),
    ("GET", "/v1.41/_ping", b"", "allow:ping"),
    ("GET", "/version", b"", "allow:version"),
    ("GET", "/v1.41/containers/json", b"", "allow:container-list"),
    ("GET", "/v1.24/containers/json", b"", "allow:container-list"),
    ("GET", "/containers/json?all=1", b"", "allow:container-list"),
    ("GET", "/v1.41/containers/srv/json", b"", "allow:container-inspect"),
    ("GET", f"/containers/{SERVER_ID}/json", b"", "allow:container-inspect"),
    ("GET", "/containers/aaaa/logs?follow=1&stdout=1", b"", "allow:container-logs"),
    ("GET", "/containers/srv/stats?stream=0", b"", "allow:container-stats"),
    ("POST", "/v1.41/containers/srv/start", b"", "allow:container-start"),
    ("POST", "/containers/srv/stop?t=5", b"", "allow:container-stop"),
    ("POST", "/containers/srv/restart", b"", "allow:container-restart"),
    ("POST", "/v1.41/containers/srv/exec", EXEC_BODY, "allow:exec-create"),
    ("POST", f"/v1.41/exec/{EXEC_OK}/start", b'{"Detach":false}', "allow:exec-start"),
    ("GET", f"/exec/{EXEC_OK}/json", b"", "allow:exec-inspect"),
    ("GET", "/v1.41/events?since=1", b"", "allow:events"),
    # the wrong container
    ("POST", "/containers/other/start", b"", "deny:container-not-in-stack"),
    ("POST", f"/containers/{OTHER_ID}/stop", b"", "deny:container-not-in-stack"),
    ("GET", "/containers/mgr/json", b"", "deny:container-not-in-stack"),
    ("GET", "/containers/foreign/logs", b"", "deny:container-not-in-stack"),
    ("POST", "/containers/unmanaged/start", b"", "deny:container-not-in-stack"),
    ("GET", "/containers/nosuch/json", b"", "deny:container-not-in-stack"),
    ("POST", "/containers/other/exec", EXEC_BODY, "deny:container-not-in-stack"),
    # the wrong exec
    ("POST", f"/exec/{EXEC_OTHER}/start", b"{}", "deny:exec-not-in-stack"),
    ("GET", f"/exec/{EXEC_OTHER}/json", b"", "deny:exec-not-in-stack"),
    ("POST", f"/exec/{'9' * 64}/start", b"{}", "deny:exec-not-in-stack"),
    ("POST", f"/exec/{EXEC_ROOT}/start", b"{}", "deny:exec-user"),
    ("POST", f"/exec/{EXEC_PRIV}/start", b"{}", "deny:exec-privileged"),
    ("POST", "/exec/1234/start", b"{}", "deny:exec-ref"),
    # not in the allowlist
    ("POST", "/containers/create", b"{}", "deny:not-in-allowlist"),
    ("POST", "/v1.41/containers/create?name=x", b"{}", "deny:not-in-allowlist"),
    ("GET", "/images/json", b"", "deny:not-in-allowlist"),
    ("POST", "/images/create?fromImage=alpine", b"", "deny:not-in-allowlist"),
    ("GET", "/volumes", b"", "deny:not-in-allowlist"),
    ("GET", "/volumes/json", b"", "deny:not-in-allowlist"),
    ("DELETE", "/containers/srv", b"", "deny:not-in-allowlist"),
    ("POST", "/containers/srv/kill", b"", "deny:not-in-allowlist"),
    ("POST", "/containers/srv/attach?stream=1", b"", "deny:not-in-allowlist"),
    ("GET", "/containers/srv/archive?path=/", b"", "deny:not-in-allowlist"),
    ("PUT", "/containers/srv/archive?path=/", b"", "deny:not-in-allowlist"),
    ("POST", "/containers/srv/update", b"{}", "deny:not-in-allowlist"),
    ("GET", "/containers/srv/export", b"", "deny:not-in-allowlist"),
    ("DELETE", "/containers/srv/json", b"", "deny:not-in-allowlist"),
    ("POST", "/containers/srv/json", b"", "deny:not-in-allowlist"),
    ("GET", "/containers/srv/start", b"", "deny:not-in-allowlist"),
    ("HEAD", "/version", b"", "deny:not-in-allowlist"),
    ("get", "/_ping", b"", "deny:not-in-allowlist"),
    ("GET", "/containers/a/b/json", b"", "deny:not-in-allowlist"),
    ("POST", "/exec/x/resize", b"", "deny:not-in-allowlist"),
    ("GET", "/info", b"", "deny:not-in-allowlist"),
    ("POST", "/build", b"", "deny:not-in-allowlist"),
    ("GET", "/secrets", b"", "deny:not-in-allowlist"),
    ("POST", "/session", b"", "deny:not-in-allowlist"),
    ("GET", "/v1.41", b"", "deny:not-in-allowlist"),
    # path tricks
    ("GET", "/containers/../images/json", b"", "deny:path"),
    ("GET", "/containers/%2e%2e/images/json", b"", "deny:path-encoding"),
    ("GET", "/containers/%2E%2E/images", b"", "deny:path-encoding"),
    ("GET", "/containers/srv%2Fjson", b"", "deny:path-encoding"),
    ("GET", "/containers/%73rv/json", b"", "deny:path-encoding"),
    ("GET", "//containers/json", b"", "deny:path"),
    ("GET", "/containers//json", b"", "deny:path"),
    ("GET", "/containers/json/", b"", "deny:path"),
    ("GET", "/v1.41/../../images/json", b"", "deny:path"),
    ("GET", "/v1.41/./containers/json", b"", "deny:path"),
    ("GET", "/containers/srv/./json", b"", "deny:path"),
    ("GET", "/containers\\..\\images/json", b"", "deny:path"),
    ("GET", "/containers/srv\0/json", b"", "deny:path"),
    ("GET", "/containers/sr v/json", b"", "deny:path"),
    ("GET", "/containers/srv/json#x", b"", "deny:path"),
    ("GET", "/containers/sr\u00e9/json", b"", "deny:path"),
    ("GET", "http://docker/containers/json", b"", "deny:path"),
    ("GET", "*", b"", "deny:path"),
    ("GET", "/containers/.srv/json", b"", "deny:container-ref"),
    # version prefixes: v1.24+ only (older versions let start carry a HostConfig)
    ("POST", "/v1.23/containers/srv/start", b"", "deny:api-version"),
    ("GET", "/v1.12/containers/json", b"", "deny:api-version"),
    ("GET", "/v9999/containers/json", b"", "deny:api-version"),
    # ... and never newer than the engine: it would answer plain HTTP to a hijack
    ("GET", "/v1.42/containers/json", b"", "deny:api-version"),
    ("POST", f"/v1.99/exec/{EXEC_OK}/start", b"{}", "deny:api-version"),
    ("GET", "/v2.0/containers/json", b"", "deny:api-version"),
    ("GET", "/v1.041/containers/json", b"", "deny:api-version"),
    ("GET", "/v1.41.0/containers/json", b"", "deny:api-version"),
    ("GET", "/v1/containers/json", b"", "deny:api-version"),
    ("GET", "/v1.41/v1.41/containers/json", b"", "deny:not-in-allowlist"),
    ("GET", "/V1.41/containers/json", b"", "deny:not-in-allowlist"),
    # bodies where none belongs (start with a HostConfig is the classic escape)
    ("POST", "/containers/srv/start", b'{"Privileged":true}', "deny:body-not-allowed"),
    ("GET", "/containers/json", b"x", "deny:body-not-allowed"),
    # query tricks
    ("GET", "/containers/json?filters=notjson", b"", "deny:filters"),
    ("GET", "/containers/json?filters=[]", b"", "deny:filters"),
    ("GET", "/containers/json?filters={}&filters={}", b"", "deny:filters"),
    ("GET", '/containers/json?filters={"label":[1]}', b"", "deny:filters"),
]


@pytest.mark.parametrize(("method", "target", "body", "expected"), CASES)
def test_table(method: str, target: str, body: bytes, expected: str) -> None:
    assert rule_of(method, target, body) == expected


def test_denial_message_names_the_rule() -> None:
    d = decide("GET", "/images/json")
    assert isinstance(d, r.Deny)
    assert d.status == 403
    assert d.message.startswith("denied by rule 'not-in-allowlist': ")


def test_container_requests_are_pinned_to_the_full_id() -> None:
    d = decide("POST", "/v1.41/containers/srv/stop?t=3")
    assert isinstance(d, r.Allow)
    assert d.target == f"/v1.41/containers/{SERVER_ID}/stop?t=60"
    assert d.container_id == SERVER_ID
    assert not d.hijack


def test_exec_start_is_a_hijack() -> None:
    d = decide("POST", f"/exec/{EXEC_OK}/start", b"{}")
    assert isinstance(d, r.Allow)
    assert d.hijack
    assert d.target == f"/exec/{EXEC_OK}/start"


# --- forced filters ------------------------------------------------------------------------


def _filters(target: str) -> dict[str, dict[str, bool]]:
    q = parse_qs(urlsplit(target).query)
    assert len(q["filters"]) == 1
    out: dict[str, dict[str, bool]] = json.loads(q["filters"][0])
    return out


OURS = {f"{LABEL_STACK}={STACK}": True, f"{LABEL_ROLE}=server": True}


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?all=1",
        "?filters=",
        '?filters={"label":{"io.hyos.stack=s2":true}}',
        '?filters={"label":["io.hyos.role=manager"],"status":["running"]}',
        '?filters={"name":{"srv":true}}',
    ],
)
def test_container_list_filters_always_include_the_stack(query: str) -> None:
    d = decide("GET", "/v1.41/containers/json" + query)
    assert isinstance(d, r.Allow)
    f = _filters(d.target)
    # Docker ANDs label filters: ours present means the client can only narrow.
    assert OURS.items() <= f["label"].items()


def test_container_list_keeps_client_narrowing() -> None:
    d = decide("GET", '/containers/json?all=1&filters={"status":["exited"],"label":["x=y"]}')
    assert isinstance(d, r.Allow)
    f = _filters(d.target)
    assert f["status"] == {"exited": True}
    assert f["label"] == {**OURS, "x=y": True}
    assert parse_qs(urlsplit(d.target).query)["all"] == ["1"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        '?filters={"type":["image","network","container"]}',
        '?filters={"type":{"daemon":true}}',
        '?filters={"label":["a=b"]}&since=0&until=5',
    ],
)
def test_events_forced_to_stack_containers(query: str) -> None:
    d = decide("GET", "/events" + query)
    assert isinstance(d, r.Allow)
    f = _filters(d.target)
    assert f["type"] == {"container": True}  # Docker ORs type values: override, not merge
    assert OURS.items() <= f["label"].items()


def test_query_is_reencoded() -> None:
    d = decide("GET", "/containers/srv/logs?stdout=1&tail=10;x=1")
    assert isinstance(d, r.Allow)
    assert d.target.endswith("?stdout=1&tail=10%3Bx%3D1")


# --- exec bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"Cmd": ["id"]}, None),
        ({"Cmd": ["id"], "User": ""}, None),
        ({"Cmd": ["id"], "User": None}, None),
        ({"Cmd": ["id"], "User": "568"}, None),
        ({"Cmd": ["id"], "User": "568:568"}, None),
        ({"Cmd": ["id"], "User": "1:1"}, None),
        # names: their groups (maybe 0) come from the image's /etc/passwd and /etc/group
        ({"Cmd": ["id"], "User": "hytale"}, "exec-user"),
        ({"Cmd": ["id"], "User": "hytale:hytale"}, "exec-user"),
        ({"Cmd": ["id"], "User": "568:hytale"}, "exec-user"),
        ({"Cmd": ["id"], "User": "hytale:568"}, "exec-user"),
        ({"Cmd": ["id"], "User": "nobody"}, "exec-user"),
        ({"Cmd": ["id"], "Privileged": False}, None),
        ({"Cmd": ["id"], "Privileged": None}, None),
        ({"Cmd": ["id"], "User": "root"}, "exec-user"),
        ({"Cmd": ["id"], "User": "0"}, "exec-user"),
        ({"Cmd": ["id"], "User": "0:0"}, "exec-user"),
        ({"Cmd": ["id"], "User": "0:568"}, "exec-user"),
        ({"Cmd": ["id"], "User": "root:root"}, "exec-user"),
        ({"Cmd": ["id"], "User": "568:0"}, "exec-user"),
        ({"Cmd": ["id"], "User": "568:root"}, "exec-user"),
        ({"Cmd": ["id"], "User": "00"}, "exec-user"),
        ({"Cmd": ["id"], "User": "+0"}, "exec-user"),
        ({"Cmd": ["id"], "User": " 0"}, "exec-user"),
        ({"Cmd": ["id"], "User": "568:"}, "exec-user"),
        ({"Cmd": ["id"], "User": 0}, "exec-body"),
        ({"Cmd": ["id"], "user": "root"}, "exec-user"),
        ({"Cmd": ["id"], "USER": "0"}, "exec-user"),
        ({"Cmd": ["id"], "U\u017fer": "root"}, "exec-user"),  # Go folds long s to s
        ({"Cmd": ["id"], "Privileged": True}, "exec-privileged"),
        ({"Cmd": ["id"], "privileged": True}, "exec-privileged"),
        ({"Cmd": ["id"], "Privileged": 1}, "exec-body"),
        ({"Cmd": ["id"], "Privileged": "true"}, "exec-body"),
        # past 2**31-1 an id can wrap to 0 (CVE-2024-40635)
        ({"Cmd": ["id"], "User": "2147483647"}, None),
        ({"Cmd": ["id"], "User": "2147483648"}, "exec-user"),
        ({"Cmd": ["id"], "User": "4294967296"}, "exec-user"),
        ({"Cmd": ["id"], "User": "4294967296:4294967296"}, "exec-user"),
        ({"Cmd": ["id"], "User": "568:4294967296"}, "exec-user"),
        ({"Cmd": ["id"], "User": "99999999999"}, "exec-user"),
    ],
)
def test_exec_body(body: object, expected: str | None) -> None:
    d = decide("POST", "/containers/srv/exec", json.dumps(body).encode())
    if expected is None:
        assert isinstance(d, r.Allow), d
    else:
        assert isinstance(d, r.Deny)
        assert d.rule == expected


@pytest.mark.parametrize(
    "raw",
    [
        b'{"User":"568","user":"root"}',
        b'{"Privileged":true,"privileged":false}',
        b'{"Privileged":false,"Privileged":true}',
        b"[]",
        b"not json",
        b'{"Cmd":["id"]} trailing',
        b"\xff\xfe",
        b"",
    ],
)
def test_exec_body_ambiguous_or_malformed(raw: bytes) -> None:
    d = decide("POST", "/containers/srv/exec", raw)
    assert isinstance(d, r.Deny)
    assert d.rule in ("exec-body", "exec-privileged")
    assert d.status in (400, 403)


# --- HTTP head parsing ---------------------------------------------------------------------


def test_parse_head_ok() -> None:
    h = r.parse_head(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: x")
    assert isinstance(h, r.Head)
    assert (h.method, h.target) == ("GET", "/_ping")
    assert h.get_all("host") == ["docker"]


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /_ping",
        b"GET  /_ping HTTP/1.1",
        b"GET /_ping HTTP/2",
        b"GET /_ping HTTP/1.1\r\n folded: x",
        b"GET /_ping HTTP/1.1\r\nBad Name: x",
        b"GET /_ping HTTP/1.1\nHost: x",
        b"GET /_ping HTTP/1.1\r\nHost: a\rb",
    ],
)
def test_parse_head_rejects(raw: bytes) -> None:
    d = r.parse_head(raw)
    assert isinstance(d, r.Deny)
    assert d.status == 400


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("", 0),
        ("\r\nContent-Length: 12", 12),
        ("\r\nTransfer-Encoding: chunked", "chunked-body"),
        ("\r\nContent-Length: 1\r\nContent-Length: 1", "bad-request"),
        ("\r\nContent-Length: -1", "bad-request"),
        ("\r\nContent-Length: 99999999", "body-too-large"),
    ],
)
def test_body_length(headers: str, expected: int | str) -> None:
    h = r.parse_head(f"POST /x HTTP/1.1{headers}".encode())
    assert isinstance(h, r.Head)
    n = r.body_length(h)
    assert (n.rule if isinstance(n, r.Deny) else n) == expected


def test_upstream_head_forces_close_and_forwards_only_known_headers() -> None:
    h = r.parse_head(
        b"POST /containers/srv/stop HTTP/1.1\r\nHost: docker\r\nConnection: keep-alive, X-Hop"
        b"\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nUpgrade: tcp\r\nUser-Agent: cli"
        b"\r\nContent-Type: text/plain\r\nX-Registry-Auth: e30="
    )
    assert isinstance(h, r.Head)
    allow = r.Allow("container-stop", "/containers/" + SERVER_ID + "/stop")
    out = r.upstream_head(h, allow).decode()
    lines = out.split("\r\n")
    assert lines[0] == f"POST /containers/{SERVER_ID}/stop HTTP/1.1"
    assert "Connection: close" in lines
    assert "Content-Length: 0" in lines
    assert "User-Agent: cli" in lines
    assert "Host: docker" in lines
    assert not any(
        x.lower().startswith(("x-hop", "keep-alive", "upgrade", "content-type", "x-registry"))
        for x in lines
    )
    assert out.endswith("\r\n\r\n")


def test_upstream_head_keeps_upgrade_for_exec_hijack() -> None:
    h = r.parse_head(b"POST /exec/x/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp")
    assert isinstance(h, r.Head)
    allow = r.Allow("exec-start", "/exec/x/start", hijack=True, body=b'{"Detach":false}')
    lines = r.upstream_head(h, allow).decode().split("\r\n")
    assert "Connection: Upgrade" in lines
    assert "Upgrade: tcp" in lines
    assert "Content-Type: application/json" in lines
    assert f"Content-Length: {len(allow.body)}" in lines


# --- property: nothing outside the allowlist is ever allowed ------------------------------

_ALLOWED_SHAPES = {
    ("GET", ("_ping",)),
    ("HEAD", ("_ping",)),
    ("GET", ("version",)),
    ("GET", ("containers", "json")),
    ("GET", ("events",)),
    ("GET", ("containers", SERVER_ID, "json")),
    ("GET", ("containers", SERVER_ID, "logs")),
    ("GET", ("containers", SERVER_ID, "stats")),
    ("POST", ("containers", SERVER_ID, "start")),
    ("POST", ("containers", SERVER_ID, "stop")),
    ("POST", ("containers", SERVER_ID, "restart")),
    ("POST", ("containers", SERVER_ID, "exec")),
    ("POST", ("exec", EXEC_OK, "start")),
    ("GET", ("exec", EXEC_OK, "json")),
    # Inspecting any exec of the server is read-only; only starting one checks its user.
    ("GET", ("exec", EXEC_ROOT, "json")),
}

_FRAGMENTS = [
    "containers", "json", "logs", "stats", "start", "stop", "restart", "exec", "events",
    "_ping", "version", "images", "volumes", "create", "kill", "attach", "archive", "srv",
    "other", "mgr", "foreign", "aaaa", SERVER_ID, OTHER_ID, EXEC_OK, EXEC_ROOT, EXEC_OTHER,
    "v1.41", "v1.24", "v1.23", "v9999", "v1.41.0", "V1.41", ".", "..", "", "%2e", "%2E%2e",
    "%2f", "%2F", "%00", "%73rv", "\\", "\0", " ", "\t", "a/b", "json?x=1", "#", ";", "~",
]  # fmt: skip

_GOOD = [
    "containers", "json", "logs", "stats", "start", "stop", "restart", "exec", "events",
    "_ping", "version", "srv", "other", "mgr", SERVER_ID, EXEC_OK, EXEC_ROOT, EXEC_OTHER,
]  # fmt: skip

# Mostly well-formed fragments (so allowed endpoints are actually reached and the
# assertions bite), mixed with tricks, random segments, encodings, dots and slashes.
_segments = st.one_of(
    st.sampled_from(_GOOD * 6 + _FRAGMENTS),
    st.text(alphabet="abcdefjnostv0123456789._-%/\\", max_size=8),
)
_structured = st.builds(
    lambda prefix, segs: prefix + "/".join(segs),
    st.sampled_from(["/", "/", "/v1.41/", "/v1.24/", "/v1.23/", "//", "/./"]),
    st.lists(_segments, min_size=1, max_size=4),
)
_mangled = st.builds(
    lambda prefix, segs, sep: prefix + sep.join(segs),
    st.sampled_from(["/", "//", "", "/v1.41/", "/./", "/../", "\\", "http://x/"]),
    st.lists(_segments, min_size=0, max_size=5),
    st.sampled_from(["/", "//", "/./", "/../", "\\", "%2f"]),
)
_TEMPLATES = [
    ("GET", "/containers/{}/json"), ("GET", "/v1.41/containers/{}/logs"),
    ("GET", "/containers/{}/stats"), ("POST", "/v1.41/containers/{}/start"),
    ("POST", "/containers/{}/stop"), ("POST", "/containers/{}/restart"),
    ("POST", "/containers/{}/exec"), ("POST", "/v1.41/exec/{}/start"),
    ("GET", "/exec/{}/json"), ("GET", "/{}/json"), ("GET", "/{}"), ("POST", "/v1.41/{}"),
    ("GET", "/containers/{}"), ("POST", "/exec/{}"), ("GET", "/{}/_ping"),
    ("GET", "/containers/json/{}"), ("GET", "/v1.24/{}/json"), ("HEAD", "/{}"),
]  # fmt: skip
_REFS = ["srv", SERVER_ID, EXEC_OK, EXEC_ROOT, "other", "_ping", "events", "containers"]
# Near-misses of allowlisted requests: right shape, any ref, sometimes another method.
_near = st.builds(
    lambda tm, ref, other, swap: (other if swap else tm[0], tm[1].format(ref)),
    st.sampled_from(_TEMPLATES),
    st.one_of(st.sampled_from(_REFS * 4), _segments),
    st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE"]),
    st.booleans(),
)
_paths = st.one_of(_structured, _mangled)
_queries = st.sampled_from(
    ["", "?all=1", "?filters=%7B%7D", '?filters={"type":["image"]}', "?a=%2F..%2F", "?"]
)
_methods = st.sampled_from(
    ["GET", "POST"] * 4 + ["HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "get", "Get"]
)
_bodies = st.sampled_from(
    [b"", b"", b"", b"{}", EXEC_BODY, b'{"Privileged":true}', b'{"User":"0"}']
)


def _canonical(target: str) -> tuple[str, ...]:
    """The endpoint an allowed target reaches: path segments without the version prefix."""
    assert target.startswith("/")
    path = target.split("?", 1)[0]
    segs = tuple(path[1:].split("/"))
    if segs and segs[0].startswith("v1."):
        segs = segs[1:]
    return segs


@settings(max_examples=3000, deadline=None)
@given(st.one_of(_near, st.tuples(_methods, _paths)), _queries, _bodies)
def test_property_nothing_outside_allowlist(
    request: tuple[str, str], query: str, body: bytes
) -> None:
    method, path = request
    d = decide(method, path + query, body)
    if isinstance(d, r.Deny):
        assert d.message.startswith(f"denied by rule '{d.rule}'")
        return
    # Whatever was allowed is exactly an allowlisted endpoint on the stack's server,
    # with a clean path Docker cannot read differently.
    segs = _canonical(d.target)
    assert (method, segs) in _ALLOWED_SHAPES, (method, path + query, d.target)
    assert "%" not in d.target.split("?", 1)[0]
    event(f"allowed {d.rule}")
    if segs in (("containers", "json"), ("events",)):
        q = parse_qs(urlsplit(d.target).query)
        assert OURS.items() <= json.loads(q["filters"][0])["label"].items()
    if segs[:1] == ("containers",) and len(segs) == 3:
        assert segs[1] == SERVER_ID
    if d.body:
        # Only exec bodies are forwarded, re-encoded; echoed options are dropped.
        assert d.rule in ("exec-create", "exec-start")
        assert json.loads(d.body).get("Privileged", False) is False
    elif body:
        assert d.rule in ("container-start", "container-stop", "container-restart")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60), _methods)
def test_property_random_text_targets(target: str, method: str) -> None:
    d = decide(method, target)
    if isinstance(d, r.Allow):
        assert (method, _canonical(d.target)) in _ALLOWED_SHAPES


@settings(max_examples=1000, deadline=None)
@given(_near, _queries, st.sampled_from([b"", b"", EXEC_BODY, b'{"User":"root"}']))
def test_property_near_misses(request: tuple[str, str], query: str, body: bytes) -> None:
    # Same invariant, aimed at the allowlist's neighbourhood so allows are common.
    test_property_nothing_outside_allowlist.hypothesis.inner_test(request, query, body)  # type: ignore[attr-defined]


# --- property: what is allowed reaches, by Docker's own routing, what the rule names -------

_CONTAINER_RULES = {
    "container-inspect", "container-logs", "container-stats", "container-start",
    "container-stop", "container-restart", "exec-create",
}  # fmt: skip
_stop_queries = st.sampled_from(
    ["", "?t=0", "?t=5", "?t=-1", "?t=600", "?signal=KILL", "?t=0&t=60", "?t=%2B0", "?T=0",
     "?t=1;signal=9", "?Signal=9&t=90", "?t=0x10", "?%74=0"]
)  # fmt: skip
_upgrade = st.booleans()


@settings(max_examples=3000, deadline=None)
@given(st.one_of(_near, st.tuples(_methods, _paths)), st.one_of(_queries, _stop_queries),
       _bodies, _upgrade)  # fmt: skip
def test_property_docker_routes_allowed_requests_where_the_rule_says(
    request: tuple[str, str], query: str, body: bytes, upgrade: bool
) -> None:
    method, path = request
    headers = (("Connection", "Upgrade"), ("Upgrade", "tcp")) if upgrade else ()
    head = r.Head(method, path + query, headers)
    d = decide(method, path + query, body, head)
    if isinstance(d, r.Deny):
        return
    routed = docker_model.route(method, d.target)
    assert routed is not None, (method, path + query, d.target)
    assert routed.endpoint == d.rule, (d.target, routed)
    if d.rule in _CONTAINER_RULES:
        assert routed.name == SERVER_ID == d.container_id
    if d.rule in ("container-stop", "container-restart"):
        waits = routed.query["t"]
        assert len(waits) == 1 and (int(waits[0]) >= POLICY.min_stop_timeout or int(waits[0]) < 0)
        assert not any(k.casefold() == "signal" for k in routed.query)
    if d.rule == "exec-start" and upgrade:
        assert json.loads(d.body)["Detach"] is False


@pytest.mark.parametrize(
    ("head", "switched"),
    [
        (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream", True),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream", True),
        (b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.docker.multiplexed-stream; x", True),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0", False),
        (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/vnd.docker.raw-stream", False),
        (b"HTTP/1.1 409 Conflict", False),
        (b"HTTP/2 101", False),
        (b"garbage", False),
        (b"HTTP/1.1 abc", False),
    ],
)
def test_only_a_real_protocol_switch_lets_client_bytes_through(head: bytes, switched: bool) -> None:
    assert r.switched_protocols(head) is switched


def test_events_filters_are_checked_too() -> None:
    assert rule_of("GET", "/events?filters=[]") == "deny:filters"
    assert rule_of("GET", "/events?filters={") == "deny:filters"


def test_a_resolver_answer_that_is_not_a_full_id_is_refused() -> None:
    need = r.classify("GET", "/containers/srv/json", POLICY)
    assert isinstance(need, r.NeedContainer)
    d = r.finish_container(need, r.Resolution("short", SERVER.labels), POLICY)
    assert isinstance(d, r.Deny) and d.rule == "container-not-in-stack"


# --- third pass: group 0, query allowlist, bounded Content-Length --------------------------


@pytest.mark.parametrize(
    ("user", "forwarded"),
    [("568", "568:568"), ("12345", "12345:568"), ("1", "1:568"), ("2147483647", "2147483647:568"),
     ("1000:1000", "1000:1000"), ("", "")],
)  # fmt: skip
def test_a_bare_uid_is_pinned_to_the_service_gid_never_group_0(user: str, forwarded: str) -> None:  # fmt: skip
    """runc gives a uid without a passwd entry gid 0: `-u 12345` ran as `gid=0 groups=0`."""
    d = decide("POST", "/containers/srv/exec", json.dumps({"Cmd": ["id"], "User": user}).encode())
    assert isinstance(d, r.Allow), d
    assert json.loads(d.body).get("User") == forwarded


@pytest.mark.parametrize(
    ("user", "allowed"),
    [("", True), ("568:568", True), ("1:1", True), ("568", False), ("12345", False),
     ("hytale", False), ("hytale:568", False), ("568:0", False), ("0:568", False), ("root", False)],
)  # fmt: skip
def test_an_exec_is_started_only_with_a_pinned_numeric_user(user: str, allowed: bool) -> None:
    """An exec created past the guard (bare uid, name) is never started through it."""
    execs = {EXEC_OK: ExecInfo(EXEC_OK, SERVER_ID, user, False)}
    d = decide_with("POST", f"/exec/{EXEC_OK}/start", b"{}", POLICY, CONTAINERS.get, execs.get)
    assert isinstance(d, r.Allow) is allowed, d
    if not allowed:
        assert isinstance(d, r.Deny) and d.rule == "exec-user"


def test_the_exec_gid_comes_from_the_policy() -> None:
    policy = r.Policy(STACK, 60, 41, exec_gid=1000)
    d = decide_with("POST", "/containers/srv/exec", b'{"Cmd":["id"],"User":"7"}', policy, CONTAINERS.get)  # fmt: skip
    assert isinstance(d, r.Allow) and json.loads(d.body)["User"] == "7:1000"


@pytest.mark.parametrize(
    "query",
    ["checkpoint=c1", "checkpoint-dir=/var/lib/docker", "checkpoint=c1&checkpoint-dir=/tmp/x",
     "detachKeys=a&checkpoint=c1"],
)  # fmt: skip
def test_start_checkpoint_options_are_refused(query: str) -> None:
    d = decide("POST", f"/containers/srv/start?{query}")
    assert isinstance(d, r.Deny) and d.rule == "query-param", d


def test_every_allowed_endpoint_names_its_query_parameters() -> None:
    assert rule_of("GET", "/containers/srv/logs?stdout=1&stderr=1&tail=all&follow=1") == "allow:container-logs"  # fmt: skip
    assert rule_of("GET", "/containers/srv/logs?stdout=1&x=1") == "deny:query-param"
    assert rule_of("POST", "/containers/srv/start?detachKeys=ctrl-p") == "allow:container-start"
    assert rule_of("POST", f"/exec/{EXEC_OK}/start?x=1", b"{}") == "deny:query-param"
    assert rule_of("GET", "/version?x=1") == "deny:query-param"
    # signal keeps its own rule (the world save), whatever its case
    assert rule_of("POST", "/containers/srv/stop?Signal=9") == "deny:stop-signal"


@pytest.mark.parametrize("digits", [20, 4301, 5000, 60000])
def test_a_content_length_of_any_size_is_a_413_not_an_exception(digits: int) -> None:
    head = r.Head("POST", "/containers/srv/exec", (("Content-Length", "9" * digits),))
    d = r.body_length(head)
    assert isinstance(d, r.Deny) and d.status == 413
    zeros = r.Head("POST", "/x", (("Content-Length", "0" * digits),))
    assert isinstance(r.body_length(zeros), r.Deny)
