"""The guard's adversarial corpus: raw requests, each with the decision it must get.

Each family states its expectation once (every percent-encoded path is refused, every
endpoint outside the allowlist is refused, ...); the cases are the shapes an attacker or a
confused client sends. `expect` is "allow:<rule>", "deny:<rule>" or "deny:<rule>:<status>".
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from tests.guardkit import (
    EXEC_OK,
    EXEC_OTHER,
    EXEC_PRIV,
    EXEC_ROOT,
    OTHER_ID,
    SERVER_ID,
)

UA = "corpus"  # forwarded requests carry it; the guard's own lookups do not


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expect: str


def req(method: str, target: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = (),
        version: str = "HTTP/1.1", length: bool = True) -> bytes:  # fmt: skip
    lines = [f"{method} {target} {version}", "Host: docker", f"User-Agent: {UA}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length and (body or method in ("POST", "PUT")):
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    try:
        return head.encode("latin-1") + body
    except UnicodeEncodeError:
        return head.encode("utf-8") + body


JSON = (("Content-Type", "application/json"),)
UPGRADE = (("Connection", "Upgrade"), ("Upgrade", "tcp"), *JSON)
EXEC = json.dumps({"Cmd": ["id"], "AttachStdout": True}).encode()

# The allowlist: (method, path without version, rule, body).
ALLOWED: list[tuple[str, str, str, bytes]] = [
    ("GET", "/_ping", "ping", b""),
    ("HEAD", "/_ping", "ping", b""),
    ("GET", "/version", "version", b""),
    ("GET", "/containers/json", "container-list", b""),
    ("GET", "/events", "events", b""),
    ("GET", "/containers/srv/json", "container-inspect", b""),
    ("GET", f"/containers/{SERVER_ID}/logs", "container-logs", b""),
    ("GET", f"/containers/{SERVER_ID[:12]}/stats", "container-stats", b""),
    ("POST", "/containers/srv/start", "container-start", b""),
    ("POST", "/containers/srv/stop", "container-stop", b""),
    ("POST", "/containers/srv/restart", "container-restart", b""),
    ("POST", "/containers/srv/exec", "exec-create", EXEC),
    ("POST", f"/exec/{EXEC_OK}/start", "exec-start", b"{}"),
    ("GET", f"/exec/{EXEC_OK}/json", "exec-inspect", b""),
    ("GET", f"/exec/{EXEC_ROOT}/json", "exec-inspect", b""),
]

# Endpoints of the Engine API outside the allowlist (a sample of every area).
FORBIDDEN_ENDPOINTS: list[tuple[str, str]] = [
    ("GET", "/info"), ("GET", "/system/df"), ("POST", "/auth"), ("GET", "/images/json"),
    ("POST", "/images/create?fromImage=alpine"), ("POST", "/images/load"),
    ("GET", "/images/alpine/json"), ("DELETE", "/images/alpine"), ("POST", "/images/prune"),
    ("POST", "/build"), ("POST", "/build/prune"), ("POST", "/commit?container=srv"),
    ("GET", "/volumes"), ("GET", "/volumes/json"), ("POST", "/volumes/create"),
    ("DELETE", "/volumes/x"), ("POST", "/volumes/prune"), ("GET", "/networks"),
    ("POST", "/networks/create"), ("POST", "/networks/x/connect"), ("DELETE", "/networks/x"),
    ("POST", "/containers/create"), ("POST", "/containers/create?name=x"),
    ("POST", "/containers/prune"), ("DELETE", "/containers/srv"),
    ("POST", "/containers/srv/kill"), ("POST", "/containers/srv/pause"),
    ("POST", "/containers/srv/unpause"), ("POST", "/containers/srv/attach"),
    ("GET", "/containers/srv/attach/ws"), ("POST", "/containers/srv/wait"),
    ("POST", "/containers/srv/rename?name=x"), ("POST", "/containers/srv/update"),
    ("POST", "/containers/srv/resize"), ("GET", "/containers/srv/top"),
    ("GET", "/containers/srv/changes"), ("GET", "/containers/srv/export"),
    ("GET", "/containers/srv/archive?path=/"), ("PUT", "/containers/srv/archive?path=/"),
    ("HEAD", "/containers/srv/archive?path=/"), ("POST", "/containers/srv/copy"),
    ("POST", f"/exec/{EXEC_OK}/resize"), ("GET", "/swarm"), ("POST", "/swarm/init"),
    ("GET", "/nodes"), ("GET", "/services"), ("POST", "/services/create"), ("GET", "/tasks"),
    ("GET", "/secrets"), ("POST", "/secrets/create"), ("GET", "/configs"),
    ("GET", "/plugins"), ("POST", "/plugins/pull"), ("GET", "/distribution/alpine/json"),
    ("POST", "/session"), ("POST", "/grpc"), ("GET", "/containers/srv"),
    ("GET", "/exec/json"), ("POST", "/exec"), ("GET", "/containers"),
]  # fmt: skip


def _allowed() -> list[Case]:
    cases = []
    for (method, path, rule, body), prefix in itertools.product(ALLOWED, ["", "/v1.24", "/v1.41"]):
        cases.append(Case(f"allowed {method} {prefix}{path}", req(method, prefix + path, body, JSON if body else ()), f"allow:{rule}"))  # fmt: skip
    return cases


def _wrong_methods() -> list[Case]:
    cases = []
    for method, path, _rule, _body in ALLOWED:
        for other in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "CONNECT"):
            if other == method or (path == "/_ping" and other in ("GET", "HEAD")):
                continue
            cases.append(Case(f"{other} instead of {method} {path}", req(other, path), "deny:not-in-allowlist"))  # fmt: skip
        for bad in (method.lower(), method.title(), method + " ", "G\tET"):
            cases.append(Case(f"method {bad!r} {path}", req(bad, path), "deny:bad-request:400"))
    return cases


def _forbidden() -> list[Case]:
    return [
        Case(
            f"forbidden {m} {prefix}{p}",
            req(m, prefix + p, b"{}" if m in ("POST", "PUT") else b""),
            "deny:not-in-allowlist",
        )
        for (m, p), prefix in itertools.product(FORBIDDEN_ENDPOINTS, ["", "/v1.41"])
    ]


def _encodings() -> list[Case]:
    cases = []
    tricks = ["%2F", "%2f", "%2e", "%2E%2E", "%252e", "%00", "%5C", "%73rv", "%c0%ae", "%2D",
              "%20", "%3F", "%23", "%25"]  # fmt: skip
    for (method, path, _rule, body), trick in itertools.product(ALLOWED[5:12], tricks):
        segs = path.split("/")
        for i in range(1, len(segs)):
            bad = "/".join([*segs[:i], trick + segs[i], *segs[i + 1 :]])
            cases.append(Case(f"encoded {bad}", req(method, bad, body, JSON if body else ()), "deny:path-encoding"))  # fmt: skip
    return cases


def _path_tricks() -> list[Case]:
    targets = [
        "/containers/../images/json", "/containers/srv/../../images/json", "/v1.41/../images/json",
        "/./containers/json", "/containers/./json", "/containers/srv/./json", "//containers/json",
        "/containers//json", "/containers/srv//json", "/containers/json/", "/containers/srv/json/",
        "/_ping/", "/containers\\..\\images/json", "/containers/srv\\json",
        "/containers/srv/json#frag", "/containers/sr\u00e9/json", "/containers/srv\u2044json",
        "http://docker/containers/json", "docker/containers/json", "*",
        "/containers/srv\t/json", "/containers/srv;x/json", "/containers/srv:x/json",
        "/containers/srv@x/json", "/containers/srv,x/json", "/containers/srv+x/json",
        "/containers/srv=x/json", "/containers/srv~/json", "/containers/srv!/json", "/events/",
    ]  # fmt: skip
    cases = [Case(f"path trick {t!r}", req("GET", t), "deny:path") for t in [*targets, "/"]]
    # A NUL anywhere in the head, or a space splitting the request line, is malformed HTTP.
    for t in ("/containers/srv\x00/json", "/containers/sr v/json", "/containers/ json"):
        cases.append(Case(f"malformed target {t!r}", req("GET", t), "deny:bad-request:400"))
    return cases


def _versions() -> list[Case]:
    cases = []
    for minor in [*list(range(0, 24)), 42, 43, 50, 99]:
        cases.append(Case(f"version 1.{minor}", req("GET", f"/v1.{minor}/_ping"), "deny:api-version"))  # fmt: skip
        cases.append(Case(f"start on 1.{minor}", req("POST", f"/v1.{minor}/containers/srv/start", b'{"HostConfig":{"Privileged":true}}', JSON), "deny:api-version"))  # fmt: skip
    for bad in ("v2.0", "v1.041", "v1.41.0", "v01.41", "v1", "v1.", "v1.4a", "v0.41", "v9999",
                "v1.41-rc", "v1_41", "v1.41v1.41"):  # fmt: skip
        cases.append(Case(f"version {bad}", req("GET", f"/{bad}/_ping"), "deny:api-version"))
    for odd in ("V1.41", "version1.41", "v", "vx"):
        cases.append(Case(f"not a version {odd}", req("GET", f"/{odd}/_ping"), "deny:not-in-allowlist"))  # fmt: skip
    cases.append(Case("two versions", req("GET", "/v1.41/v1.41/_ping"), "deny:not-in-allowlist"))
    cases.append(Case("bare version", req("GET", "/v1.41"), "deny:not-in-allowlist"))
    return cases


def _refs() -> list[Case]:
    cases = []
    for ref, expect in (
        ("other", "deny:container-not-in-stack"), (OTHER_ID, "deny:container-not-in-stack"),
        ("mgr", "deny:container-not-in-stack"), ("foreign", "deny:container-not-in-stack"),
        ("unmanaged", "deny:container-not-in-stack"), ("nosuch", "deny:container-not-in-stack"),
        (".srv", "deny:container-ref"), ("-srv", "deny:container-ref"),
        ("_srv", "deny:container-ref"),
    ):  # fmt: skip
        for method, action in (("GET", "json"), ("GET", "logs"), ("GET", "stats"),
                               ("POST", "start"), ("POST", "stop"), ("POST", "restart")):  # fmt: skip
            cases.append(Case(f"{method} {action} on {ref}", req(method, f"/containers/{ref}/{action}"), expect))  # fmt: skip
        cases.append(Case(f"exec on {ref}", req("POST", f"/containers/{ref}/exec", EXEC, JSON), expect))  # fmt: skip
    for exec_id, expect in (
        (EXEC_OTHER, "deny:exec-not-in-stack"), ("9" * 64, "deny:exec-not-in-stack"),
        (EXEC_ROOT, "deny:exec-user"), (EXEC_PRIV, "deny:exec-privileged"),
        ("1234", "deny:exec-ref"), (EXEC_OK.upper().replace("1", "A"), "deny:exec-ref"),
        (EXEC_OK[:12], "deny:exec-ref"), (EXEC_OK + "0", "deny:exec-ref"),
    ):  # fmt: skip
        cases.append(Case(f"exec start {exec_id[:8]}", req("POST", f"/exec/{exec_id}/start", b"{}", UPGRADE), expect))  # fmt: skip
    return cases


def _heads() -> list[Case]:
    ping = f"GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: {UA}"
    post = "POST /containers/srv/exec HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json"
    raws = [
        (f"{post}\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{{}}", "deny:bad-request:400"),
        (f"{post}\r\nContent-Length: 2, 2\r\n\r\n{{}}", "deny:bad-request:400"),
        (f"{post}\r\nContent-Length: +2\r\n\r\n{{}}", "deny:bad-request:400"),
        (f"{post}\r\nContent-Length: -2\r\n\r\n{{}}", "deny:bad-request:400"),
        (f"{post}\r\nContent-Length: 0x2\r\n\r\n{{}}", "deny:bad-request:400"),
        (f"{post}\r\nContent-Length: \u0662\r\n\r\n{{}}", "deny:bad-request:400"),
        (f"{post}\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{{}}", "deny:chunked-body"),
        (f"{post}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n", "deny:chunked-body"),
        (f"{post}\r\nTransfer-Encoding:  chunked\r\n\r\n", "deny:chunked-body"),
        (f"{post}\r\nTransfer-Encoding: identity\r\n\r\n", "deny:chunked-body"),
        (f"{post}\r\ntransfer-encoding: chunked\r\n\r\n", "deny:chunked-body"),
        (f"{post}\r\nContent-Length: 99999999\r\n\r\n", "deny:body-too-large:413"),
        (f"{ping}\r\n folded: x\r\n\r\n", "deny:bad-request:400"),
        (f"{ping}\r\n\tfolded: x\r\n\r\n", "deny:bad-request:400"),
        (f"{ping}\r\nBad Name: x\r\n\r\n", "deny:bad-request:400"),
        (f"{ping}\r\nBad-Name : x\r\n\r\n", "deny:bad-request:400"),
        (f"{ping}\r\nNoColon\r\n\r\n", "deny:bad-request:400"),
        (f"{ping}\r\n: empty-name\r\n\r\n", "deny:bad-request:400"),
        (f"{ping}\r\nX: a\rb\r\n\r\n", "deny:bad-request:400"),
        (f"{ping}\r\nX: a\x00b\r\n\r\n", "deny:bad-request:400"),
        ("GET /_ping HTTP/1.1\nHost: docker\r\n\r\n", "deny:bad-request:400"),
        ("GET /_ping HTTP/2.0\r\n\r\n", "deny:bad-request:400"),
        ("GET /_ping HTTP/0.9\r\n\r\n", "deny:bad-request:400"),
        ("GET /_ping\r\n\r\n", "deny:bad-request:400"),
        ("GET  /_ping HTTP/1.1\r\n\r\n", "deny:bad-request:400"),
        ("GET /_ping  HTTP/1.1\r\n\r\n", "deny:bad-request:400"),
        (" GET /_ping HTTP/1.1\r\n\r\n", "deny:bad-request:400"),
        ("GET /_ping http/1.1\r\n\r\n", "deny:bad-request:400"),
        ("GET /_ping HTTP/1.1 extra\r\n\r\n", "deny:bad-request:400"),
        ("\r\nGET /_ping HTTP/1.1\r\n\r\n", "deny:bad-request:400"),
        (f"{ping}\r\n" + "X-Pad: " + "a" * 70000 + "\r\n\r\n", "deny:head-too-large:431"),
        (f"GET /_ping HTTP/1.0\r\nUser-Agent: {UA}\r\n\r\n", "allow:ping"),
        (f"{ping}\r\nConnection: keep-alive\r\n\r\n", "allow:ping"),
        (f"{ping}\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n", "allow:ping"),
    ]  # fmt: skip
    return [Case(f"head {i}: {raw[:50]!r}", raw.encode("utf-8") if "\u0662" in raw else raw.encode("latin-1"), expect) for i, (raw, expect) in enumerate(raws)]  # fmt: skip


def _exec_bodies() -> list[Case]:
    bodies: list[tuple[object, str]] = []
    # A bare uid is allowed and pinned to the service's gid (runc gives gid 0 to a uid with
    # no passwd entry); names are refused (their groups are the image's to say).
    for user in ("", "568", "568:568", "2147483647", "1:1", "12345", "1", "12345:12345", None):
        bodies.append(({"Cmd": ["id"], "User": user}, "allow:exec-create"))
    for user in ("hytale", "hytale:hytale", "568:hytale", "hytale:568", "nobody", "nobody:nogroup",
                 "daemon", "bin:bin", "wheel", "568:wheel", "root", "0", "0:0", "0:568", "568:0", "root:root", "568:root", "00", "+0",
                 " 0", "0 ", "568:", ":568", "-1", "0x0", "4294967296", "4294967296:4294967296",
                 "568:4294967296", "2147483648", "99999999999", "ROOT", "r\u00f6\u00f6t",
                 "568:568:568", "1e3", "\u0661"):  # fmt: skip
        bodies.append(({"Cmd": ["id"], "User": user}, "deny:exec-user"))
    for key in ("user", "USER", "uSeR", "U\u017fer"):
        bodies.append(({"Cmd": ["id"], key: "root"}, "deny:exec-user"))
        bodies.append(({"Cmd": ["id"], key: "568"}, "allow:exec-create"))
    for key in ("Privileged", "privileged", "PRIVILEGED"):
        bodies.append(({"Cmd": ["id"], key: True}, "deny:exec-privileged"))
        bodies.append(({"Cmd": ["id"], key: False}, "allow:exec-create"))
    wrong_privileged: tuple[object, ...] = (1, "true", [True], {"a": 1})
    for value in wrong_privileged:
        bodies.append(({"Cmd": ["id"], "Privileged": value}, "deny:exec-body:400"))
    wrong_user: tuple[object, ...] = (0, ["root"], {"name": "root"}, True)
    for value in wrong_user:
        bodies.append(({"Cmd": ["id"], "User": value}, "deny:exec-body:400"))
    container_keys: tuple[dict[str, object], ...] = (
        {"HostConfig": {}}, {"Binds": ["/:/h"]}, {"CapAdd": ["ALL"]},
        {"SecurityOpt": []}, {"Mounts": []}, {"NetworkMode": "host"}, {"x": 1},
    )  # fmt: skip
    for extra in container_keys:
        bodies.append(({"Cmd": ["id"], **extra}, "deny:exec-body"))
    for cmd, expect in ((["sh", "-c", "id"], "allow:exec-create"), ("id", "allow:exec-create"),
                        ([], "deny:exec-body:400"), ("", "deny:exec-body:400"),
                        ([1], "deny:exec-body:400"), (None, "deny:exec-body:400")):  # fmt: skip
        bodies.append(({"Cmd": cmd}, expect))
    bodies.append(({"AttachStdout": True}, "deny:exec-body:400"))
    for ok in ({"Env": ["A=1"]}, {"WorkingDir": "/data"}, {"Tty": True}, {"ConsoleSize": [24, 80]},
               {"DetachKeys": "ctrl-p"}, {"AttachStdin": True}, {"Detach": False}):  # fmt: skip
        bodies.append(({"Cmd": ["id"], **ok}, "allow:exec-create"))
    for bad in ({"Env": "A=1"}, {"ConsoleSize": [24]}, {"ConsoleSize": [-1, 2]},
                {"ConsoleSize": [1.5, 2]}, {"Tty": "yes"}):  # fmt: skip
        bodies.append(({"Cmd": ["id"], **bad}, "deny:exec-body:400"))
    cases = [Case(f"exec body {json.dumps(b)[:60]}", req("POST", "/containers/srv/exec", json.dumps(b).encode(), JSON), e) for b, e in bodies]  # fmt: skip
    raws = [
        (b'{"Cmd":["id"],"User":"568","user":"root"}', "deny:exec-body"),
        (b'{"Cmd":["id"],"Privileged":false,"privileged":true}', "deny:exec-body"),
        (b'{"Cmd":["id"],"Privileged":false,"Privileged":true}', "deny:exec-body"),
        (b'{"Cmd":["id"],"Cmd":["sh"]}', "deny:exec-body"),
        (b'{"Cmd":["id"],"U\\u017fer":"root"}', "deny:exec-user"),
        (b"[]", "deny:exec-body:400"), (b'"x"', "deny:exec-body:400"), (b"null", "deny:exec-body:400"),
        (b"not json", "deny:exec-body:400"), (b'{"Cmd":["id"]} x', "deny:exec-body:400"),
        (b'{"Cmd":["id"]}{"User":"root"}', "deny:exec-body:400"), (b"\xff\xfe", "deny:exec-body:400"),
        (b"\xef\xbb\xbf{}", "deny:exec-body:400"), (b"", "deny:exec-body:400"),
        (b'{"Cmd":["id"],"ConsoleSize":[NaN,1]}', "deny:exec-body:400"),
        (b'{"Cmd":["id"],"ConsoleSize":[Infinity,1]}', "deny:exec-body:400"),
        (b"[" * 50000, "deny:exec-body:400"), (b'{"a":' * 10000, "deny:exec-body:400"),
        (b'{"Cmd":["id"],"User":"\\u0000"}', "deny:exec-user"),
    ]  # fmt: skip
    cases += [Case(f"exec raw body {raw[:40]!r}", req("POST", "/containers/srv/exec", raw, JSON), e) for raw, e in raws]  # fmt: skip
    return cases


def _exec_start_bodies() -> list[Case]:
    start = f"/exec/{EXEC_OK}/start"
    rows: list[tuple[bytes, tuple[tuple[str, str], ...], str]] = [
        (b"{}", UPGRADE, "allow:exec-start"),
        (b"", UPGRADE, "allow:exec-start"),
        (b'{"Detach":false,"Tty":false}', UPGRADE, "allow:exec-start"),
        (b'{"hijack":true,"stdin":false}', UPGRADE, "allow:exec-start"),
        (b'{"detach":false,"tty":true,"consolesize":[24,80]}', UPGRADE, "allow:exec-start"),
        (b'{"Detach":true}', UPGRADE, "deny:exec-start-body"),
        (b'{"detach":true}', UPGRADE, "deny:exec-start-body"),
        (b'{"DETACH":true}', UPGRADE, "deny:exec-start-body"),
        (b'{"Detach":true}', JSON, "allow:exec-start"),
        (b'{"Detach":false,"detach":true}', UPGRADE, "deny:exec-start-body"),
        (b'{"Detach":"true"}', UPGRADE, "deny:exec-start-body:400"),
        (b'{"Detach":1}', UPGRADE, "deny:exec-start-body:400"),
        (b'{"Cmd":["sh"]}', UPGRADE, "deny:exec-start-body"),
        (b'{"User":"root"}', UPGRADE, "deny:exec-start-body"),
        (b'{"Privileged":true}', UPGRADE, "deny:exec-start-body"),
        (b"{", UPGRADE, "deny:exec-start-body:400"),
        (b"[]", UPGRADE, "deny:exec-start-body:400"),
        (b"null", UPGRADE, "deny:exec-start-body:400"),
        (b"[" * 50000, UPGRADE, "deny:exec-start-body:400"),
        (b"{}", (("Connection", "Upgrade"), ("Upgrade", "tcp"), ("Content-Type", "text/plain")), "allow:exec-start"),
    ]  # fmt: skip
    return [Case(f"exec start body {b[:40]!r} {dict(h).get('Connection', '')}", req("POST", start, b, h), e) for b, h, e in rows]  # fmt: skip


def _options_bodies() -> list[Case]:
    rows: list[tuple[str, bytes, str]] = [
        ("stop?t=30", b'{"t":30}', "allow:container-stop"),
        ("restart?t=30", b'{"t":30}', "allow:container-restart"),
        ("stop", b'{"t":"30"}', "allow:container-stop"),
        ("stop", b"{}", "allow:container-stop"),
        ("start", b"{}", "allow:container-start"),
        ("start", b'{"detachKeys":"ctrl-p"}', "allow:container-start"),
        ("stop", b'{"signal":"SIGKILL"}', "deny:stop-signal"),
        ("restart", b'{"Signal":"KILL"}', "deny:stop-signal"),
        ("stop", b'{"SIGNAL":9}', "deny:stop-signal"),
        ("stop", b'{"T":1}', "allow:container-stop"),
        ("stop", b'{"t":1,"x":2}', "deny:body-not-allowed"),
        ("stop", b'{"t":{"a":1}}', "deny:body-not-allowed"),
        ("stop", b'{"t":[1]}', "deny:body-not-allowed"),
        ("stop", b'{"t":1,"t":2}', "deny:options-body"),
        ("stop", b'{"t":' + b"1" * 600 + b"}", "deny:body-not-allowed"),
        ("stop", b"[]", "deny:options-body:400"),
        ("stop", b"x", "deny:options-body:400"),
        ("start", b'{"HostConfig":{"Privileged":true,"Binds":["/:/h"]}}', "deny:body-not-allowed"),
        ("start", b'{"Privileged":true}', "deny:body-not-allowed"),
        ("start", b'{"Binds":["/:/host"]}', "deny:body-not-allowed"),
        ("start", b'{"t":1}', "deny:body-not-allowed"),
        ("stop", b"[" * 400, "deny:options-body:400"),
    ]  # fmt: skip
    cases = [Case(f"options body {t} {b[:40]!r}", req("POST", f"/containers/srv/{t}", b, JSON), e) for t, b, e in rows]  # fmt: skip
    for method, path in (("GET", "/containers/json"), ("GET", "/_ping"), ("GET", "/events"),
                         ("GET", "/containers/srv/json"), ("GET", "/containers/srv/logs"),
                         ("GET", f"/exec/{EXEC_OK}/json")):  # fmt: skip
        cases.append(Case(f"body on {method} {path}", req(method, path, b"{}", JSON), "deny:body-not-allowed"))  # fmt: skip
    return cases


def _queries() -> list[Case]:
    rows: list[tuple[str, str, str]] = [
        ("POST", "/containers/srv/stop?t=0", "allow:container-stop"),
        ("POST", "/containers/srv/stop?t=-1", "allow:container-stop"),
        ("POST", "/containers/srv/stop?t=5", "allow:container-stop"),
        ("POST", "/containers/srv/restart?t=0", "allow:container-restart"),
        ("POST", "/containers/srv/stop?t=abc", "deny:stop-timeout:400"),
        ("POST", "/containers/srv/stop?t=1e3", "deny:stop-timeout:400"),
        ("POST", "/containers/srv/stop?t=%2B0", "deny:stop-timeout:400"),
        ("POST", "/containers/srv/stop?t=", "deny:stop-timeout:400"),
        ("POST", "/containers/srv/stop?t=60&t=0", "deny:stop-timeout:400"),
        ("POST", "/containers/srv/stop?signal=SIGKILL", "deny:stop-signal"),
        ("POST", "/containers/srv/stop?signal=SIGKILL&t=0", "deny:stop-signal"),
        ("POST", "/containers/srv/restart?signal=9", "deny:stop-signal"),
        ("POST", "/containers/srv/stop?Signal=KILL", "deny:stop-signal"),
        ("POST", "/containers/srv/stop?SIGNAL=KILL", "deny:stop-signal"),
        ("POST", "/containers/srv/stop?%73ignal=KILL", "deny:stop-signal"),
        ("POST", "/containers/srv/stop?t=60;signal=KILL", "deny:stop-timeout:400"),
        ("GET", "/containers/json?filters=notjson", "deny:filters:400"),
        ("GET", "/containers/json?filters=[]", "deny:filters"),
        ("GET", "/containers/json?filters={}&filters={}", "deny:filters"),
        ('GET', '/containers/json?filters={"label":[1]}', "deny:filters"),
        ('GET', '/containers/json?filters={"label":"x"}', "deny:filters"),
        ('GET', '/containers/json?filters={"label":{"a":1}}', "deny:filters"),
        ("GET", "/containers/json?filters=" + "[" * 3000, "deny:filters:400"),
        ('GET', '/containers/json?filters={"label":["io.hyos.role=manager"]}', "allow:container-list"),
        ('GET', '/events?filters={"type":["image"]}', "allow:events"),
        ('GET', '/events?filters={"type":{"daemon":true}}', "allow:events"),
        ("GET", "/containers/json?a=b c", "deny:bad-request:400"),
        ("GET", "/containers/json?a=b\tc", "deny:path"),
        ("GET", "/containers/srv/logs?follow=1&tail=10;x", "allow:container-logs"),
        ("GET", "/containers/json?all=1&all=0", "allow:container-list"),
        ("GET", "/_ping?%00=1", "deny:query-param"),
        ("GET", "/_ping?", "allow:ping"),
    ]  # fmt: skip
    # What the docker CLI and dockerode send for the dashboard's calls: allowed.
    sent = [
        ("GET", "/containers/json?all=1&limit=0&size=0", "allow:container-list"),
        ("GET", "/containers/json?all=true&before=x&since=y", "allow:container-list"),
        ("GET", "/events?since=1&until=2&filters={}", "allow:events"),
        ("GET", "/containers/srv/json?size=1", "allow:container-inspect"),
        ("GET", "/containers/srv/logs?follow=1&stdout=1&stderr=1&tail=all", "allow:container-logs"),
        ("GET", "/containers/srv/logs?stdout=true&stderr=true&tail=100&since=0&timestamps=true&follow=false", "allow:container-logs"),
        ("GET", "/containers/srv/logs?until=5&details=1", "allow:container-logs"),
        ("GET", "/containers/srv/stats?stream=0", "allow:container-stats"),
        ("GET", "/containers/srv/stats?stream=false&one-shot=true", "allow:container-stats"),
        ("POST", "/containers/srv/start?detachKeys=ctrl-p", "allow:container-start"),
        ("POST", "/containers/srv/stop?t=30", "allow:container-stop"),
        ("POST", "/containers/srv/restart?t=30", "allow:container-restart"),
    ]  # fmt: skip
    rows += sent
    # Anything else is refused, on every endpoint: unknown names, other cases, encodings.
    extra = ["checkpoint=c1", "checkpoint-dir=/var/lib/docker", "checkpoint=c1&checkpoint-dir=/tmp/x",
             "CHECKPOINT=c1", "Checkpoint-Dir=/", "%63heckpoint=c1", "x=1", "t=30&x=1", "all=1&y=",
             "force=1", "v=1", "link=1", "detachkeys=a", "DetachKeys=a", "Stream=0", "Follow=1",
             "filter=x", "name=x", "size=1", "t=30", "=1", "&&", "a"]  # fmt: skip
    endpoints = [
        ("GET", "/_ping", "ping"), ("GET", "/version", "version"),
        ("GET", "/containers/json", "container-list"), ("GET", "/events", "events"),
        ("GET", "/containers/srv/json", "container-inspect"),
        ("GET", "/containers/srv/logs", "container-logs"),
        ("GET", "/containers/srv/stats", "container-stats"),
        ("POST", "/containers/srv/start", "container-start"),
        ("POST", "/containers/srv/stop", "container-stop"),
        ("POST", "/containers/srv/restart", "container-restart"),
        ("POST", "/containers/srv/exec", "exec-create"),
        ("POST", f"/exec/{EXEC_OK}/start", "exec-start"),
        ("GET", f"/exec/{EXEC_OK}/json", "exec-inspect"),
    ]  # fmt: skip
    cases = [Case(f"query {m} {t}", req(m, t), e) for m, t, e in rows]
    for method, path, rule in endpoints:
        for q in extra:
            keys = {p.partition("=")[0] for p in q.split("&")}
            ok = {"size"} if rule in ("container-inspect", "container-list") else set()
            ok |= {"t"} if rule in ("container-stop", "container-restart") else set()
            if keys <= ok or q == "&&":
                continue  # an allowed parameter (or none at all), not a refusal
            headers: tuple[tuple[str, str], ...] = JSON if rule == "exec-create" else ()
            body = EXEC if rule == "exec-create" else b""
            if rule == "exec-start":
                body, headers = b"{}", UPGRADE
            cases.append(Case(f"query {method} {path}?{q}", req(method, f"{path}?{q}", body, headers), "deny:query-param"))  # fmt: skip
    return cases


def _smuggling() -> list[Case]:
    """Exec starts followed in the same write by a request the guard must never let through."""
    smuggled = req("POST", "/volumes/create", b'{"Name":"smuggled"}', JSON) + req("GET", "/volumes")
    start = f"/exec/{EXEC_OK}/start"
    rows = [
        ("detached+upgrade", req("POST", start, b'{"Detach":true}', UPGRADE), "deny:exec-start-body"),
        ("malformed", req("POST", start, b"{", UPGRADE), "deny:exec-start-body:400"),
        ("v1.99", req("POST", "/v1.99" + start, b"{}", UPGRADE), "deny:api-version"),
        ("chunked start", req("POST", start, b"2\r\n{}\r\n0\r\n\r\n", (*UPGRADE, ("Transfer-Encoding", "chunked")), length=False), "deny:chunked-body"),
        ("short length", req("POST", start, b"{}", (*UPGRADE, ("Content-Length", "1")), length=False), "deny:exec-start-body:400"),
        ("ping then smuggle", req("GET", "/_ping"), "allow:ping"),
        ("inspect then smuggle", req("GET", "/containers/srv/json"), "allow:container-inspect"),
        ("stop then smuggle", req("POST", "/containers/srv/stop"), "allow:container-stop"),
        ("events then smuggle", req("GET", "/events"), "allow:events"),
        ("exec create then smuggle", req("POST", "/containers/srv/exec", EXEC, JSON), "allow:exec-create"),
    ]  # fmt: skip
    return [Case(f"smuggle {n}", raw + smuggled, e) for n, raw, e in rows]


def corpus() -> list[Case]:
    cases = (
        _allowed() + _wrong_methods() + _forbidden() + _encodings() + _path_tricks()
        + _versions() + _refs() + _heads() + _exec_bodies() + _exec_start_bodies()
        + _options_bodies() + _queries() + _smuggling()
    )  # fmt: skip
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    # Distinct names; same-named shapes are told apart by their index.
    return [Case(f"{i:03d} {c.name}" if c.name in dupes else c.name, c.raw, c.expect) for i, c in enumerate(cases)]  # fmt: skip


_ = OTHER_ID
