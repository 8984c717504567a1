"""Fake REST API plugin (HyOS's com.hytale:HytaleAPI), served inside the fake java.

Config: <server dir>/mods/com.hytale_HytaleAPI/config.json as HyOS's lib/api.sh writes it
(port, bindAddress, jwt.{issuer,audience,tokenValiditySeconds}, clients[].{id,secret,enabled}
with `secret` a bcrypt hash); missing: port 30381 on 0.0.0.0 and no clients.

  GET  /health                        200, no authentication
  POST /auth/token                    JSON {"clientId", "secret"} (what the manager sends) or
                                      OAuth2 client_credentials (form client_id/client_secret
                                      or HTTP Basic): 200 {access_token, token_type, expires_in}
                                      when the secret matches the client's bcrypt hash, else 401
  GET  /server/status, /server/version, /players   with a Bearer token from /auth/token, else 401
  POST /admin/broadcast {message}     200 {success}; journalled
  POST /server/save                   saves the world (the save marker), then 200 {success}; journalled
  POST /admin/command {command}       200 {success, output}; journalled; `stop` stops the server

Tokens are HS256 JWTs signed with a key made at each start (the real plugin: RS256 with a
key pair it keeps), so they do not outlive a restart.

Test controls, in the control directory (fake_java.control_file):
  players              JSON list of player names (or {uuid, name, world} objects), read at each
                       request: /players and /server/status's playerCount follow it
  api-journal.jsonl    written here: one JSON line per admin call and save
                       {at, method, path, body, status}, so a test reads what players saw
  save-fail            while it exists, POST /server/save answers 500 without saving (a
                       world the game could not write)
Rate limits as the plugin's config.json `rateLimits` says (HyOS's lib/api.sh writes 300/min
with bursts of 50 by default, /auth/token 60/min burst 10, /admin/* 120/min burst 20): a
token bucket per client address and endpoint class; beyond it 429.
"""

from __future__ import annotations

import base64
import ctypes
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fakejwt
from fakehttp import JsonHandler

PLUGIN_DIR = "mods/com.hytale_HytaleAPI"
_libcrypt = ctypes.CDLL("libcrypt.so.1")
_libcrypt.crypt.restype = ctypes.c_char_p
_libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_crypt_lock = threading.Lock()  # crypt(3) returns a static buffer


def bcrypt_matches(secret: str, hashed: str) -> bool:
    """libxcrypt reads $2a$ and $2y$ (what HyOS writes after htpasswd -B) alike."""
    with _crypt_lock:
        out = _libcrypt.crypt(secret.encode(), hashed.encode())
    return out is not None and hmac.compare_digest(out, hashed.encode())


def load_config(server_dir: Path) -> dict[str, Any]:
    path = server_dir / PLUGIN_DIR / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        config = {}
    return config if isinstance(config, dict) else {}


class RateLimits:
    """Token buckets: `burstSize` requests at once, refilled at `requestsPerMinute`."""

    def __init__(self, config: dict[str, Any]) -> None:
        limits = config.get("rateLimits") or {}
        self.default = (
            float(limits.get("defaultRequestsPerMinute") or 300),
            float(limits.get("burstSize") or 50),
        )
        self.endpoints = {
            pattern: (float(v.get("requestsPerMinute") or 60), float(v.get("burstSize") or 10))
            for pattern, v in (limits.get("endpoints") or {}).items()
            if isinstance(v, dict)
        }
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self.lock = threading.Lock()

    def _class(self, path: str) -> str:
        for pattern in self.endpoints:
            if path == pattern or (pattern.endswith("/*") and path.startswith(pattern[:-1])):
                return str(pattern)
        return ""

    def allow(self, client: str, path: str) -> bool:
        key = self._class(path)
        per_minute, burst = self.endpoints.get(key, self.default)
        now = time.monotonic()
        with self.lock:
            tokens, then = self.buckets.get((client, key), (burst, now))
            tokens = min(burst, tokens + (now - then) * per_minute / 60)
            if tokens < 1:
                self.buckets[(client, key)] = (tokens, now)
                return False
            self.buckets[(client, key)] = (tokens - 1, now)
            return True


class API:
    def __init__(
        self,
        server_dir: Path,
        status: Callable[[], dict[str, Any]],
        save: Callable[[], None] = lambda: None,
        stop: Callable[[], None] = lambda: None,
        control: Callable[[str], Path] = lambda name: Path("/data/.test", name),
    ) -> None:
        self.config = load_config(server_dir)
        self.status = status
        self.save = save
        self.stop_server = stop
        self.control = control
        self.limits = RateLimits(self.config)
        self.journal_lock = threading.Lock()
        self.key = secrets.token_bytes(32)
        jwt = self.config.get("jwt") or {}
        self.ttl = int(jwt.get("tokenValiditySeconds") or 3600)
        self.claims = {"iss": jwt.get("issuer", "hytale-api"), "aud": jwt.get("audience", "")}
        self.address = (
            str(self.config.get("bindAddress") or "0.0.0.0"),
            int(self.config.get("port") or 30381),
        )
        self.httpd = ThreadingHTTPServer(self.address, _handler(self))
        self.httpd.daemon_threads = True

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def issue(self, client_id: str, secret: str) -> dict[str, Any] | None:
        for client in self.config.get("clients") or []:
            if (
                isinstance(client, dict)
                and client.get("enabled", True)
                and client.get("id") == client_id
                and bcrypt_matches(secret, str(client.get("secret", "")))
            ):
                now = int(time.time())
                claims = {**self.claims, "sub": client_id, "iat": now, "exp": now + self.ttl}
                token = fakejwt.encode(claims, self.key)
                return {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}
        return None

    def players(self) -> list[dict[str, Any]]:
        try:
            raw = json.loads(self.control("players").read_text())
        except (OSError, ValueError):
            return []
        found = []
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            player = item if isinstance(item, dict) else {"name": str(item)}
            found.append(
                {
                    "uuid": player.get("uuid") or f"00000000-0000-0000-0000-{i:012d}",
                    "name": player.get("name", ""),
                    "world": player.get("world", "default"),
                    "position": {"x": 0, "y": 64, "z": 0},
                    "connectedAt": int(time.time() * 1000),
                }
            )
        return found

    def journal(self, method: str, path: str, body: Any, status: int) -> None:
        entry = {"at": time.time(), "method": method, "path": path, "body": body, "status": status}
        with self.journal_lock, self.control("api-journal.jsonl").open("a") as out:
            out.write(json.dumps(entry) + "\n")


def _credentials(headers: Any, raw: bytes) -> tuple[str, str]:
    if "json" in (headers.get("Content-Type") or ""):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        return str(body.get("clientId", "")), str(body.get("secret", ""))
    form = dict(urllib.parse.parse_qsl(raw.decode(errors="replace")))
    scheme, _, value = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return "", ""
        return urllib.parse.unquote(user), urllib.parse.unquote(password)
    return form.get("client_id", ""), form.get("client_secret", "")


def _handler(api: API) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def authorized(self) -> bool:
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            return scheme.lower() == "bearer" and fakejwt.decode(token, api.key) is not None

        def limited(self) -> bool:
            if api.limits.allow(self.client_address[0], self.path):
                return False
            self.reply(429, {"error": "rate_limited", "message": "Too many requests"})
            return True

        def do_POST(self) -> None:
            raw = self.body()
            if self.limited():
                return
            if self.path != "/auth/token":
                if not self.authorized():
                    self.reply(
                        401, {"error": "unauthorized", "message": "Missing or invalid token"}
                    )
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                self.admin(body if isinstance(body, dict) else {})
                return
            issued = api.issue(*_credentials(self.headers, raw))
            if issued is None:
                self.reply(401, {"error": "invalid_client", "message": "Invalid credentials"})
            else:
                self.reply(200, issued)

        def admin(self, body: dict[str, Any]) -> None:
            answer: dict[str, Any]
            if self.path == "/admin/broadcast" and isinstance(body.get("message"), str):
                status, answer = 200, {"success": True}
            elif self.path == "/server/save" and api.control("save-fail").exists():
                status, answer = 500, {"error": "internal_error", "message": "Save failed"}
            elif self.path == "/server/save":
                api.save()
                status, answer = 200, {"success": True, "message": "World saved"}
            elif self.path == "/admin/command" and isinstance(body.get("command"), str):
                status, answer = 200, {"success": True, "output": f"Executed: {body['command']}"}
            elif self.path in ("/admin/broadcast", "/admin/command"):
                status, answer = 400, {"error": "bad_request", "message": "missing field"}
            else:
                self.reply(404, {"error": "not_found"})
                return
            api.journal("POST", self.path, body, status)
            self.reply(status, answer)
            if self.path == "/admin/command" and body.get("command", "").strip("/ ") == "stop":
                api.stop_server()

        def do_GET(self) -> None:
            if self.limited():
                return
            if self.path == "/health":
                self.reply(200, {"status": "ok"})
            elif not self.authorized():
                self.reply(401, {"error": "unauthorized", "message": "Missing or invalid token"})
            elif self.path == "/server/status":
                self.reply(200, {**api.status(), "playerCount": len(api.players())})
            elif self.path == "/server/version":
                version = api.status().get("version", "")
                # The plugin's shape, as HyOS's dashboard reads it (app/api/server/version).
                self.reply(
                    200,
                    {
                        "gameVersion": version,
                        "revisionId": "hyos-replica",
                        "patchline": "release",
                        "protocolVersion": 1,
                        "version": version,
                    },
                )
            elif self.path == "/players":
                players = api.players()
                self.reply(200, {"players": players, "count": len(players)})
            else:
                self.reply(404, {"error": "not_found"})

    return Handler
