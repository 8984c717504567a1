"""Scheduled maintenance windows: `[schedule] restart` as a cron line or `daily HH:MM`.

Pure: parsing and "when is the next window", with the time passed in. Cron lines are
read by cronsim (a kept library, DST-aware), never by hand; `daily HH:MM` is written
as the cron line it means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["RestartSchedule", "parse_timezone"]

_DAILY = re.compile(r"^daily\s+(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)$", re.IGNORECASE)
# A fixed moment to check a cron line against (cronsim reads the line when built).
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RestartSchedule:
    """A restart window, parsed once: `text` as written, `cron` what it means."""

    text: str
    cron: str

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str) -> RestartSchedule:
        stripped = " ".join(text.split())
        daily = _DAILY.match(stripped)
        cron = f"{int(daily['m'])} {int(daily['h'])} * * *" if daily else stripped
        if not daily and stripped.lower().startswith("daily"):
            raise ValueError(f"{text!r} is not a daily time; use daily HH:MM, e.g. daily 04:30")
        try:
            CronSim(cron, _PROBE)
        except (CronSimError, ValueError) as err:
            raise ValueError(
                f"{text!r} is not a cron line ({err}); use five fields such as "
                "'30 4 * * *' or daily HH:MM"
            ) from None
        return cls(text, cron)

    def next_window(self, after: float, zone: tzinfo) -> float:
        """The first window strictly after `after` (wall-clock seconds), read in `zone`."""
        start = datetime.fromtimestamp(after, zone)
        return next(CronSim(self.cron, start)).timestamp()


def parse_timezone(name: str) -> tzinfo:
    """An IANA zone name (`Europe/Berlin`, `UTC`); ValueError naming the fix otherwise."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone; use an IANA name such as Europe/Berlin or UTC"
        ) from None
