"""Pure rules of the Docker API guard: parse a request, decide allow or deny.

No I/O here. The shell (`supervisor.guard`) reads bytes, calls `parse_head` and
`classify`, resolves the container or exec named in the path when asked to (a
`NeedContainer` / `NeedExec` answer), then calls `finish_container` / `finish_exec`
and forwards `upstream_head(...)` on an `Allow`.

Design choices, all in the direction of "deny when unsure":
- The allowlist is matched on a strictly validated path: only `[A-Za-z0-9._-]` in
  segments, no empty, `.` or `..` segment, no percent-encoding at all (Docker routes on
  the *decoded* path, so any encoding could smuggle a `/`), no backslash, no NUL.
- An optional `/v1.NN` prefix is accepted only for NN >= 24: older API versions let
  `POST /containers/{id}/start` carry a HostConfig (privileged, binds), which we must
  never forward. Bodies are refused on every endpoint that does not need one.
- The query is parsed and re-encoded, so Docker sees exactly what we checked; the
  `filters` of list and event requests are merged with the stack's labels (Docker ANDs
  label filters, so the client can only narrow them) and `type` is forced to container.
- A container ref is resolved by the shell and the request is rewritten to the full
  id, so Docker acts on the very container whose labels we checked.
- The exec body is checked the way Go's encoding/json reads it: keys match
  case-insensitively (with Unicode folding), so ambiguous duplicates are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

LABEL_MANAGED: Final = "io.hyos.managed"
LABEL_STACK: Final = "io.hyos.stack"
LABEL_ROLE: Final = "io.hyos.role"

MAX_HEAD: Final = 64 * 1024
MAX_BODY: Final = 1024 * 1024
MIN_API_MINOR: Final = 24

_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"v1\.([1-9][0-9]?)")
_METHOD = re.compile(r"[A-Z]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NAME_USER = re.compile(r"[a-z_][a-z0-9_.-]*")
_NUM = re.compile(r"[1-9][0-9]{0,9}")

# Hop-by-hop and framing headers we never forward as sent: we set our own.
_DROP_HEADERS: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    }
)


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deny:
    rule: str
    reason: str
    status: int = 403

    @property
    def message(self) -> str:
        return f"denied by rule '{self.rule}': {self.reason}"


@dataclass(frozen=True, slots=True)
class Allow:
    rule: str
    target: str
    # True only for exec start: after the request, raw client bytes are the exec's stdin.
    hijack: bool = False


@dataclass(frozen=True, slots=True)
class NeedContainer:
    """Allowed if `ref` resolves to this stack's server; then the path uses its full id."""

    rule: str
    ref: str
    prefix: str
    suffix: str
    query: str


@dataclass(frozen=True, slots=True)
class NeedExec:
    """Allowed if the exec belongs to this stack's server and is not root/privileged."""

    rule: str
    exec_id: str
    prefix: str
    suffix: str
    query: str
    hijack: bool


@dataclass(frozen=True, slots=True)
class Resolution:
    id: str
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ExecInfo:
    id: str
    container_id: str
    user: str
    privileged: bool


@dataclass(frozen=True, slots=True)
class Head:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = field(default=())

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


Decision = Allow | Deny
Classified = Allow | Deny | NeedContainer | NeedExec


# --- HTTP head -----------------------------------------------------------------------------


def parse_head(raw: bytes) -> Head | Deny:
    """Parse a request head (without the final CRLFCRLF). Strict: CRLF only, no folding."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return Deny("bad-request", "undecodable head", 400)
    lines = text.split("\r\n")
    if any(("\r" in ln or "\n" in ln or "\0" in ln) for ln in lines):
        return Deny("bad-request", "bare CR, LF or NUL in head", 400)
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        return Deny("bad-request", "malformed request line", 400)
    method, target, _version = parts
    if not _METHOD.fullmatch(method) or not target:
        return Deny("bad-request", "malformed request line", 400)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            return Deny("bad-request", "malformed header line", 400)
        headers.append((name, value.strip(" \t")))
    return Head(method, target, tuple(headers))


def body_length(head: Head) -> int | Deny:
    """Content-Length of the request body; chunked or ambiguous framing is refused."""
    if head.get_all("transfer-encoding"):
        return Deny("chunked-body", "chunked request bodies are not accepted")
    values = head.get_all("content-length")
    if not values:
        return 0
    if len(values) > 1 or not values[0].isdigit() or not values[0].isascii():
        return Deny("bad-request", "invalid Content-Length", 400)
    n = int(values[0])
    if n > MAX_BODY:
        return Deny("body-too-large", f"request body over {MAX_BODY} bytes", 413)
    return n


def upstream_head(head: Head, target: str, body_len: int, *, hijack: bool) -> bytes:
    """The head to send to Docker: our target, client headers minus hop-by-hop ones."""
    conn_tokens = {
        t.strip().lower() for v in head.get_all("connection") for t in v.split(",") if t.strip()
    }
    out = [f"{head.method} {target} HTTP/1.1"]
    has_host = False
    for name, value in head.headers:
        lname = name.lower()
        if lname in _DROP_HEADERS or lname in conn_tokens:
            continue
        has_host = has_host or lname == "host"
        out.append(f"{name}: {value}")
    if not has_host:
        out.append("Host: docker")
    if hijack and head.get_all("upgrade"):
        # Docker answers 101 and hands over the raw stream only when Upgrade is present.
        out += ["Connection: Upgrade", "Upgrade: tcp"]
    else:
        # One request per connection: nothing after this request is ever parsed by Docker.
        out.append("Connection: close")
    if body_len or head.method in ("POST", "PUT"):
        out.append(f"Content-Length: {body_len}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


# --- path and query ------------------------------------------------------------------------


def _split_target(raw_target: str) -> tuple[str, tuple[str, ...], list[tuple[str, str]]] | Deny:
    """-> (version prefix, path segments, query pairs), or a denial for any trick."""
    if not raw_target.startswith("/"):
        return Deny("path", "only origin-form request targets are accepted")
    if not raw_target.isascii() or not raw_target.isprintable():
        return Deny("path", "non-ASCII or control character in the request target")
    if "#" in raw_target:
        return Deny("path", "fragment in request target")
    path, _, query = raw_target.partition("?")
    if "%" in path:
        return Deny("path-encoding", "percent-encoding in the path is not accepted")
    if "\\" in path or "\0" in path:
        return Deny("path", "backslash or NUL in the path")
    segments = path[1:].split("/")
    for seg in segments:
        if seg in ("", ".", ".."):
            return Deny("path", "empty, '.' or '..' path segment")
        if not _SEGMENT.fullmatch(seg):
            return Deny("path", "unexpected character in the path")
    prefix = ""
    if segments[0].startswith("v") and segments[0][1:2].isdigit():
        m = _VERSION.fullmatch(segments[0])
        if m is None or int(m.group(1)) < MIN_API_MINOR:
            return Deny("api-version", f"API version prefix must be v1.{MIN_API_MINOR} or newer")
        prefix = "/" + segments[0]
        segments = segments[1:]
        if not segments:
            return Deny("not-in-allowlist", "bare version prefix")
    if any(c in query for c in "\0\r\n "):
        return Deny("query", "control character or space in the query")
    pairs = parse_qsl(query, keep_blank_values=True)
    return prefix, tuple(segments), pairs


def _encode_query(pairs: list[tuple[str, str]]) -> str:
    return ("?" + urlencode(pairs)) if pairs else ""


def _forced_filters(
    pairs: list[tuple[str, str]], forced: Mapping[str, list[str]], replace: frozenset[str]
) -> list[tuple[str, str]] | Deny:
    """Merge the client's `filters` with ours; keys in `replace` are overridden outright."""
    raw = [v for k, v in pairs if k == "filters"]
    if len(raw) > 1:
        return Deny("filters", "more than one filters parameter")
    merged: dict[str, dict[str, bool]] = {}
    if raw and raw[0]:
        try:
            client = json.loads(raw[0])
        except ValueError:
            return Deny("filters", "filters is not valid JSON")
        if not isinstance(client, dict):
            return Deny("filters", "filters must be a JSON object")
        for key, val in client.items():
            if not isinstance(key, str):  # pragma: no cover - JSON keys are strings
                return Deny("filters", "bad filter key")
            if isinstance(val, list) and all(isinstance(v, str) for v in val):
                merged[key] = dict.fromkeys(val, True)
            elif isinstance(val, dict) and all(isinstance(v, bool) for v in val.values()):
                merged[key] = {str(k): True for k in val}
            else:
                return Deny("filters", f"bad value for filter {key!r}")
    for key, values in forced.items():
        base = {} if key in replace else merged.get(key, {})
        merged[key] = {**base, **dict.fromkeys(values, True)}
    rest = [(k, v) for k, v in pairs if k != "filters"]
    return [*rest, ("filters", json.dumps(merged, separators=(",", ":"), sort_keys=True))]


# --- exec body -----------------------------------------------------------------------------


def user_allowed(user: str) -> bool:
    """Empty (the image's non-root default) or an explicit non-root user[:group].

    Allowlisted shapes only: Docker parses ids with Atoi, so "+0", "00" or "0x0" could
    mean root; we accept canonical decimal ids > 0 and plain names other than root.
    """
    if user == "":
        return True
    name, sep, group = user.partition(":")
    parts = [name, group] if sep else [name]
    for p in parts:
        if p == "root" or not (_NUM.fullmatch(p) or _NAME_USER.fullmatch(p)):
            return False
    return True


def check_exec_body(body: bytes) -> Deny | None:
    """None when the exec-create body is unambiguous, not privileged and not root."""
    seen: dict[str, int] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        for k, _ in pairs:
            folded = k.casefold()
            seen[folded] = seen.get(folded, 0) + 1
        return dict(pairs)

    try:
        obj = json.loads(body.decode("utf-8"), object_pairs_hook=pairs_hook)
    except (UnicodeDecodeError, ValueError):
        return Deny("exec-body", "exec body is not valid JSON")
    if not isinstance(obj, dict):
        return Deny("exec-body", "exec body must be a JSON object")
    if any(n > 1 for n in seen.values()):
        # Go matches keys case-insensitively (and at every nesting level we cannot tell
        # which one it keeps), so duplicates after folding are refused outright.
        return Deny("exec-body", "duplicate keys (case-insensitive) in exec body")
    top = {k.casefold(): v for k, v in obj.items()}
    priv = top.get("privileged", False)
    if priv is not False and priv is not None:
        return Deny("exec-privileged", "privileged exec is not allowed")
    user = top.get("user", "")
    if user is None:
        user = ""
    if not isinstance(user, str) or not user_allowed(user):
        return Deny("exec-user", f"exec as user {user!r} is not allowed (root or unknown form)")
    return None


# --- classification ------------------------------------------------------------------------

_CONTAINER_ACTIONS: Final[dict[tuple[str, str], str]] = {
    ("GET", "json"): "container-inspect",
    ("GET", "logs"): "container-logs",
    ("GET", "stats"): "container-stats",
    ("POST", "start"): "container-start",
    ("POST", "stop"): "container-stop",
    ("POST", "restart"): "container-restart",
    ("POST", "exec"): "exec-create",
}
_EXEC_ACTIONS: Final[dict[tuple[str, str], str]] = {
    ("POST", "start"): "exec-start",
    ("GET", "json"): "exec-inspect",
}
_BODY_RULES: Final = frozenset({"exec-create", "exec-start"})


def stack_filters(stack: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_STACK}={stack}", f"{LABEL_ROLE}=server"]}


def classify(method: str, raw_target: str, body: bytes, stack: str) -> Classified:
    """First step: allow, deny, or ask the shell to resolve a container or an exec."""
    split = _split_target(raw_target)
    if isinstance(split, Deny):
        return split
    prefix, seg, pairs = split
    decision = _classify(method, prefix, seg, pairs, stack)
    if isinstance(decision, Deny):
        return decision
    if body and decision.rule not in _BODY_RULES:
        return Deny("body-not-allowed", f"no request body is accepted for {decision.rule}")
    if decision.rule == "exec-create":
        denied = check_exec_body(body)
        if denied is not None:
            return denied
    return decision


def _classify(
    method: str, prefix: str, seg: tuple[str, ...], pairs: list[tuple[str, str]], stack: str
) -> Classified:
    query = _encode_query(pairs)
    if seg == ("_ping",) and method in ("GET", "HEAD"):
        return Allow("ping", f"{prefix}/_ping{query}")
    if seg == ("version",) and method == "GET":
        return Allow("version", f"{prefix}/version{query}")
    if seg == ("containers", "json") and method == "GET":
        forced = _forced_filters(pairs, stack_filters(stack), frozenset())
        if isinstance(forced, Deny):
            return forced
        return Allow("container-list", f"{prefix}/containers/json{_encode_query(forced)}")
    if seg == ("events",) and method == "GET":
        evf = {**stack_filters(stack), "type": ["container"]}
        forced = _forced_filters(pairs, evf, frozenset({"type"}))
        if isinstance(forced, Deny):
            return forced
        return Allow("events", f"{prefix}/events{_encode_query(forced)}")
    if len(seg) == 3 and seg[0] == "containers" and seg[1] != "json":
        rule = _CONTAINER_ACTIONS.get((method, seg[2]))
        if rule is not None:
            if not _REF.fullmatch(seg[1]):
                return Deny("container-ref", "malformed container reference")
            return NeedContainer(rule, seg[1], prefix, seg[2], query)
    if len(seg) == 3 and seg[0] == "exec":
        rule = _EXEC_ACTIONS.get((method, seg[2]))
        if rule is not None:
            if not _HEX64.fullmatch(seg[1]):
                return Deny("exec-ref", "exec id must be a full 64-hex id")
            return NeedExec(rule, seg[1], prefix, seg[2], query, hijack=rule == "exec-start")
    return Deny("not-in-allowlist", f"{method} /{'/'.join(seg)} is not an allowed endpoint")


def in_stack(resolution: Resolution, stack: str) -> bool:
    labels = resolution.labels
    return (
        labels.get(LABEL_MANAGED) == "true"
        and labels.get(LABEL_STACK) == stack
        and labels.get(LABEL_ROLE) == "server"
    )


def finish_container(need: NeedContainer, res: Resolution | None, stack: str) -> Decision:
    """Second step for container endpoints: check labels, pin the request to the full id."""
    if res is None:
        return Deny("container-not-in-stack", f"no such container {need.ref!r}")
    if not _HEX64.fullmatch(res.id):
        return Deny("container-not-in-stack", "resolver returned a malformed id")
    if not in_stack(res, stack):
        return Deny(
            "container-not-in-stack",
            f"container {need.ref!r} is not the server of stack {stack!r}",
        )
    return Allow(need.rule, f"{need.prefix}/containers/{res.id}/{need.suffix}{need.query}")


def finish_exec(
    need: NeedExec, info: ExecInfo | None, res: Resolution | None, stack: str
) -> Decision:
    """Second step for exec endpoints: the exec's container must be ours, and non-root."""
    if info is None or res is None:
        return Deny("exec-not-in-stack", "no such exec")
    if res.id != info.container_id or not in_stack(res, stack):
        return Deny("exec-not-in-stack", "exec does not belong to this stack's server")
    if need.rule == "exec-start":
        if info.privileged:
            return Deny("exec-privileged", "privileged exec is not allowed")
        if not user_allowed(info.user):
            return Deny("exec-user", f"exec as user {info.user!r} is not allowed")
    target = f"{need.prefix}/exec/{need.exec_id}/{need.suffix}{need.query}"
    return Allow(need.rule, target, hijack=need.hijack)


def decide(
    method: str,
    raw_target: str,
    body: bytes,
    stack: str,
    containers: Callable[[str], Resolution | None] = lambda _ref: None,
    execs: Callable[[str], ExecInfo | None] = lambda _id: None,
) -> Decision:
    """Both steps with synchronous lookups: for tests and property checks."""
    first = classify(method, raw_target, body, stack)
    if isinstance(first, NeedContainer):
        return finish_container(first, containers(first.ref), stack)
    if isinstance(first, NeedExec):
        info = execs(first.exec_id)
        res = containers(info.container_id) if info is not None else None
        return finish_exec(first, info, res, stack)
    return first


# --- parsing Docker's inspect answers ------------------------------------------------------


def resolution_from_inspect(obj: object) -> Resolution | None:
    if not isinstance(obj, dict):
        return None
    cid = obj.get("Id")
    config = obj.get("Config")
    labels = config.get("Labels") if isinstance(config, dict) else None
    if not isinstance(cid, str):
        return None
    clean = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
    return Resolution(cid, clean)


def exec_info_from_inspect(obj: object) -> ExecInfo | None:
    if not isinstance(obj, dict):
        return None
    eid, cid, proc = obj.get("ID"), obj.get("ContainerID"), obj.get("ProcessConfig")
    if not isinstance(eid, str) or not isinstance(cid, str) or not isinstance(proc, dict):
        return None
    user = proc.get("user", "")
    return ExecInfo(
        eid, cid, user if isinstance(user, str) else "<?>", proc.get("privileged") is not False
    )
