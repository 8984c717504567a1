"""Pure rules of the Docker API guard: parse a request, decide allow or deny.

No I/O here. The shell (`supervisor.guard`) reads a request head, calls `parse_head`,
then `decide_head` with its lookups: `classify` (the head alone decides most requests,
before any body is read), the container or exec named in the path resolved when it asks
(a `NeedContainer` / `NeedExec` answer), then `finish_container` / `finish_exec`. Only
then does it read the body and call `accept_body`, which returns the exact bytes to
forward. The tests drive the same `decide_head` and `accept_body`.

Design choices, all in the direction of "deny when unsure":
- The allowlist is matched on a strictly validated path: only `[A-Za-z0-9._-]` in
  segments, no empty, `.` or `..` segment, no percent-encoding at all (Docker routes on
  the *decoded* path, so any encoding could smuggle a `/`), no backslash, no NUL.
- A `/v1.NN` prefix is accepted only between v1.24 (older versions let
  `POST /containers/{id}/start` carry a HostConfig) and the newest version the engine
  reports: the engine answers a version it refuses with an ordinary error, which must
  never be mistaken for a hijack.
- The query is parsed and re-encoded, so Docker sees exactly what we checked; the
  `filters` of list and event requests are merged with the stack's labels (Docker ANDs
  label filters, so the client can only narrow them) and `type` is forced to container.
- Stop and restart wait at least the server's grace period and never take a `signal`:
  a dashboard can never skip the world save.
- A container ref is resolved by the shell and the request is rewritten to the full
  id, so Docker acts on the very container whose labels we checked.
- Bodies are decoded the way Go's encoding/json reads them (keys match case-insensitively,
  with Unicode folding, so ambiguous duplicates are refused), checked against a per-endpoint
  allowlist of keys and types, and re-encoded: Docker only ever parses bytes we wrote.
- One rule for users, numeric only: empty (the container's own non-root `uid:gid`), or
  `uid[:gid]` with canonical decimal ids in 1..2**31-1 (larger ids wrap to 0 on engines
  that truncate to uint32). A bare uid is pinned to the service's gid: runc gives gid 0 to
  a uid without a passwd entry, and an explicit group also stops it adding the image's
  supplementary groups. Names are refused: their groups come from the image's files.
- Query parameters are allowlisted per endpoint, as bodies are; anything else is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from entrypoint.contract import LABEL_ROLE, LABEL_STACK
from supervisor.dockertypes import (  # the engine parses exec inspects into ExecInfo
    ExecInfo,
    owned_by,
)
from supervisor.roles import Role

MAX_HEAD: Final = 64 * 1024
# Every body the guard accepts is a small JSON object (exec create is the largest).
MAX_BODY: Final = 64 * 1024
# Harmless option bodies real clients echo on stop, restart and start (dockerode).
MAX_OPTIONS_BODY: Final = 512
MIN_API_MINOR: Final = 24
MAX_ID: Final = 2**31 - 1
# A Content-Length longer than this is refused before int() sees it (64 KiB has 5 digits).
MAX_LENGTH_DIGITS: Final = 19

_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"v1\.([1-9][0-9]?)")
_METHOD = re.compile(r"[A-Z]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NAME_USER = re.compile(r"[a-z_][a-z0-9_.-]*")
_NUM = re.compile(r"[1-9][0-9]{0,9}")
_INT = re.compile(r"-?[0-9]{1,9}")

# Client headers forwarded as sent; everything else (framing, hop-by-hop, content type)
# is dropped and, where needed, written by us.
_FORWARD_HEADERS: Final = frozenset({"host", "user-agent", "accept"})
# What Docker answers when it hands an attached exec its raw stream without an Upgrade.
RAW_STREAM_TYPES: Final = frozenset(
    {"application/vnd.docker.raw-stream", "application/vnd.docker.multiplexed-stream"}
)


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """What the guard enforces for one stack."""

    stack: str
    # The server's grace period: stop and restart wait at least this long.
    min_stop_timeout: int = 10
    # The newest API minor version the engine speaks (from GET /version); None: no cap.
    max_api_minor: int | None = None
    # The service's gid: an exec given a bare uid runs in this group, never in group 0.
    exec_gid: int = 568


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
    # True only for exec start: once Docker switches protocols, raw client bytes are the
    # exec's stdin. Until then nothing after the request body reaches Docker.
    hijack: bool = False
    # The exact body to forward (re-encoded by us); empty for bodiless requests.
    body: bytes = b""
    # The full id of the container the request acts on, when it acts on one.
    container_id: str | None = None


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
class Head:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = field(default=())

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of every `name` header, lower-cased."""
        return {t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()}

    @property
    def wants_upgrade(self) -> bool:
        return bool(self.get_all("upgrade")) and "upgrade" in self.tokens("connection")

    @property
    def expects_continue(self) -> bool:
        return "100-continue" in self.tokens("expect")


Decision = Allow | Deny
Classified = Allow | Deny | NeedContainer | NeedExec


# --- HTTP head -----------------------------------------------------------------------------


def parse_head(raw: bytes) -> Head | Deny:
    """Parse a request head (without the final CRLFCRLF). Strict: CRLF only, no folding."""
    text = raw.decode("latin-1")  # decodes every byte
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
    if len(values[0]) > MAX_LENGTH_DIGITS:
        # Bounded before int(): Python refuses to convert strings of over 4300 digits.
        return Deny("body-too-large", f"request body over {MAX_BODY} bytes", 413)
    n = int(values[0])
    if n > MAX_BODY:
        return Deny("body-too-large", f"request body over {MAX_BODY} bytes", 413)
    return n


def upstream_head(head: Head, allow: Allow) -> bytes:
    """The head to send to Docker: our target, our framing, a few client headers."""
    out = [f"{head.method} {allow.target} HTTP/1.1"]
    has_host = False
    for name, value in head.headers:
        lname = name.lower()
        if lname in _FORWARD_HEADERS:
            has_host = has_host or lname == "host"
            out.append(f"{name}: {value}")
    if not has_host:
        out.append("Host: docker")
    if allow.hijack and head.wants_upgrade:
        # Docker answers 101 and hands over the raw stream only when Upgrade is present.
        out += ["Connection: Upgrade", "Upgrade: tcp"]
    else:
        # One request per connection: nothing after this request is ever parsed by Docker.
        out.append("Connection: close")
    if allow.body:
        out.append("Content-Type: application/json")
    if allow.body or head.method in ("POST", "PUT"):
        out.append(f"Content-Length: {len(allow.body)}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def parse_status(raw_head: bytes) -> tuple[int, str] | None:
    """(status, content type) of a response head, or None when it is not HTTP/1.x."""
    lines = raw_head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return None
    content_type = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            content_type = value.split(";")[0].strip().lower()
    return int(parts[1]), content_type


def switched_protocols(raw_head: bytes) -> bool:
    """Did Docker hand over the raw stream? Only then may client bytes follow the request.

    101 after an Upgrade, or 200 with a raw-stream type for an attached start without one.
    Any other answer (an error, a detached start, a refused version) is an ordinary
    response after which Docker would read the connection as HTTP again.
    """
    parsed = parse_status(raw_head)
    if parsed is None:
        return False
    status, content_type = parsed
    return status == 101 or (status == 200 and content_type in RAW_STREAM_TYPES)


# --- path and query ------------------------------------------------------------------------


def _split_target(
    raw_target: str, policy: Policy
) -> tuple[str, tuple[str, ...], list[tuple[str, str]]] | Deny:
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
    if "\\" in path:
        return Deny("path", "backslash in the path")
    segments = path[1:].split("/")
    for seg in segments:
        if seg in ("", ".", ".."):
            return Deny("path", "empty, '.' or '..' path segment")
        if not _SEGMENT.fullmatch(seg):
            return Deny("path", "unexpected character in the path")
    prefix = ""
    if segments[0].startswith("v") and segments[0][1:2].isdigit():
        denied = _check_version(segments[0], policy)
        if denied is not None:
            return denied
        prefix = "/" + segments[0]
        segments = segments[1:]
        if not segments:
            return Deny("not-in-allowlist", "bare version prefix")
    pairs = parse_qsl(query, keep_blank_values=True)
    return prefix, tuple(segments), pairs


def _check_version(segment: str, policy: Policy) -> Deny | None:
    m = _VERSION.fullmatch(segment)
    if m is None or int(m.group(1)) < MIN_API_MINOR:
        return Deny("api-version", f"API version prefix must be v1.{MIN_API_MINOR} or newer")
    if policy.max_api_minor is not None and int(m.group(1)) > policy.max_api_minor:
        return Deny(
            "api-version",
            f"API version {segment} is newer than the engine's v1.{policy.max_api_minor}",
        )
    return None


def _encode_query(pairs: list[tuple[str, str]]) -> str:
    return ("?" + urlencode(pairs)) if pairs else ""


def _loads(text: str | bytes, what: str, hook: Callable[..., Any] | None = None) -> Any:
    """json.loads that turns every failure (deep nesting included) into a 400 denial."""
    try:
        raw = text.decode("utf-8") if isinstance(text, bytes) else text
        return json.loads(raw, object_pairs_hook=hook)
    except (UnicodeDecodeError, ValueError):
        return Deny(what, f"{what} is not valid JSON", 400)
    except RecursionError:
        return Deny(what, f"{what} is nested too deeply", 400)


def _forced_filters(
    pairs: list[tuple[str, str]], forced: Mapping[str, list[str]], replace_keys: frozenset[str]
) -> list[tuple[str, str]] | Deny:
    """Merge the client's `filters` with ours; keys in `replace_keys` are overridden."""
    raw = [v for k, v in pairs if k == "filters"]
    if len(raw) > 1:
        return Deny("filters", "more than one filters parameter")
    merged: dict[str, dict[str, bool]] = {}
    if raw and raw[0]:
        client = _loads(raw[0], "filters")
        if isinstance(client, Deny):
            return client
        if not isinstance(client, dict):
            return Deny("filters", "filters must be a JSON object")
        for key, val in client.items():
            if isinstance(val, list) and all(isinstance(v, str) for v in val):
                merged[key] = dict.fromkeys(val, True)
            elif isinstance(val, dict) and all(isinstance(v, bool) for v in val.values()):
                merged[key] = {str(k): True for k in val}
            else:
                return Deny("filters", f"bad value for filter {key!r}")
    for key, values in forced.items():
        base = {} if key in replace_keys else merged.get(key, {})
        merged[key] = {**base, **dict.fromkeys(values, True)}
    rest = [(k, v) for k, v in pairs if k != "filters"]
    return [*rest, ("filters", json.dumps(merged, separators=(",", ":"), sort_keys=True))]


def _graceful_stop_query(
    pairs: list[tuple[str, str]], policy: Policy
) -> list[tuple[str, str]] | Deny:
    """Stop and restart: no `signal`, and `t` at least the grace period (or -1: no limit)."""
    if any(k.casefold() == "signal" for k, _ in pairs):
        return Deny("stop-signal", "choosing the stop signal is not allowed (the world save)")
    waits = [v for k, v in pairs if k == "t"]
    if len(waits) > 1:
        return Deny("stop-timeout", "more than one t parameter", 400)
    t = policy.min_stop_timeout
    if waits:
        if not _INT.fullmatch(waits[0]):
            return Deny("stop-timeout", "t must be an integer number of seconds", 400)
        asked = int(waits[0])
        # A negative wait means no limit: never harder than the grace period.
        t = asked if asked < 0 or asked >= policy.min_stop_timeout else t
    return [*((k, v) for k, v in pairs if k != "t"), ("t", str(t))]


# --- users and bodies ----------------------------------------------------------------------


def _id(part: str) -> bool:
    """A canonical decimal id in 1..2**31-1. Docker parses ids with Atoi, so "+0", "00" or
    "0x0" could mean root, and ids past 2**32 wrap to 0 where containerd truncates."""
    return _NUM.fullmatch(part) is not None and int(part) <= MAX_ID


def exec_user(user: str, gid: int) -> str | None:
    """The user an exec create is forwarded with, or None when refused.

    Empty stays empty (the container's own `uid:gid`, non-root by policy); `uid:gid` with
    both ids in 1..2**31-1 is kept; a bare `uid` becomes `uid:<gid>`, because runc runs a
    uid without a passwd entry in group 0, and an explicit group also keeps runc from
    adding the image's supplementary groups. Names (and so root) are refused: the groups
    a name has are in the image's /etc/passwd and /etc/group, which the guard cannot see."""
    if user == "":
        return ""
    uid, sep, group = user.partition(":")
    if not _id(uid) or (sep and not _id(group)):
        return None
    return user if sep else f"{uid}:{gid}"


def user_allowed(user: str) -> bool:
    """The users an exec may be started with: empty, or the pinned numeric `uid:gid` form
    `exec_user` forwards (so an exec created past the guard with a bare uid, a name or
    group 0 is never started through it)."""
    return user == "" or (":" in user and exec_user(user, 1) == user)


def _decode_object(body: bytes, what: str) -> dict[str, Any] | Deny:
    """A JSON object with keys folded as Go folds them; ambiguous duplicates refused."""
    folded_counts: dict[str, int] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        for k, _ in pairs:
            folded = k.casefold()
            folded_counts[folded] = folded_counts.get(folded, 0) + 1
        return dict(pairs)

    obj = _loads(body, what, pairs_hook)
    if isinstance(obj, Deny):
        return obj
    if not isinstance(obj, dict):
        return Deny(what, f"{what} must be a JSON object", 400)
    if any(n > 1 for n in folded_counts.values()):
        # Go matches keys case-insensitively; which duplicate it keeps is not ours to guess.
        return Deny(what, f"duplicate keys (case-insensitive) in {what}")
    return {k.casefold(): v for k, v in obj.items()}


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_console_size(v: Any) -> bool:
    return v is None or (
        isinstance(v, list)
        and len(v) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 65535 for x in v)
    )


# Canonical name and type check of every key an exec create may carry (types.ExecConfig).
_EXEC_CREATE_KEYS: Final[dict[str, tuple[str, Callable[[Any], bool]]]] = {
    k.casefold(): (k, check)
    for k, check in (
        ("User", _is_str),
        ("Privileged", _is_bool),
        ("Tty", _is_bool),
        ("ConsoleSize", _is_console_size),
        ("AttachStdin", _is_bool),
        ("AttachStderr", _is_bool),
        ("AttachStdout", _is_bool),
        ("Detach", _is_bool),
        ("DetachKeys", _is_str),
        ("Env", _is_str_list),
        ("WorkingDir", _is_str),
        ("Cmd", lambda v: (_is_str_list(v) and bool(v)) or (_is_str(v) and bool(v))),
    )
}
_EXEC_START_KEYS: Final[dict[str, tuple[str, Callable[[Any], bool]]]] = {
    k.casefold(): (k, check)
    for k, check in (("Detach", _is_bool), ("Tty", _is_bool), ("ConsoleSize", _is_console_size))
}
# dockerode echoes its own start options into the body; Docker ignores them, so do we.
_EXEC_START_CLIENT_ECHO: Final = frozenset({"hijack", "stdin"})


def _canonical(
    obj: dict[str, Any], keys: Mapping[str, tuple[str, Callable[[Any], bool]]], what: str
) -> dict[str, Any] | Deny:
    out: dict[str, Any] = {}
    for folded, value in obj.items():
        known = keys.get(folded)
        if known is None:
            return Deny(what, f"key {folded!r} is not accepted in {what}")
        name, check = known
        if value is None:
            continue  # Go leaves the field at its zero value
        if not check(value):
            return Deny(what, f"bad value for {name} in {what}", 400)
        out[name] = value
    return out


def _exec_create_body(body: bytes, gid: int) -> bytes | Deny:
    obj = _decode_object(body, "exec-body")
    if isinstance(obj, Deny):
        return obj
    config = _canonical(obj, _EXEC_CREATE_KEYS, "exec-body")
    if isinstance(config, Deny):
        return config
    if config.get("Privileged", False):
        return Deny("exec-privileged", "privileged exec is not allowed")
    user = config.get("User", "")
    pinned = exec_user(user, gid)
    if pinned is None:
        return Deny(
            "exec-user", f"exec as user {user!r} is not allowed (root, a name or unknown form)"
        )
    if "Cmd" not in config:
        return Deny("exec-body", "exec body has no Cmd", 400)
    if pinned:
        config["User"] = pinned
    return _encode_body(config)


def _exec_start_body(body: bytes, upgrade: bool) -> bytes | Deny:
    obj = _decode_object(body, "exec-start-body")
    if isinstance(obj, Deny):
        return obj
    echoed = {k: v for k, v in obj.items() if k not in _EXEC_START_CLIENT_ECHO}
    config = _canonical(echoed, _EXEC_START_KEYS, "exec-start-body")
    if isinstance(config, Deny):
        return config
    if upgrade and config.get("Detach", False):
        # A detached start is answered as plain HTTP: an Upgrade with it is a smuggling try.
        return Deny("exec-start-body", "Detach cannot be combined with Upgrade")
    return _encode_body({"Detach": False, "Tty": False, **config})


def _options_body(body: bytes, keys: frozenset[str], rule: str) -> bytes | Deny:
    """A small JSON object echoing the endpoint's query options (dockerode sends
    `{"t":30}` with `?t=30` on stop): accepted and never forwarded."""
    if len(body) > MAX_OPTIONS_BODY:
        return Deny("body-not-allowed", f"no request body over {MAX_OPTIONS_BODY} bytes for {rule}")
    obj = _decode_object(body, "options-body")
    if isinstance(obj, Deny):
        return obj
    if "signal" in obj:
        return Deny("stop-signal", "choosing the stop signal is not allowed (the world save)")
    extra = sorted(set(obj) - keys)
    if extra:
        return Deny("body-not-allowed", f"body keys {extra} are not accepted for {rule}")
    if any(isinstance(v, (dict, list)) for v in obj.values()):
        return Deny("body-not-allowed", f"only scalar option values are accepted for {rule}")
    return b""


def _encode_body(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


# Body keys a client may echo from each endpoint's query (never forwarded).
_OPTION_KEYS: Final[dict[str, frozenset[str]]] = {
    "container-stop": frozenset({"t"}),
    "container-restart": frozenset({"t"}),
    "container-start": frozenset({"detachkeys"}),
}


def accept_body(allow: Allow, body: bytes, head: Head, policy: Policy) -> Decision:
    """Last step, once the body is read: the Allow with the exact bytes to forward."""
    if allow.rule == "exec-create":
        checked = _exec_create_body(body, policy.exec_gid)
    elif allow.rule == "exec-start":
        checked = _exec_start_body(body or b"{}", head.wants_upgrade)
    elif not body:
        return allow
    elif allow.rule in _OPTION_KEYS:
        checked = _options_body(body, _OPTION_KEYS[allow.rule], allow.rule)
    else:
        return Deny("body-not-allowed", f"no request body is accepted for {allow.rule}")
    if isinstance(checked, Deny):
        return checked
    return replace(allow, body=checked)


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
_GRACEFUL: Final = frozenset({"container-stop", "container-restart"})
# The query parameters each allowed endpoint accepts: what the docker CLI (20.10+) and
# dockerode 4 send for the dashboard's calls. Go reads query keys case-sensitively, so the
# names are matched exactly; `signal` on stop and restart is refused by its own rule first.
QUERY_KEYS: Final[dict[str, frozenset[str]]] = {
    "ping": frozenset(),
    "version": frozenset(),
    "container-list": frozenset({"all", "limit", "size", "filters", "before", "since"}),
    "events": frozenset({"since", "until", "filters"}),
    "container-inspect": frozenset({"size"}),
    "container-logs": frozenset(
        {"follow", "stdout", "stderr", "since", "until", "timestamps", "tail", "details"}
    ),
    "container-stats": frozenset({"stream", "one-shot"}),
    "container-start": frozenset({"detachKeys"}),
    "container-stop": frozenset({"t"}),
    "container-restart": frozenset({"t"}),
    "exec-create": frozenset(),
    "exec-start": frozenset(),
    "exec-inspect": frozenset(),
}


def _query_denied(rule: str, pairs: list[tuple[str, str]]) -> Deny | None:
    extra = sorted({k for k, _ in pairs} - QUERY_KEYS[rule])
    if extra:
        return Deny("query-param", f"query parameters {extra} are not accepted for {rule}")
    return None


def stack_filters(stack: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_STACK}={stack}", f"{LABEL_ROLE}=server"]}


def classify(method: str, raw_target: str, policy: Policy) -> Classified:
    """First step, from the request line alone: allow, deny, or ask the shell to resolve
    a container or an exec. The body is checked later by `accept_body`."""
    split = _split_target(raw_target, policy)
    if isinstance(split, Deny):
        return split
    prefix, seg, pairs = split
    rule = _rule_of(method, seg)
    if rule is None:
        return Deny("not-in-allowlist", f"{method} /{'/'.join(seg)} is not an allowed endpoint")
    if rule in _GRACEFUL:
        graceful = _graceful_stop_query(pairs, policy)
        if isinstance(graceful, Deny):
            return graceful
        pairs = graceful
    denied = _query_denied(rule, pairs)
    if denied is not None:
        return denied
    query = _encode_query(pairs)
    if rule in ("ping", "version"):
        return Allow(rule, f"{prefix}/{seg[0]}{query}")
    if rule == "container-list":
        forced = _forced_filters(pairs, stack_filters(policy.stack), frozenset())
        if isinstance(forced, Deny):
            return forced
        return Allow("container-list", f"{prefix}/containers/json{_encode_query(forced)}")
    if rule == "events":
        evf = {**stack_filters(policy.stack), "type": ["container"]}
        forced = _forced_filters(pairs, evf, frozenset({"type"}))
        if isinstance(forced, Deny):
            return forced
        return Allow("events", f"{prefix}/events{_encode_query(forced)}")
    if seg[0] == "containers":
        if not _REF.fullmatch(seg[1]):
            return Deny("container-ref", "malformed container reference")
        return NeedContainer(rule, seg[1], prefix, seg[2], query)
    if not _HEX64.fullmatch(seg[1]):
        return Deny("exec-ref", "exec id must be a full 64-hex id")
    return NeedExec(rule, seg[1], prefix, seg[2], query, hijack=rule == "exec-start")


def _rule_of(method: str, seg: tuple[str, ...]) -> str | None:
    """The allowlist rule an endpoint falls under, from its method and path alone."""
    if seg == ("_ping",) and method in ("GET", "HEAD"):
        return "ping"
    if seg == ("version",) and method == "GET":
        return "version"
    if seg == ("containers", "json") and method == "GET":
        return "container-list"
    if seg == ("events",) and method == "GET":
        return "events"
    if len(seg) == 3 and seg[0] == "containers" and seg[1] != "json":
        return _CONTAINER_ACTIONS.get((method, seg[2]))
    if len(seg) == 3 and seg[0] == "exec":
        return _EXEC_ACTIONS.get((method, seg[2]))
    return None


def in_stack(resolution: Resolution, stack: str) -> bool:
    labels = resolution.labels
    return owned_by(labels, stack) and labels.get(LABEL_ROLE) == Role.SERVER


def finish_container(need: NeedContainer, res: Resolution | None, policy: Policy) -> Decision:
    """Second step for container endpoints: check labels, pin the request to the full id."""
    if res is None:
        return Deny("container-not-in-stack", f"no such container {need.ref!r}")
    if not _HEX64.fullmatch(res.id):
        return Deny("container-not-in-stack", "resolver returned a malformed id")
    if not in_stack(res, policy.stack):
        return Deny(
            "container-not-in-stack",
            f"container {need.ref!r} is not the server of stack {policy.stack!r}",
        )
    target = f"{need.prefix}/containers/{res.id}/{need.suffix}{need.query}"
    return Allow(need.rule, target, container_id=res.id)


def finish_exec(
    need: NeedExec, info: ExecInfo | None, res: Resolution | None, policy: Policy
) -> Decision:
    """Second step for exec endpoints: the exec's container must be ours, and non-root."""
    if info is None or res is None:
        return Deny("exec-not-in-stack", "no such exec")
    if res.id != info.container_id or not in_stack(res, policy.stack):
        return Deny("exec-not-in-stack", "exec does not belong to this stack's server")
    if need.rule == "exec-start":
        if info.privileged:
            return Deny("exec-privileged", "privileged exec is not allowed")
        if not user_allowed(info.user):
            return Deny("exec-user", f"exec as user {info.user!r} is not allowed")
    target = f"{need.prefix}/exec/{need.exec_id}/{need.suffix}{need.query}"
    return Allow(need.rule, target, hijack=need.hijack, container_id=res.id)


async def decide_head(
    head: Head,
    policy: Policy,
    containers: Callable[[str], Awaitable[Resolution | None]],
    execs: Callable[[str], Awaitable[ExecInfo | None]],
) -> Decision:
    """The decision on a request head, the one path the guard and the tests take:
    classify, then the lookups the endpoint needs, then the check of what they found.
    The lookups are the caller's (the guard: the engine's inspects, cached; the tests:
    tables), so this awaits only them and stays pure. An allowed head still has its
    body checked (`accept_body`) once the guard has read it."""
    first = classify(head.method, head.target, policy)
    if isinstance(first, NeedContainer):
        return finish_container(first, await containers(first.ref), policy)
    if isinstance(first, NeedExec):
        info = await execs(first.exec_id)
        res = await containers(info.container_id) if info is not None else None
        return finish_exec(first, info, res, policy)
    return first
