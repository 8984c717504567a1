"""Pure: what a crash report holds, how its secrets are removed, how it is named and
which reports are kept (issue 27). No I/O: supervisor/crashes.py gathers the parts
through the engine, writes and reads the files.

A report is one JSON document. Every text in it passes `redact` before it is written:
each secret value the supervisor generated or was given is replaced by `***` wherever it
appears (logs, HyOS's state files, the inspect), JWTs and bearer tokens by shape, and the
values of secret-named variables in the inspect's `Config.Env`. A report therefore holds
no value worth stealing, whoever reads the state dir's 0600 file.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FORMAT",
    "MASK",
    "FileTail",
    "Summary",
    "build",
    "newest_before",
    "redact",
    "redact_inspect",
    "report_id",
    "summary",
    "tail_lines",
    "to_keep",
]

FORMAT = 1
MASK = "***"
# A secret shorter than this is not masked by value (a 1-character join password would
# turn every such letter of every log into ***); the shape rules still apply.
MIN_SECRET_LENGTH = 4
# Where HyOS's server writes what `crashes show` wants (lib/state.sh; the JVM's cwd).
SERVER_LOG_GLOB = "*_server.log"
HS_ERR_GLOB = "hs_err_pid*.log"
STATE_FILES = ("server.json", "health.json", "version.json")
MTIME_SLACK_S = 0.25

# Secrets by shape: a JWT (three base64url parts, the first two JSON objects), a bearer
# token, and `key=value` / `"key": "value"` pairs whose key names a secret.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_SECRET_NAME = (
    r"[A-Za-z0-9_.-]*(?:secret|password|passwd|token|api_?key|private_?key)[A-Za-z0-9_.-]*"
)
_PAIR = re.compile(
    rf"""(?ix)
    (?P<key>"?{_SECRET_NAME}"?\s*[:=]\s*)      # a secret-named key, then = or :
    (?P<q>"?)(?P<value>[^"\s,;}}&]+)(?P=q)     # its value, quoted or not
    """
)
_SECRET_KEY = re.compile(rf"(?i)^{_SECRET_NAME}$")


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value, JWT, bearer token and secret-named pair's value
    replaced by MASK. Longest values first, so one secret inside another leaves nothing."""
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _JWT.sub(MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)

    def pair(match: re.Match[str]) -> str:
        name = match.group("key").rstrip(' \t:="')
        if match.group("value") == MASK or name.upper().endswith("_FILE"):
            return match.group(0)  # a *_FILE setting holds a path, not the secret
        quote = match.group("q")
        return f"{match.group('key')}{quote}{MASK}{quote}"

    return _PAIR.sub(pair, text)


def _redact_value(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {
            str(k): MASK
            if _SECRET_KEY.match(str(k)) and isinstance(v, str) and v
            else _redact_value(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(v, secrets) for v in value]
    return value


def redact_inspect(document: Mapping[str, Any], secrets: Sequence[str]) -> dict[str, Any]:
    """An inspect result with the values of secret-named variables (`Config.Env`) gone
    (`API_CLIENT_SECRET=***`; a `*_FILE` path stays) and every other string redacted."""
    config = dict(document.get("Config") or {})
    env = []
    for item in config.get("Env") or ():
        name, eq, value = str(item).partition("=")
        secret_name = _SECRET_KEY.match(name) and not name.endswith("_FILE")
        env.append(f"{name}={MASK}" if eq and secret_name and value else str(item))
    config["Env"] = env
    cleaned = dict(_redact_value({**document, "Config": config}, secrets))
    return cleaned


def tail_lines(data: bytes | str | None, lines: int) -> list[str]:
    """The last `lines` lines of a text (undecodable bytes replaced)."""
    if data is None:
        return []
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text.splitlines()[-lines:] if lines > 0 else []


@dataclass(frozen=True, slots=True)
class FileTail:
    """A file the helper found: its path, size, mtime and its last bytes."""

    path: str
    size: int
    mtime: float
    tail: bytes = b""


def newest_before(files: Iterable[FileTail], glob: str, before: float | None) -> FileTail | None:
    """The newest file whose name matches `glob`, written no later than `before` (the
    exit, from the die event; the crashed run's last write comes before it, on the same
    host clock: MTIME_SLACK_S only for the event's rounding). A server already started
    again (after the backoff and its start, well beyond the slack) has opened a new log,
    which is not the crashed run's."""
    matching = [
        f
        for f in files
        if fnmatch.fnmatch(f.path.rsplit("/", 1)[-1], glob)
        and (before is None or f.mtime <= before + MTIME_SLACK_S)
    ]
    return max(matching, key=lambda f: (f.mtime, f.path), default=None)


def report_id(at: float, role: str, container_id: str) -> str:
    """Sortable by time, unique per service, container and millisecond (one container
    restarted with a short backoff can die twice in a second):
    `20261207T063800.123Z-server-1a2b3c`."""
    moment = datetime.fromtimestamp(at, UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f".{moment.microsecond // 1000:03d}Z"
    return f"{stamp}-{role}-{container_id[:6] or 'none'}"


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class CrashFacts:
    """What the daemon knows of one crash when it asks for its report: whose, when, what
    was judged and decided (the rest is gathered from the engine)."""

    role: str
    container_id: str
    container_name: str
    died_at: float
    trigger: str  # exit | unhealthy
    judgement: Mapping[str, Any]
    decision: Mapping[str, Any]
    decisions: Sequence[Mapping[str, Any]]

    @property
    def report_id(self) -> str:
        return report_id(self.died_at, self.role, self.container_id)


def build(
    *,
    facts: CrashFacts,
    written_at: float,
    completed_at: float | None = None,
    container_log: Sequence[str],
    server_log: FileTail | None,
    hs_err: FileTail | None,
    state_files: Mapping[str, bytes | None],
    inspect: Mapping[str, Any] | None,
    memory: Mapping[str, Any],
    lines: int,
    missing: Sequence[str],
    secrets: Sequence[str],
) -> dict[str, Any]:
    """The report's document, redacted. `missing` names the parts that could not be had
    in time (or at all), so an empty section is never mistaken for an empty log."""

    def text(data: bytes | None) -> str | None:
        return None if data is None else redact(data.decode("utf-8", "replace"), secrets)

    def tail(found: FileTail | None, keep: int) -> dict[str, Any] | None:
        if found is None:
            return None
        return {
            "path": found.path,
            "size": found.size,
            "mtime": _iso(found.mtime),
            "lines": [redact(line, secrets) for line in tail_lines(found.tail, keep)],
        }

    states: dict[str, Any] = {}
    for name, raw in state_files.items():
        shown = text(raw)
        try:
            states[name] = None if shown is None else json.loads(shown)
        except ValueError:
            states[name] = shown
    document = {
        "format": FORMAT,
        "id": facts.report_id,
        "service": facts.role,
        "container_id": facts.container_id,
        "container": facts.container_name,
        "died_at": _iso(facts.died_at),
        "written_at": _iso(written_at),
        # Set when parts late at the deadline completed this report afterwards.
        "completed_at": None if completed_at is None else _iso(completed_at),
        "trigger": facts.trigger,
        "judgement": dict(facts.judgement),
        "decision": dict(facts.decision),
        "decisions": [dict(d) for d in facts.decisions],
        "container_log": [redact(line, secrets) for line in container_log[-lines:]],
        "server_log": tail(server_log, lines),
        "hs_err": tail(hs_err, 2000),
        "state": states,
        "inspect": None if inspect is None else redact_inspect(inspect, secrets),
        "memory": dict(memory),
        "missing": list(missing),
    }
    return _redact_value(document, secrets)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Summary:
    """One report as `crashes` and `status` list it."""

    id: str
    service: str
    died_at: str | None
    reason: str
    exit_code: int | None
    kind: str
    decision: str
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "died_at": self.died_at,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "kind": self.kind,
            "decision": self.decision,
            "size": self.size,
        }


def summary(document: Mapping[str, Any], size: int = 0) -> Summary:
    judgement = document.get("judgement") or {}
    code = judgement.get("exit_code")
    return Summary(
        id=str(document.get("id", "")),
        service=str(document.get("service", "")),
        died_at=document.get("died_at"),
        reason=str(judgement.get("reason") or document.get("trigger") or ""),
        exit_code=code if isinstance(code, int) else None,
        kind=str(judgement.get("kind") or document.get("trigger") or ""),
        decision=str((document.get("decision") or {}).get("action") or ""),
        size=size,
    )


def to_keep(reports: Sequence[tuple[str, int]], keep: int, max_bytes: int) -> list[str]:
    """Of (id, size) pairs, the ids to delete: beyond the newest `keep`, and the oldest
    while the total passes `max_bytes` (the newest one is always kept)."""
    ordered = sorted(reports, key=lambda r: r[0], reverse=True)  # ids sort by time
    kept: list[tuple[str, int]] = []
    total = 0
    gone: list[str] = []
    for report, size in ordered:
        if gone or len(kept) >= keep or (kept and total + size > max_bytes):
            gone.append(report)  # and every older one: what is kept is the newest run
            continue
        kept.append((report, size))
        total += size
    return gone


def render(document: Mapping[str, Any]) -> list[str]:
    """`crashes show`'s text: the judgement and decision first, then each section."""
    judgement = document.get("judgement") or {}
    decision = document.get("decision") or {}
    memory = document.get("memory") or {}
    peak = memory.get("peak_bytes")
    limit = memory.get("limit_bytes")
    out = [
        f"crash report {document.get('id')}",
        f"  service:   {document.get('service')} ({document.get('container')}, "
        f"{str(document.get('container_id') or '')[:12]})",
        f"  died at:   {document.get('died_at')} (written {document.get('written_at')}"
        + (f", completed {document['completed_at']})" if document.get("completed_at") else ")"),
        f"  trigger:   {document.get('trigger')}",
        f"  exit:      code {judgement.get('exit_code')}, signal {judgement.get('signal') or '-'}, "
        f"oom {bool(judgement.get('oom_killed'))}, kind {judgement.get('kind')}",
        f"  reason:    {judgement.get('reason')}",
        f"  decision:  {decision.get('action')} (backoff {decision.get('backoff_s')} s, "
        f"restarts {decision.get('restart_count')}, status {decision.get('status')})",
        f"  memory:    peak {'unknown' if peak is None else f'{peak} bytes'}, limit "
        f"{'none' if limit is None else f'{limit} bytes'}",
    ]
    for item in document.get("missing") or ():
        out.append(f"  missing:   {item}")
    out.append("")
    out.append("decisions (oldest first):")
    for entry in document.get("decisions") or ():
        when = _iso(entry.get("at")) if isinstance(entry.get("at"), int | float) else "?"
        out.append(
            f"  {when} {entry.get('trigger')}: {entry.get('action')} "
            f"(backoff {entry.get('backoff_s')} s) {entry.get('reason') or ''}".rstrip()
        )
    sections: list[tuple[str, Any]] = [("container log", document.get("container_log"))]
    for key, title in (("server_log", "server log"), ("hs_err", "JVM error file")):
        found = document.get(key)
        if found:
            sections.append((f"{title} {found.get('path')}", found.get("lines")))
    for title, lines in sections:
        out.append("")
        out.append(f"{title} (last {len(lines or [])} lines):")
        out.extend(f"  | {line}" for line in lines or ())
    for name, value in (document.get("state") or {}).items():
        out.append("")
        out.append(f"HyOS state {name}:")
        text = json.dumps(value, indent=2, sort_keys=True) if value is not None else "(none)"
        out.extend(f"  {line}" for line in text.splitlines())
    out.append("")
    out.append("(the redacted inspect: `hyos-supervisor crashes show --json ID`)")
    return out
