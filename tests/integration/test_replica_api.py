"""The replica's REST API plugin as the drain needs it (issue 24): a player list a test
controls, broadcasts and commands in a journal, the save marker on `POST /server/save`,
the plugin's rate limits; and the supervisor's own client (supervisor/serverapi.py)
reaching it through the real engine's exec, as the daemon does in every run mode.

Runs on the replica image (`HYOS_UPSTREAM_SERVER_IMAGE`, default hyos-upstream/server:local).
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from supervisor.engine import Engine
from supervisor.serverapi import ApiError, ExecTransport, Failure, ServerApi
from tests.integration.test_upstream_server_image import (  # the replica's harness
    API_ID,
    Replica,
    replica,
    replica_image,
)
from tests.upstream.replica import injected_tokens

__all__ = ["replica", "replica_image"]  # fixtures, shared

pytestmark = pytest.mark.integration

SECRET = "drain-secret-0123456789abcdef"


def _serve(replica: Replica) -> None:
    replica.control("players", "[]")
    replica.run(
        env={**injected_tokens(), "API_CLIENT_SECRET": SECRET, "API_REGENERATE_CONFIG": "true"}
    )
    replica.wait_serving()


def _token(replica: Replica) -> str:
    status, body = replica.api(
        "POST", "/auth/token", "-H", "Content-Type: application/json",
        "-d", json.dumps({"clientId": API_ID, "secret": SECRET}),
    )  # fmt: skip
    assert status == 200, body
    token: str = body["access_token"]
    return token


def _journal(replica: Replica) -> list[dict[str, Any]]:
    path = replica.data / ".test" / "api-journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _saves(replica: Replica) -> int:
    try:
        marker = json.loads((replica.data / "Server/universe/save-marker.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(marker["saves"])


def test_players_broadcasts_saves_and_commands_at_the_process_boundary(replica: Replica) -> None:
    _serve(replica)
    auth = ("-H", f"Authorization: Bearer {_token(replica)}")
    assert replica.api("GET", "/players", *auth)[1] == {"players": [], "count": 0}

    replica.control("players", json.dumps(["Ann", {"name": "Bo", "world": "nether"}]))
    status, players = replica.api("GET", "/players", *auth)
    assert status == 200 and players["count"] == 2
    assert [(p["name"], p["world"]) for p in players["players"]] == [
        ("Ann", "default"),
        ("Bo", "nether"),
    ]
    assert replica.api("GET", "/server/status", *auth)[1]["playerCount"] == 2

    json_body = ("-H", "Content-Type: application/json", "-d")
    message = json.dumps({"message": "The server will restart in 5 minutes."})
    assert replica.api("POST", "/admin/broadcast", *auth, *json_body, message)[0] == 200
    before = _saves(replica)
    assert replica.api("POST", "/server/save", *auth)[0] == 200
    assert _saves(replica) == before + 1
    status, result = replica.api(
        "POST", "/admin/command", *auth, *json_body, json.dumps({"command": "say hi"})
    )
    assert (status, result) == (200, {"success": True, "output": "Executed: say hi"})
    assert replica.api("POST", "/admin/broadcast", *json_body, message)[0] == 401  # no token
    assert [(e["path"], e["body"]) for e in _journal(replica)] == [
        ("/admin/broadcast", {"message": "The server will restart in 5 minutes."}),
        ("/server/save", {}),
        ("/admin/command", {"command": "say hi"}),
    ]

    # `stop` through the API stops Java with a save, as the dashboard's Stop does first.
    replica.api("POST", "/admin/command", *auth, *json_body, json.dumps({"command": "stop"}))
    assert replica.wait_exit() == 0
    assert _saves(replica) == before + 2


def test_the_plugins_rate_limits(replica: Replica) -> None:
    """HyOS's defaults: /auth/token 60/min with bursts of 10, /admin/* 120/min, burst 20."""
    _serve(replica)
    body = json.dumps({"clientId": API_ID, "secret": SECRET})
    # At once (in parallel): one after the other, a loaded machine's bcrypt checks take
    # long enough for the bucket to refill one a second.
    loop = (
        'for i in $(seq "$1"); do curl -s -o /dev/null -w "%{http_code}\\n" -X POST '
        '-H "Content-Type: application/json" -d "$2" http://127.0.0.1:30381/auth/token & '
        "done; wait"
    )
    codes = replica.exec("sh", "-c", loop, "-", "14", body).stdout.split()
    assert len(codes) == 14 and codes.count("200") >= 10, codes
    assert "429" in codes, codes
    time.sleep(2.2)  # 1 a second comes back
    codes = replica.exec("sh", "-c", loop, "-", "1", body).stdout.split()
    assert codes == ["200"], codes


def test_the_supervisors_client_reaches_the_api_through_the_engines_exec(
    replica: Replica,
) -> None:
    _serve(replica)
    replica.control("players", json.dumps(["Ann"]))
    container_id = replica.inspect()["Id"]

    async def credentials() -> tuple[str, str]:
        return API_ID, SECRET

    async def main() -> None:
        async with Engine.connect("unix:///var/run/docker.sock") as engine:
            api = ServerApi(ExecTransport(engine, lambda: container_id), credentials, time.time)
            status = await api.status()
            assert (status.online, status.player_count) == (True, 1)
            await api.broadcast('The server will restart in 10 seconds. "Quotes" \\ stay.')
            before = _saves(replica)
            await api.save()
            assert _saves(replica) == before + 1
            assert (await api.players()).players[0].name == "Ann"
            assert api.calls == 5  # one token for all four calls

            # Credentials the plugin refuses: one defined failure, no retry.
            bad = ServerApi(
                ExecTransport(engine, lambda: container_id),
                _wrong_credentials,
                time.time,
            )
            with pytest.raises(ApiError) as caught:
                await bad.status()
            assert caught.value.failure is Failure.UNAUTHORIZED

            replica.exec("sh", "-c", 'kill "$(pgrep -f "[H]ytaleServer.jar")"')
            replica.wait_exit()
            with pytest.raises(ApiError) as caught:
                await api.status()
            assert caught.value.failure is Failure.UNREACHABLE

    anyio.run(main)
    assert [e["body"]["message"] for e in _journal(replica) if e["path"] == "/admin/broadcast"] == [
        'The server will restart in 10 seconds. "Quotes" \\ stay.'
    ]
    # Nothing secret reached the exec's command line: the engine keeps only `curl -q -K -`.


async def _wrong_credentials() -> tuple[str, str]:
    return API_ID, "not-the-secret-0123456789"
