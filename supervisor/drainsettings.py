"""The `[drain]` and `[schedule]` settings tables (env `HYOS_DRAIN__*`, `HYOS_SCHEDULE__*`).

Kept out of settings.py so that module only names them; validated the same way: a bad
value is one line naming the field and the fix, exit 78, before anything is touched.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    PlainValidator,
    field_validator,
)

from supervisor import drain
from supervisor.parsedonce import written_as
from supervisor.schedule import RestartSchedule, parse_timezone

__all__ = ["DrainSettings", "Duration", "ScheduleSettings"]


class Duration(float):
    """Seconds, parsed once from `15m`, `30s`, `1h`, `1m30s` or a number; `config` shows
    it as it was written."""

    text: str

    @staticmethod
    def parse(value: str | float) -> float:
        """The grammar (a subclass may have its own, e.g. with days)."""
        return drain.parse_duration(value)

    def __new__(cls, value: str | float) -> Duration:
        seconds = super().__new__(cls, cls.parse(value))
        seconds.text = str(value)
        return seconds

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return written_as(cls)


def _durations(value: object) -> object:
    """`15m,5m,1m` (one string, as TOML or the environment may give it) or a list; each
    item parsed here so a bad one is named by the setting."""
    if isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple):
        return [item if isinstance(item, Duration) else Duration(item) for item in value]
    return value


class DrainSettings(BaseModel):
    """How a disruptive action waits for the players (supervisor/drain.py)."""

    model_config = ConfigDict(extra="forbid")

    # Warnings, as time left before the deadline; those beyond max_wait are not given.
    warn_at: Annotated[list[Duration], BeforeValidator(_durations)] = Field(
        default_factory=lambda: [Duration(o) for o in drain.DEFAULT_WARN_AT.split(",")]
    )
    max_wait: Duration = Duration("15m")
    on_deadline: Literal["act", "postpone"] = "act"
    # `{action}` and `{time_left}`, e.g. "The server will restart in 5 minutes."
    message: str = drain.DEFAULT_MESSAGE
    # Between status polls while players are on (2 s in the last minute); 10 s is
    # 6 calls a minute, far inside the REST plugin's 300/min.
    poll_s: float = Field(default=10.0, ge=1, le=60, allow_inf_nan=False)

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        return drain.validate_template(value)

    def policy(self, only_if_empty: bool = False) -> drain.DrainPolicy:
        """The planner's policy; a schedule's `only_if_empty` skips instead of acting."""
        return drain.DrainPolicy(
            warn_at=tuple(float(o) for o in self.warn_at),
            max_wait=float(self.max_wait),
            on_deadline="skip" if only_if_empty else self.on_deadline,
            poll_s=self.poll_s,
            template=self.message,
        )


def _schedule(value: object) -> RestartSchedule | None:
    if value is None or isinstance(value, RestartSchedule):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a cron line such as '30 4 * * *' or daily HH:MM")
    return RestartSchedule.parse(value)


# Parsed once; `config` shows it as written.
Schedule = Annotated[
    RestartSchedule | None,
    PlainValidator(_schedule),
    PlainSerializer(lambda s: None if s is None else s.text, return_type=str | None),
]


class ScheduleSettings(BaseModel):
    """Scheduled maintenance: a restart window, drained like any other restart."""

    model_config = ConfigDict(extra="forbid")

    # A cron line (`30 4 * * *`) or `daily HH:MM`; none by default.
    restart: Schedule = None
    timezone: str = "UTC"
    # Skip the window when players stay past drain.max_wait (instead of on_deadline).
    only_if_empty: bool = False

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        parse_timezone(value)
        return value

    @property
    def zone(self) -> tzinfo:
        return parse_timezone(self.timezone)
