"""HS256 JSON Web Tokens for the replica's fakes (Hytale's cloud and the REST API plugin).

The real services sign RS256; nothing in HyOS verifies signatures (the scripts only read
`exp`), so a shared-key HMAC keeps the fakes small while their own checks stay real.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], key: bytes) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def decode(token: str, key: bytes) -> dict[str, Any] | None:
    """The claims of a token signed with `key` that has not expired, else None."""
    try:
        head, body, sig = token.split(".")
        expected = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_unb64(sig), expected):
            return None
        claims = json.loads(_unb64(body))
        live = isinstance(claims, dict) and float(claims.get("exp", 0)) > time.time()
    except (ValueError, TypeError):
        return None
    return claims if live else None
