"""The `[metrics]` settings table (env `HYOS_METRICS__*`): where `run` serves `/metrics`.

Kept out of settings.py so that module only names it; validated the same way: a bad
value is one line naming the field and the fix, exit 78, before anything is touched.
Off by default. A loopback address (`127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`)
is accepted as it is; any other (`0.0.0.0:9464`, a LAN address) only with
`allow_non_loopback = true`, because the page tells anyone who can reach it the
stack's state, its login state included (SECURITY.md).
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["MetricsSettings", "is_loopback", "parse_listen"]

DEFAULT_PORT = 9464  # Prometheus's default-port allocations list: 9464 is for exporters


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (an IP address or `localhost`; IPv6 in brackets) -> (host, port).
    Raises ValueError with the fix."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port; use e.g. 127.0.0.1:{DEFAULT_PORT}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be 1-65535, e.g. 127.0.0.1:{DEFAULT_PORT}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"{text!r}: the host must be an IP address or localhost, e.g. "
                f"127.0.0.1:{DEFAULT_PORT} (a name could resolve to any interface)"
            ) from None
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


class MetricsSettings(BaseModel):
    """`/metrics` in the Prometheus text format (supervisor/metricsserver.py)."""

    model_config = ConfigDict(extra="forbid")

    # Declared before `listen`, which is checked against it.
    allow_non_loopback: bool = False
    # host:port, e.g. 127.0.0.1:9464; None (the default): no metrics listener.
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        host, _ = parse_listen(value)
        if not is_loopback(host) and not info.data.get("allow_non_loopback", False):
            raise ValueError(
                f"{value!r} is reachable beyond this machine; use 127.0.0.1:{DEFAULT_PORT}, "
                "or set metrics.allow_non_loopback = true "
                "(HYOS_METRICS__ALLOW_NON_LOOPBACK=true; see SECURITY.md)"
            )
        return value.strip()

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on; None when metrics are off."""
        return None if self.listen is None else parse_listen(self.listen)
