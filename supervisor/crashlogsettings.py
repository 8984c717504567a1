"""The `[crashes]` and `[logs]` settings tables (env `HYOS_CRASHES__*`, `HYOS_LOGS__*`):
how many crash reports are kept, and how HyOS's game logs are bounded (issue 27).

Kept out of settings.py so that module only names them; validated the same way: a bad
value is one line naming the field and the fix, exit 78, before anything is touched.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, model_validator

from supervisor.drainsettings import Duration
from supervisor.logprune import LogPolicy
from supervisor.parsedonce import written_as

__all__ = ["Bytes", "CrashSettings", "LogSettings", "Span", "parse_bytes", "parse_span"]

_SPAN = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_BYTES = re.compile(r"^(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>|b|kb?|mb?|gb?|kib|mib|gib)$")
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}  # fmt: skip


def parse_span(value: object) -> float:
    """`1d`, `7d`, `12h`, `30m`, `1d12h` or a number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 1d, 12h or 30m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        match = _SPAN.match(text)
        if not text or match is None:
            raise ValueError(f"{value!r} is not a duration; use e.g. 1d, 7d, 12h or 30m")
        seconds = (
            int(match["d"] or 0) * 86400
            + int(match["h"] or 0) * 3600
            + int(match["m"] or 0) * 60
            + int(match["s"] or 0)
        )
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a positive duration; use e.g. 1d, 7d or 12h")
    return seconds


def parse_bytes(value: object) -> int:
    """`200MB`, `500m`, `1g`, `64MiB` or a number of bytes -> bytes (> 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 200MB or 1g")
    if isinstance(value, int):
        size = value
    else:
        match = _BYTES.match(str(value).strip().lower())
        if match is None:
            raise ValueError(f"{value!r} is not a size; use e.g. 200MB, 500m or 1g")
        size = int(float(match["num"]) * _UNITS[match["unit"]])
    if size <= 0:
        raise ValueError(f"{value!r} is not a positive size; use e.g. 200MB")
    return size


class Span(Duration):
    """Seconds, parsed once from `1d`, `12h`, `30m` or a number (more than 0); `config`
    shows it as it was written."""

    @staticmethod
    def parse(value: str | float) -> float:
        return parse_span(value)


class Bytes(int):
    """A size in bytes, parsed once from `200MB`, `1g` or a number; `config` shows it as
    it was written."""

    text: str

    def __new__(cls, value: str | int) -> Bytes:
        size = super().__new__(cls, parse_bytes(value))
        size.text = str(value)
        return size

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return written_as(cls)


class CrashSettings(BaseModel):
    """Crash reports in the state dir (supervisor/crashes.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # The newest `keep` reports, and no more than `max_bytes` together.
    keep: int = Field(default=20, ge=1, le=10000)
    max_bytes: Bytes = Bytes("500MB")
    # Lines of the container's log and of the server's log file in each report.
    lines: int = Field(default=500, ge=10, le=100000)
    # How long gathering may take; the report is written with what came in by then.
    # (2.7: a report is on disk within 3 s of the exit, the helper's run included.)
    gather_s: float = Field(default=2.7, ge=0.2, le=60, allow_inf_nan=False)


class LogSettings(BaseModel):
    """Bounded game logs: `/data/Server/logs` and `/data/logs` (supervisor/gamelogs.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    compress_after: Span = Span("1d")
    remove_after: Span = Span("7d")
    max_bytes: Bytes = Bytes("200MB")
    # How often the daemon prunes; the last time is kept in the state dir.
    every: Span = Span("1d")
    # After a daemon's start, the first prune waits at least this long (the stack's own
    # start has the engine's attention first).
    first_after: Span = Span("1m")

    @model_validator(mode="after")
    def _compress_before_removing(self) -> LogSettings:
        if float(self.compress_after) >= float(self.remove_after):
            raise ValueError(
                f"compress_after ({self.compress_after.text}) must be shorter than "
                f"remove_after ({self.remove_after.text}); set HYOS_LOGS__COMPRESS_AFTER "
                "lower or HYOS_LOGS__REMOVE_AFTER higher, e.g. 1d and 7d"
            )
        return self

    def policy(self) -> LogPolicy:
        return LogPolicy(
            compress_after_s=float(self.compress_after),
            remove_after_s=float(self.remove_after),
            max_bytes=int(self.max_bytes),
        )
