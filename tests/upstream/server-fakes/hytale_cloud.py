#!/usr/bin/python3
"""Fake Hytale cloud: the OAuth device-code flow (oauth.accounts.hytale.com), profiles
(account-data.hytale.com) and game sessions (sessions.hytale.com) that HyOS's lib/auth.sh
calls with curl at hard-coded https:// URLs.

Serves HTTPS on 127.0.0.1:38443 with a certificate for those three names, signed by the
replica's CA (added to the image's trust store); the image's curlrc (CURL_HOME) connects
those names here. `--daemon` binds, forks and returns once listening (with-hytale-cloud).

Test controls, files in $HYOS_FAKE_CONTROL_DIR (default $DATA_DIR/.test), read per request:
  approve   pending device codes are approved      deny     ... are denied (access_denied)
  revoke    refresh tokens are refused (invalid_grant)
Environment:
  HYOS_FAKE_DEVICE_EXPIRES_IN (900)  device code lifetime (s); auth.sh polls this long
  HYOS_FAKE_DEVICE_INTERVAL (5)      poll interval it tells auth.sh (s)
  HYOS_FAKE_DEVICE_GRACE (0)         extra seconds before an expired code gets expired_token
  HYOS_FAKE_TOKEN_TTL (3600)         lifetime of issued access tokens (s)
  HYOS_FAKE_PROFILE_NAME (HyOSTester), HYOS_FAKE_PROFILE_UUID
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fakejwt
from fakehttp import JsonHandler

LISTEN = ("127.0.0.1", 38443)
TLS_DIR = Path("/opt/hyos-fakes/tls")
OAUTH = "oauth.accounts.hytale.com"
ACCOUNT = "account-data.hytale.com"
SESSIONS = "sessions.hytale.com"
# Published on purpose: tokens stay valid across container restarts, as real ones do.
KEY = b"hyos-replica fake hytale cloud"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def control(name: str) -> bool:
    base = os.environ.get("HYOS_FAKE_CONTROL_DIR") or f"{os.environ.get('DATA_DIR', '/data')}/.test"
    return Path(base, name).exists()


def log(message: str) -> None:
    print(f"[fake-hytale-cloud] {message}", file=sys.stderr, flush=True)


PROFILE = {
    "uuid": os.environ.get("HYOS_FAKE_PROFILE_UUID") or "8d7c3f0e-5b1a-4c2e-9f3d-2a6b7c8d9e0f",
    "username": os.environ.get("HYOS_FAKE_PROFILE_NAME") or "HyOSTester",
}
devices: dict[str, dict[str, Any]] = {}
lock = threading.Lock()


def tokens() -> dict[str, Any]:
    ttl = int(env_float("HYOS_FAKE_TOKEN_TTL", 3600))
    now = int(time.time())
    claims = {"iss": f"https://{OAUTH}", "sub": PROFILE["uuid"], "iat": now, "exp": now + ttl}
    return {
        "access_token": fakejwt.encode({**claims, "scope": "openid offline auth:server"}, KEY),
        "refresh_token": f"hyos-fake-refresh-{secrets.token_hex(16)}",
        "token_type": "bearer",
        "expires_in": ttl,
        "scope": "openid offline auth:server",
    }


def device_auth(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    if form.get("client_id") != "hytale-server":
        return 400, {"error": "invalid_client"}
    user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
    device_code = secrets.token_urlsafe(24)
    expires_in = int(env_float("HYOS_FAKE_DEVICE_EXPIRES_IN", 900))
    with lock:
        devices[device_code] = {"user_code": user_code, "deadline": time.time() + expires_in}
    log(f"device code issued: user_code={user_code} expires_in={expires_in}")
    verify = f"https://{OAUTH}/oauth2/device/verify"
    return 200, {
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verify,
        "verification_uri_complete": f"{verify}?user_code={user_code}",
        "expires_in": expires_in,
        "interval": int(env_float("HYOS_FAKE_DEVICE_INTERVAL", 5)),
    }


def token(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    grant = form.get("grant_type")
    if form.get("client_id") != "hytale-server":
        return 400, {"error": "invalid_client"}
    if grant == "refresh_token":
        if not form.get("refresh_token") or control("revoke"):
            return 400, {"error": "invalid_grant", "error_description": "refresh token revoked"}
        return 200, tokens()
    if grant != DEVICE_GRANT:
        return 400, {"error": "unsupported_grant_type"}
    with lock:
        device = devices.get(form.get("device_code", ""))
        if device is None:
            return 400, {"error": "invalid_grant"}
        if time.time() > device["deadline"] + env_float("HYOS_FAKE_DEVICE_GRACE", 0):
            del devices[form["device_code"]]
            log(f"device code expired: user_code={device['user_code']}")
            return 400, {"error": "expired_token"}
        if control("deny"):
            del devices[form["device_code"]]
            return 400, {"error": "access_denied"}
        if not control("approve"):
            return 400, {"error": "authorization_pending"}
        del devices[form["device_code"]]
    log(f"device code approved: user_code={device['user_code']}")
    return 200, tokens()


def bearer_ok(header: str | None) -> bool:
    scheme, _, value = (header or "").partition(" ")
    return scheme.lower() == "bearer" and fakejwt.decode(value, KEY) is not None


def game_session(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if body.get("uuid") != PROFILE["uuid"]:
        return 403, {"error": "forbidden", "message": "profile not owned by this account"}
    now = int(time.time())
    claims = {"sub": PROFILE["uuid"], "iat": now, "exp": now + 3600}
    return 200, {
        "sessionToken": fakejwt.encode({**claims, "kind": "session"}, KEY),
        "identityToken": fakejwt.encode({**claims, "kind": "identity"}, KEY),
        "expiresAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
    }


class Handler(JsonHandler):
    def do_POST(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        raw = self.body()
        if (host, self.path) == (OAUTH, "/oauth2/device/auth"):
            self.reply(*device_auth(dict(urllib.parse.parse_qsl(raw.decode()))))
        elif (host, self.path) == (OAUTH, "/oauth2/token"):
            self.reply(*token(dict(urllib.parse.parse_qsl(raw.decode()))))
        elif (host, self.path) == (SESSIONS, "/game-session/new"):
            if not bearer_ok(self.headers.get("Authorization")):
                self.reply(401, {"error": "unauthorized", "message": "invalid access token"})
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            self.reply(*game_session(body if isinstance(body, dict) else {}))
        else:
            self.reply(404, {"error": "not_found"})

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        if (host, self.path) != (ACCOUNT, "/my-account/get-profiles"):
            self.reply(404, {"error": "not_found"})
        elif not bearer_ok(self.headers.get("Authorization")):
            self.reply(401, {"error": "unauthorized"})
        else:
            self.reply(200, {"owner": PROFILE["uuid"], "profiles": [PROFILE]})


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(LISTEN, Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(TLS_DIR / "cloud.crt", TLS_DIR / "cloud.key")
        # The handshake runs in the request's thread, not in accept().
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )


def main(argv: list[str]) -> int:
    try:
        server = TLSServer()
    except OSError as err:
        log(f"cannot listen on {LISTEN[0]}:{LISTEN[1]}: {err}")
        return 1
    if "--daemon" in argv and os.fork() > 0:
        return 0  # the parent returns once the child's socket is already listening
    if "--daemon" in argv:
        os.setsid()
    log(f"listening on https://{LISTEN[0]}:{LISTEN[1]} for {OAUTH}, {ACCOUNT}, {SESSIONS}")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
