"""A client for the server's REST API (HyOS's HytaleAPI plugin, port 30381).

Shapes (HyOS's manager/src/lib/hytale-api.ts and app/api routes):
  POST /auth/token {clientId, secret}   -> {access_token, token_type, expires_in}
  GET  /server/status                   -> {online, playerCount, maxPlayers, name, ...}
  GET  /players                         -> {count, players: [{uuid, name, world, ...}]}
  POST /admin/broadcast {message}       -> 2xx
  POST /server/save                     -> 2xx
  POST /admin/command {command}         -> {success, output}

How it is reached: through the engine, as an exec of `curl` inside the server container
against 127.0.0.1 (`ExecTransport`), the same under systemd, compose and the container
entrypoint; the port stays unpublished and the supervisor joins no network. Everything
secret (the client secret, the bearer token) goes over the exec's stdin as curl's config
(`curl -K -`), never on a command line. SECURITY.md says why and what it costs.

The request and answer handling is pure (`curl_config`, `parse_curl_output`, the
`parse_*` functions, `Token`); `ServerApi` holds the token and makes each call through an
injected transport, so the tests drive it without Docker.

Calls are never retried, with one exception: a 401 with a cached token drops the token,
fetches a new one and repeats the call once. A refused token request is not tried again
for `TOKEN_RETRY_S`. So a caller polling every 10 s stays far inside the plugin's limits
(300/min, 120/min on /admin/*, 60/min on /auth/token) whatever the API answers.
Every failure is an `ApiError` with one `Failure` kind; nothing else escapes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import anyio

from supervisor.dockertypes import DockerUnreachable, EngineError, NotFound
from supervisor.ports import EnginePort

__all__ = [
    "API_PORT",
    "ApiError",
    "CommandResult",
    "ExecTransport",
    "Failure",
    "HttpAnswer",
    "HttpRequest",
    "Player",
    "Players",
    "ServerApi",
    "ServerStatus",
    "Token",
    "curl_config",
    "parse_command",
    "parse_curl_output",
    "parse_players",
    "parse_status",
    "parse_token",
]

API_PORT = 30381  # HyOS's API_PORT default; the plugin binds 0.0.0.0 inside the container
TIMEOUT_S = 5.0  # one call, end to end
TOKEN_MARGIN_S = 60.0  # renew this long before expiry (HyOS's dashboard does the same)
TOKEN_RETRY_S = 30.0  # after a refused token request, ask again no sooner
_MAX_ANSWER = 1 << 20


class Failure(StrEnum):
    UNREACHABLE = "unreachable"  # no container, connection refused
    NO_CURL = "no_curl"  # the server image has no curl: it can never be asked
    NO_CREDENTIALS = "no_credentials"  # no client id and secret to present (no prepare step)
    TIMEOUT = "timeout"
    UNAUTHORIZED = "unauthorized"  # credentials refused, or 401 after a fresh token
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    REFUSED = "refused"  # another 4xx
    BAD_ANSWER = "bad_answer"  # not the shape the plugin answers with


class ApiError(Exception):
    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(f"{failure.value}: {detail}")
        self.failure = failure
        self.detail = detail


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    body: Mapping[str, Any] | None = None
    token: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"HttpRequest({self.method} {self.path})"


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes


class Transport(Protocol):
    async def __call__(self, request: HttpRequest, timeout: float) -> HttpAnswer:
        """One HTTP exchange; ApiError(UNREACHABLE | TIMEOUT) when there was none."""
        ...


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at})"

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - TOKEN_MARGIN_S


@dataclass(frozen=True, slots=True)
class ServerStatus:
    online: bool
    player_count: int
    max_players: int
    name: str


@dataclass(frozen=True, slots=True)
class Player:
    uuid: str
    name: str
    world: str


@dataclass(frozen=True, slots=True)
class Players:
    count: int
    players: tuple[Player, ...]


@dataclass(frozen=True, slots=True)
class CommandResult:
    success: bool
    output: str


# --- pure: answers ---------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(Failure.BAD_ANSWER, "the answer is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(Failure.BAD_ANSWER, "the answer is not a JSON object")
    return data


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(Failure.BAD_ANSWER, f"{key} is not a count: {value!r}")
    return value


def parse_token(body: bytes, now: float) -> Token:
    data = _json_object(body)
    value, expires_in = data.get("access_token"), data.get("expires_in")
    if not isinstance(value, str) or not value:
        raise ApiError(Failure.BAD_ANSWER, "no access_token in the token answer")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise ApiError(Failure.BAD_ANSWER, f"expires_in is not a lifetime: {expires_in!r}")
    return Token(value, now + float(expires_in))


def parse_status(body: bytes) -> ServerStatus:
    data = _json_object(body)
    return ServerStatus(
        online=data.get("online") is True,
        player_count=_count(data, "playerCount"),
        max_players=_count(data, "maxPlayers") if "maxPlayers" in data else 0,
        name=str(data.get("name") or ""),
    )


def parse_players(body: bytes) -> Players:
    data = _json_object(body)
    raw = data.get("players")
    if not isinstance(raw, list):
        raise ApiError(Failure.BAD_ANSWER, "players is not a list")
    players = tuple(
        Player(str(p.get("uuid", "")), str(p.get("name", "")), str(p.get("world", "")))
        for p in raw
        if isinstance(p, dict)
    )
    count = _count(data, "count") if "count" in data else len(players)
    return Players(count, players)


def parse_command(body: bytes) -> CommandResult:
    data = _json_object(body)
    return CommandResult(data.get("success") is True, str(data.get("output") or ""))


def failure_for(status: int) -> Failure | None:
    """What an HTTP status means for the caller; None for success."""
    if 200 <= status < 300:
        return None
    if status == 401:
        return Failure.UNAUTHORIZED
    if status == 429:
        return Failure.RATE_LIMITED
    if status >= 500:
        return Failure.SERVER_ERROR
    return Failure.REFUSED


# --- pure: curl inside the server container -------------------------------------------

CURL = ("curl", "-q", "-K", "-")  # -q: no .curlrc; -K -: the config (and secrets) on stdin
_STATUS_MARK = b"\n--hyos-status:"
# curl's exit codes that mean "no exchange happened" (curl(1) EXIT CODES).
_CURL_TIMEOUT = 28
_NO_CURL = (126, 127)


def _quote(text: str) -> str:
    """A double-quoted curl config value: backslash and quote escaped (JSON has no raw
    line breaks, so nothing else needs escaping)."""
    if "\n" in text or "\r" in text:
        raise ValueError("a curl config value cannot hold a line break")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def curl_config(request: HttpRequest, timeout: float, port: int = API_PORT) -> bytes:
    """curl's config for one request: what `curl -q -K -` reads from stdin."""
    lines = [
        f"url = {_quote(f'http://127.0.0.1:{port}{request.path}')}",
        f"request = {_quote(request.method)}",
        "silent",
        "show-error",
        "connect-timeout = 2",
        f"max-time = {max(1.0, timeout - 1):g}",
        f"max-filesize = {_MAX_ANSWER}",
        # After the body: a line break (curl's \n escape), the mark, the status.
        'write-out = "\\n--hyos-status:%{http_code}"',
    ]
    if request.token is not None:
        lines.append(f"header = {_quote('Authorization: Bearer ' + request.token)}")
    if request.body is not None:
        lines.append(f"header = {_quote('Content-Type: application/json')}")
        lines.append(f"data-binary = {_quote(json.dumps(request.body, separators=(',', ':')))}")
    return ("\n".join(lines) + "\n").encode()


def parse_curl_output(exit_code: int, stdout: bytes, stderr: bytes) -> HttpAnswer:
    """The answer curl printed (body, then the status mark), or the ApiError it means."""
    why = stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"curl exit {exit_code}"]
    if exit_code == _CURL_TIMEOUT:
        raise ApiError(Failure.TIMEOUT, why[0])
    if exit_code in _NO_CURL:
        raise ApiError(Failure.NO_CURL, "the server image has no curl")
    if exit_code != 0:
        raise ApiError(Failure.UNREACHABLE, why[0])
    body, mark, status = stdout.rpartition(_STATUS_MARK)
    if not mark or not status.strip().isdigit():
        raise ApiError(Failure.BAD_ANSWER, "curl printed no status")
    code = int(status.strip())
    if code == 0:
        raise ApiError(Failure.UNREACHABLE, why[0])
    return HttpAnswer(code, body)


# --- the shells ------------------------------------------------------------------------


class ExecTransport:
    """Runs each request as `curl` inside the server container (the engine's exec, as the
    container's own user). `container` names the server's current container id."""

    def __init__(self, engine: EnginePort, container: Callable[[], str | None]) -> None:
        self._engine = engine
        self._container = container

    async def __call__(self, request: HttpRequest, timeout: float) -> HttpAnswer:
        container_id = self._container()
        if container_id is None:
            raise ApiError(Failure.UNREACHABLE, "the server is not running")
        out, err = bytearray(), bytearray()
        try:
            # curl ends at max-time; this bounds the engine's side of it too.
            with anyio.fail_after(timeout + 2):
                async with self._engine.exec_session(
                    container_id, list(CURL), user="", tty=False
                ) as session:
                    await session.write(curl_config(request, timeout))
                    await session.close_stdin()
                    while (chunk := await session.read()) is not None:
                        target = out if chunk[0] == 1 else err
                        if len(target) < _MAX_ANSWER + 4096:
                            target += chunk[1]
                    code = await session.exit_code()
        except TimeoutError:
            raise ApiError(Failure.TIMEOUT, f"no answer within {timeout + 2:g} s") from None
        except (NotFound, EngineError, DockerUnreachable) as exc:
            raise ApiError(Failure.UNREACHABLE, str(exc)) from None
        return parse_curl_output(code, bytes(out), bytes(err))


Credentials = Callable[[], Awaitable[tuple[str, str]]]


class ServerApi:
    """The REST API's calls, each parsed once into a typed answer; see the module doc."""

    def __init__(
        self,
        transport: Transport,
        credentials: Credentials,
        clock: Callable[[], float],
        timeout: float = TIMEOUT_S,
    ) -> None:
        self._transport = transport
        self._credentials = credentials
        self._clock = clock
        self._timeout = timeout
        self._token: Token | None = None
        self._refused_until = 0.0
        self.calls = 0  # HTTP exchanges attempted, token requests included

    async def status(self) -> ServerStatus:
        return parse_status(await self._call("GET", "/server/status"))

    async def players(self) -> Players:
        return parse_players(await self._call("GET", "/players"))

    async def broadcast(self, message: str) -> None:
        await self._call("POST", "/admin/broadcast", {"message": message})

    async def save(self) -> None:
        await self._call("POST", "/server/save")

    async def command(self, command: str) -> CommandResult:
        return parse_command(await self._call("POST", "/admin/command", {"command": command}))

    async def health(self) -> None:
        """`GET /health` (no token: the plugin answers it to anyone); raises ApiError
        unless it answers 2xx. The update's health gate asks it (issue 26)."""
        answer = await self._exchange(HttpRequest("GET", "/health"))
        failure = failure_for(answer.status)
        if failure is not None:
            raise ApiError(failure, f"GET /health answered {answer.status}")

    def forget_token(self) -> None:
        """After the server restarted: its plugin may sign with a new key."""
        self._token = None

    async def _exchange(self, request: HttpRequest) -> HttpAnswer:
        self.calls += 1
        return await self._transport(request, self._timeout)

    async def _fetch_token(self) -> str:
        now = self._clock()
        if now < self._refused_until:
            raise ApiError(
                Failure.UNAUTHORIZED, "the credentials were refused; not asking again yet"
            )
        client_id, secret = await self._credentials()
        answer = await self._exchange(
            HttpRequest("POST", "/auth/token", {"clientId": client_id, "secret": secret})
        )
        failure = failure_for(answer.status)
        if failure is not None:
            if failure is Failure.UNAUTHORIZED:
                self._refused_until = now + TOKEN_RETRY_S
            raise ApiError(failure, f"POST /auth/token answered {answer.status}")
        self._token = parse_token(answer.body, self._clock())
        return self._token.value

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> bytes:
        cached = self._token is not None and self._token.fresh(self._clock())
        token = (
            self._token.value if cached and self._token is not None else await self._fetch_token()
        )
        answer = await self._exchange(HttpRequest(method, path, body, token))
        if answer.status == 401 and cached:
            # The plugin restarted (a new key) or the token was revoked: once more, fresh.
            self._token = None
            token = await self._fetch_token()
            answer = await self._exchange(HttpRequest(method, path, body, token))
        failure = failure_for(answer.status)
        if failure is not None:
            raise ApiError(failure, f"{method} {path} answered {answer.status}")
        return answer.body
