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

Tokens are HS256 JWTs signed with a key made at each start (the real plugin: RS256 with a
key pair it keeps), so they do not outlive a restart.
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


class API:
    def __init__(self, server_dir: Path, status: Callable[[], dict[str, Any]]) -> None:
        self.config = load_config(server_dir)
        self.status = status
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

        def do_POST(self) -> None:
            raw = self.body()
            if self.path != "/auth/token":
                if self.authorized():
                    self.reply(404, {"error": "not_found"})
                else:
                    self.reply(
                        401, {"error": "unauthorized", "message": "Missing or invalid token"}
                    )
                return
            issued = api.issue(*_credentials(self.headers, raw))
            if issued is None:
                self.reply(401, {"error": "invalid_client", "message": "Invalid credentials"})
            else:
                self.reply(200, issued)

        def do_GET(self) -> None:
            if self.path == "/health":
                self.reply(200, {"status": "ok"})
            elif not self.authorized():
                self.reply(401, {"error": "unauthorized", "message": "Missing or invalid token"})
            elif self.path == "/server/status":
                self.reply(200, api.status())
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
                self.reply(200, {"players": [], "count": 0})
            else:
                self.reply(404, {"error": "not_found"})

    return Handler
