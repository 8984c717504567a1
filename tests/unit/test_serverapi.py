"""The REST API client: answers parsed once, the token cached and refreshed once after a
401, every failure one defined outcome, and the exec transport's secrets kept off the
command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from supervisor.serverapi import (
    CURL,
    TOKEN_MARGIN_S,
    TOKEN_RETRY_S,
    ApiError,
    ExecTransport,
    Failure,
    HttpAnswer,
    HttpRequest,
    Players,
    ServerApi,
    ServerStatus,
    curl_config,
    parse_curl_output,
    parse_players,
    parse_status,
    parse_token,
)
from tests.fakeclock import T0, FakeClock
from tests.fakeengine import FakeEngine


def answer(status: int, body: Any = None) -> HttpAnswer:
    return HttpAnswer(status, json.dumps(body if body is not None else {}).encode())


class Plugin:
    """Stands in for the plugin behind the transport: tokens t1, t2, ... valid `ttl` s;
    `routes` answers the other paths; every request is recorded."""

    def __init__(self, clock: FakeClock, ttl: int = 3600) -> None:
        self.clock = clock
        self.ttl = ttl
        self.issued = 0
        self.valid: set[str] = set()
        self.requests: list[HttpRequest] = []
        self.token_status = 200
        self.routes: dict[str, Callable[[], HttpAnswer]] = {
            "/server/status": lambda: answer(
                200, {"online": True, "playerCount": 2, "maxPlayers": 100, "name": "S"}
            ),
            "/players": lambda: answer(
                200, {"count": 1, "players": [{"uuid": "u", "name": "Ann", "world": "w"}]}
            ),
            "/admin/broadcast": lambda: answer(200, {"success": True}),
            "/server/save": lambda: answer(200, {"success": True}),
            "/admin/command": lambda: answer(200, {"success": True, "output": "ok"}),
        }

    async def __call__(self, request: HttpRequest, timeout: float) -> HttpAnswer:
        self.requests.append(request)
        if request.path == "/auth/token":
            if self.token_status != 200:
                return answer(self.token_status, {"error": "invalid_client"})
            assert request.body == {"clientId": "hyos-manager", "secret": "s3cret-s3cret-s3cret"}
            self.issued += 1
            token = f"t{self.issued}"
            self.valid.add(token)
            return answer(
                200, {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}
            )
        if request.token not in self.valid:
            return answer(401, {"error": "unauthorized"})
        return self.routes[request.path]()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


async def _credentials() -> tuple[str, str]:
    return "hyos-manager", "s3cret-s3cret-s3cret"


def client(plugin: Plugin) -> ServerApi:
    return ServerApi(plugin, _credentials, plugin.clock)


def test_calls_parse_typed_answers_and_share_one_token() -> None:
    async def main() -> None:
        plugin = Plugin(FakeClock())
        api = client(plugin)
        assert await api.status() == ServerStatus(True, 2, 100, "S")
        players = await api.players()
        assert players.count == 1 and players.players[0].name == "Ann"
        await api.broadcast("Restart in 5 minutes")
        await api.save()
        assert (await api.command("say hi")).output == "ok"
        assert plugin.paths().count("/auth/token") == 1
        assert plugin.requests[3].body == {"message": "Restart in 5 minutes"}
        assert api.calls == 6

    anyio.run(main)


def test_the_token_is_renewed_shortly_before_it_expires() -> None:
    async def main() -> None:
        clock = FakeClock()
        plugin = Plugin(clock, ttl=600)
        api = client(plugin)
        await api.status()
        clock.advance(600 - TOKEN_MARGIN_S - 1)
        await api.status()
        assert plugin.issued == 1
        clock.advance(1)
        await api.status()
        assert plugin.issued == 2

    anyio.run(main)


def test_a_401_refreshes_the_token_once() -> None:
    async def main() -> None:
        plugin = Plugin(FakeClock())
        api = client(plugin)
        await api.status()
        plugin.valid.clear()  # the plugin restarted with a new key
        assert (await api.status()).player_count == 2
        assert plugin.paths() == [
            "/auth/token",
            "/server/status",
            "/server/status",
            "/auth/token",
            "/server/status",
        ]

    anyio.run(main)


def test_a_401_after_the_refresh_is_unauthorized_without_more_calls() -> None:
    async def main() -> None:
        plugin = Plugin(FakeClock())
        plugin.routes["/server/status"] = lambda: answer(401)
        api = client(plugin)
        await api.players()
        with pytest.raises(ApiError) as caught:
            await api.status()
        assert caught.value.failure is Failure.UNAUTHORIZED
        # players: token + call; status: call, token, call again. No third try.
        assert len(plugin.requests) == 5

    anyio.run(main)


def test_refused_credentials_are_not_asked_again_for_a_while() -> None:
    async def main() -> None:
        clock = FakeClock()
        plugin = Plugin(clock)
        plugin.token_status = 401
        api = client(plugin)
        for _ in range(5):
            with pytest.raises(ApiError) as caught:
                await api.status()
            assert caught.value.failure is Failure.UNAUTHORIZED
            clock.advance(1)
        assert plugin.paths() == ["/auth/token"]
        clock.advance(TOKEN_RETRY_S)
        plugin.token_status = 200
        await api.status()
        assert plugin.paths() == ["/auth/token", "/auth/token", "/server/status"]

    anyio.run(main)


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (500, Failure.SERVER_ERROR),
        (503, Failure.SERVER_ERROR),
        (429, Failure.RATE_LIMITED),
        (404, Failure.REFUSED),
    ],
)
def test_error_statuses_are_one_defined_failure_and_never_retried(
    status: int, failure: Failure
) -> None:
    async def main() -> None:
        plugin = Plugin(FakeClock())
        plugin.routes["/admin/broadcast"] = lambda: answer(status)
        api = client(plugin)
        with pytest.raises(ApiError) as caught:
            await api.broadcast("x")
        assert caught.value.failure is failure
        assert plugin.paths() == ["/auth/token", "/admin/broadcast"]

    anyio.run(main)


def test_transport_failures_pass_through_as_they_are() -> None:
    async def main() -> None:
        async def down(request: HttpRequest, timeout: float) -> HttpAnswer:
            raise ApiError(Failure.TIMEOUT, "no answer")

        with pytest.raises(ApiError) as caught:
            await ServerApi(down, _credentials, FakeClock()).status()
        assert caught.value.failure is Failure.TIMEOUT

    anyio.run(main)


# --- parsing ---------------------------------------------------------------------------


def test_parse_answers() -> None:
    assert parse_status(b'{"online": true, "playerCount": 0, "maxPlayers": 10}') == ServerStatus(
        True, 0, 10, ""
    )
    assert parse_players(b'{"players": []}') == Players(0, ())
    token = parse_token(b'{"access_token": "abc", "token_type": "Bearer", "expires_in": 3600}', T0)
    assert token.expires_at == T0 + 3600 and token.fresh(T0) and not token.fresh(T0 + 3541)
    assert "abc" not in repr(token)
    assert "abc" not in repr(HttpRequest("GET", "/x", None, "abc"))


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"online": true}',
        b'{"playerCount": -1}',
        b'{"playerCount": "2"}',
        b'{"playerCount": true}',
    ],
)
def test_a_status_of_another_shape_is_a_bad_answer(body: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        parse_status(body)
    assert caught.value.failure is Failure.BAD_ANSWER


@pytest.mark.parametrize(
    "body",
    [b'{"expires_in": 3600}', b'{"access_token": "a", "expires_in": 0}', b'{"access_token": "a"}'],
)
def test_a_token_answer_of_another_shape_is_a_bad_answer(body: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        parse_token(body, T0)
    assert caught.value.failure is Failure.BAD_ANSWER


@pytest.mark.parametrize(
    ("code", "stdout", "failure"),
    [
        (7, b"", Failure.UNREACHABLE),  # connection refused: the plugin is not up
        (28, b"", Failure.TIMEOUT),
        (127, b"", Failure.NO_CURL),  # no curl in the image
        (0, b"no mark", Failure.BAD_ANSWER),
        (0, b"\n--hyos-status:000", Failure.UNREACHABLE),
    ],
)
def test_curls_failures(code: int, stdout: bytes, failure: Failure) -> None:
    with pytest.raises(ApiError) as caught:
        parse_curl_output(code, stdout, b"curl: (7) Failed to connect\n")
    assert caught.value.failure is failure


def test_curls_answer() -> None:
    got = parse_curl_output(0, b'{"a": 1}\n--hyos-status:201', b"")
    assert got == HttpAnswer(201, b'{"a": 1}')


def test_curl_config_quotes_what_it_carries() -> None:
    config = curl_config(
        HttpRequest("POST", "/admin/broadcast", {"message": 'say "hi" \\'}, "tok"), 5
    )
    lines = config.decode().splitlines()
    assert 'url = "http://127.0.0.1:30381/admin/broadcast"' in lines
    assert 'header = "Authorization: Bearer tok"' in lines
    assert r'data-binary = "{\"message\":\"say \\\"hi\\\" \\\\\"}"' in lines
    assert "max-time = 4" in lines


# --- the exec transport ----------------------------------------------------------------


def test_the_exec_transport_keeps_secrets_on_stdin() -> None:
    async def main() -> None:
        engine = FakeEngine()
        engine.add_container("hyos-server", container_id="c0ffee")
        engine.exec_output = [(1, b'{"online": true, "playerCount": 3}\n--hyos-status:200')]
        sessions: list[Any] = []
        original = engine.exec_session

        def recording(container_id: str, cmd: list[str], user: str, tty: bool) -> Any:
            assert cmd == list(CURL) and user == "" and not tty
            manager = original(container_id, cmd, user, tty)

            class Recorder:
                async def __aenter__(self) -> Any:
                    session = await manager.__aenter__()
                    sessions.append(session)
                    return session

                async def __aexit__(self, *exc: Any) -> Any:
                    return await manager.__aexit__(*exc)

            return Recorder()

        engine.exec_session = recording  # type: ignore[method-assign]
        transport = ExecTransport(engine, lambda: "c0ffee")
        got = await transport(HttpRequest("GET", "/server/status", None, "secret-token"), 5)
        assert parse_status(got.body).player_count == 3
        (session,) = sessions
        assert b"Bearer secret-token" in session.stdin and session.stdin_closed

        with pytest.raises(ApiError) as caught:
            await ExecTransport(engine, lambda: None)(HttpRequest("GET", "/x"), 5)
        assert caught.value.failure is Failure.UNREACHABLE

    anyio.run(main)
