"""The replica of HyOS's server image as a stack's server: its tag, tokens its fake Hytale
cloud accepts, and the supervisor settings that run it quickly under full hardening."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPLICA_IMAGE = os.environ.get("HYOS_UPSTREAM_SERVER_IMAGE", "hyos-upstream/server:local")
FAKES = Path(__file__).resolve().parent / "server-fakes"


def fake_module(name: str) -> Any:
    """A module of the fakes (tests craft tokens the fake Hytale cloud accepts)."""
    if str(FAKES) not in sys.path:
        sys.path.insert(0, str(FAKES))
    return importlib.import_module(name)


def cloud_token(ttl: float, **claims: Any) -> str:
    fakejwt, cloud = fake_module("fakejwt"), fake_module("hytale_cloud")
    token: str = fakejwt.encode({**claims, "exp": int(time.time() + ttl)}, cloud.KEY)
    return token


def injected_tokens() -> dict[str, str]:
    """HyOS's HYTALE_SERVER_SESSION_TOKEN / _IDENTITY_TOKEN: no device login needed."""
    return {
        "HYTALE_SERVER_SESSION_TOKEN": cloud_token(3600, kind="session"),
        "HYTALE_SERVER_IDENTITY_TOKEN": cloud_token(3600, kind="identity"),
    }


def replica_env(server_env: dict[str, str] | None = None) -> dict[str, str]:
    """HYOS_* settings that make the replica a stack's server: quick health checks (HyOS's
    own are 30 s apart after a 180 s start period), a short save, a small memory limit."""
    env = {"HYOS_FAKE_DEVICE_INTERVAL": "1", "HYOS_FAKE_BOOT_SECONDS": "0.2", **(server_env or {})}
    return {
        "HYOS_SERVER__IMAGE": REPLICA_IMAGE,
        "HYOS_SERVER__MEMORY": "256m",
        "HYOS_SERVER__STOP_TIMEOUT": "30",
        "HYOS_SERVER__HEALTHCHECK": json.dumps({"interval": 1, "start_period": 0.001}),
        "HYOS_SERVER__ENV": json.dumps(env),
    }
