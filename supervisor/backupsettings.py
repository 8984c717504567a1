"""The `[backup]` settings table (env `HYOS_BACKUP__*`), issue 25.

Validated like every other setting: a bad value is one line naming the field and the
fix, exit 78, before anything is touched. The password is a secret: `config` shows
`**********` (or the `password_file` path), never the value; it reaches restic on the
helper's stdin, never in argv or Env.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import tzinfo
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    field_validator,
)

from supervisor import hostpaths
from supervisor.drain import parse_duration
from supervisor.retention import KeepPolicy
from supervisor.schedule import RestartSchedule
from supervisor.secretfile import SecretFile, SecretFileSetting
from supervisor.secretspec import BACKUP_PASSWORD

__all__ = ["BackupEvery", "BackupSettings", "Repository"]

# restic's remote backends, by the prefix of their location.
REMOTE_SCHEMES = ("s3", "sftp", "rest", "b2", "azure", "gs", "swift", "rclone")
_REMOTE = re.compile(rf"^(?P<scheme>{'|'.join(REMOTE_SCHEMES)}):(?P<rest>.+)$")
_VOLUME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
# restic's backend credentials are environment variables; these prefixes are the backends'
# (S3 and compatible, B2, Azure, Google Cloud Storage, OpenStack Swift, rclone, a REST
# server). Anything else (RESTIC_PASSWORD, PATH, HOME...) is not a credential to pass.
CREDENTIAL_PREFIXES = ("AWS_", "B2_", "AZURE_", "GOOGLE_", "OS_", "ST_", "RCLONE_", "RESTIC_REST_")
_CREDENTIAL_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
# The least time between two scheduled backups (a duration form): a check follows each.
MIN_EVERY_S = 300.0


@dataclass(frozen=True, slots=True)
class Repository:
    """Where the snapshots go: a host directory, a Docker volume or a restic URL (S3,
    SFTP, a REST server, B2, rclone...). `text` is as written."""

    kind: Literal["path", "volume", "url"]
    location: str
    text: str

    @property
    def needs_network(self) -> bool:
        return self.kind == "url"

    @property
    def shown(self) -> str:
        """For `config`, `backup key` and logs: a URL's user:password@ masked."""
        return re.sub(r"//[^/@]*@", "//***@", self.text)

    @classmethod
    def parse(cls, value: object) -> Repository:
        if isinstance(value, Repository):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                "expected a directory (/srv/hyos-backups), a volume name or a restic URL "
                "such as s3:https://host/bucket"
            )
        text = value.strip()
        path = text.removeprefix("local:")
        if path.startswith("/"):
            if hostpaths.is_sensitive(path):
                raise ValueError(f"{text!r} is a sensitive host path; use a dedicated directory")
            return cls("path", hostpaths.normalize(path), text)
        remote = _REMOTE.match(text)
        if remote:
            return cls("url", text, text)
        if ":" in text:
            raise ValueError(
                f"{text!r} is not a restic location; use a directory, a volume name or a URL "
                f"starting {', '.join(s + ':' for s in REMOTE_SCHEMES)}"
            )
        if not _VOLUME.match(text):
            raise ValueError(f"{text!r} is neither an absolute path nor a valid volume name")
        return cls("volume", text, text)


@dataclass(frozen=True, slots=True)
class BackupEvery:
    """How often `run` takes a backup: a duration (`6h`, `30m`) or a cron line
    (`0 */6 * * *`, `daily 03:00`), read by cronsim. `text` is as written."""

    text: str
    seconds: float | None = None
    cron: RestartSchedule | None = None

    @classmethod
    def parse(cls, value: object) -> BackupEvery:
        if isinstance(value, BackupEvery):
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("expected a duration such as 6h or a cron line such as '0 3 * * *'")
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = None
        if seconds is not None:
            if seconds < MIN_EVERY_S:
                raise ValueError(
                    f"{value!r} is shorter than 5m; back up at most every 5 minutes, e.g. 1h"
                )
            return cls(str(value), seconds=seconds)
        assert isinstance(value, str)  # numbers are always durations
        try:
            return cls(value, cron=RestartSchedule.parse(value))
        except ValueError:
            raise ValueError(
                f"{value!r} is neither a duration (e.g. 6h) nor a cron line (e.g. '0 3 * * *' "
                "or daily 03:00)"
            ) from None

    def next_after(self, last: float | None, now: float, zone: tzinfo) -> float:
        """When the next backup is due (wall-clock seconds): an interval counts from the
        last backup (now when there is none yet); a cron line is its next window."""
        if self.seconds is not None:
            return now if last is None else max(now, last + self.seconds)
        assert self.cron is not None
        return self.cron.next_window(now if last is None else max(last, now - 1), zone)

    def interval(self, zone: tzinfo, around: float) -> float:
        """The nominal time between two backups (what `status` calls overdue twice)."""
        if self.seconds is not None:
            return self.seconds
        assert self.cron is not None
        first = self.cron.next_window(around, zone)
        return self.cron.next_window(first, zone) - first


def _credential_problem(name: str, value: str) -> str | None:
    if not _CREDENTIAL_NAME.match(name) or not name.startswith(CREDENTIAL_PREFIXES):
        return (
            f"{name!r} is not a restic backend variable; use names starting "
            f"{', '.join(CREDENTIAL_PREFIXES)} (e.g. AWS_SECRET_ACCESS_KEY)"
        )
    if not value or "\n" in value or "\0" in value:
        return f"{name} is empty or holds a line break; give its value on one line"
    return None


def parse_credentials_file(text: str) -> dict[str, SecretStr]:
    """An env file (`NAME=value` lines, `#` comments, blank lines), as restic's own
    documentation writes backend credentials."""
    found: dict[str, SecretStr] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip().strip("'\"")
        if not sep:
            raise ValueError(f"line {number} is not NAME=value")
        problem = _credential_problem(name, value)
        if problem is not None:
            raise ValueError(f"line {number}: {problem}")
        found[name] = SecretStr(value)
    return found


def _repository(value: object) -> Repository | None:
    return None if value is None else Repository.parse(value)


def _every(value: object) -> BackupEvery | None:
    return None if value is None else BackupEvery.parse(value)


RepositorySetting = Annotated[
    Repository | None,
    PlainValidator(_repository),
    PlainSerializer(lambda r: None if r is None else r.shown, return_type=str | None),
]
EverySetting = Annotated[
    BackupEvery | None,
    PlainValidator(_every),
    PlainSerializer(lambda e: None if e is None else e.text, return_type=str | None),
]


class BackupSettings(BaseModel):
    """Backups (restic in a one-shot helper container): where, how often, how many."""

    model_config = ConfigDict(extra="forbid")

    # None: the Docker volume `<stack>-backups`, which `down --volumes` keeps.
    repository: RepositorySetting = None
    # None (and no password_file): generated once, kept in the state dir (backupkey.py).
    password: SecretStr | None = None
    password_file: SecretFileSetting = None
    # The repository's backend credentials (S3, B2, Azure...), as restic's environment
    # variables; or credentials_file, an env file of NAME=value lines (it wins). Secrets:
    # they reach restic through the helper's stdin, never its Env, argv or `config`.
    credentials: dict[str, SecretStr] = Field(default_factory=dict)
    credentials_file: SecretFileSetting = None
    # None: no scheduled backups (the verbs still work).
    every: EverySetting = None
    # save: POST /server/save, then a snapshot of the running server's world;
    # stop: drain, stop, snapshot, start (a stopped-server copy).
    mode: Literal["save", "stop"] = "save"
    keep_last: int = Field(default=3, ge=0, le=10_000)
    keep_hourly: int = Field(default=24, ge=0, le=10_000)
    keep_daily: int = Field(default=7, ge=0, le=10_000)
    keep_weekly: int = Field(default=4, ge=0, le=10_000)
    keep_monthly: int = Field(default=12, ge=0, le=10_000)

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = BACKUP_PASSWORD.problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, file: SecretFile | None) -> SecretFile | None:
        if file is not None:
            problem = BACKUP_PASSWORD.problem(file.value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return file

    @field_validator("credentials")
    @classmethod
    def _credentials(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            problem = _credential_problem(name, secret.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("credentials_file")
    @classmethod
    def _credentials_file(cls, file: SecretFile | None) -> SecretFile | None:
        if file is not None:
            try:
                parse_credentials_file(file.value.get_secret_value())
            except ValueError as err:
                raise ValueError(f"{file.path}: {err}") from None
        return file

    def backend_credentials(self) -> dict[str, str]:
        """What restic gets in its environment: the file's, else the table's."""
        if self.credentials_file is not None:
            chosen = parse_credentials_file(self.credentials_file.value.get_secret_value())
        else:
            chosen = self.credentials
        return {name: secret.get_secret_value() for name, secret in chosen.items()}

    def supplied_password(self) -> SecretStr | None:
        """The operator's password: its file wins over the value; None: generated."""
        if self.password_file is not None:
            return self.password_file.value
        return self.password

    def repository_for(self, stack: str) -> Repository:
        return self.repository or Repository("volume", f"{stack}-backups", f"{stack}-backups")

    def policy(self) -> KeepPolicy:
        return KeepPolicy(
            last=self.keep_last,
            hourly=self.keep_hourly,
            daily=self.keep_daily,
            weekly=self.keep_weekly,
            monthly=self.keep_monthly,
        )

    def masked(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(mode="json")
        if self.password is not None:
            data["password"] = "**********"
        data["credentials"] = {name: "**********" for name in self.credentials}
        return data


def overdue(last: float | None, every: BackupEvery, now: float, zone: tzinfo) -> bool:
    """A backup older than twice its interval (none yet is not overdue: see `status`)."""
    if last is None:
        return False
    return now - last > 2 * every.interval(zone, now)


def describe_age(seconds: float) -> str:
    """`3h 12m`, `2d 4h`, `45s`: an age as `status` prints it."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def backup_status(
    records: dict[str, Any] | None, every: BackupEvery | None, now: float, zone: tzinfo
) -> dict[str, Any] | None:
    """What `status` shows of the backups, from the records only (no Docker, no restic):
    the last successful backup's age, size and verification, the last attempt's result,
    and whether it is overdue (older than twice the interval). None: nothing to show."""
    if not records and every is None:
        return None
    records = records or {}
    last_ok = records.get("last_ok")
    last = records.get("last")
    when = float(last_ok["time"]) if last_ok else None
    return {
        "last_ok_at": when,
        "age_s": None if when is None else max(0.0, now - when),
        "files": last_ok.get("files") if last_ok else None,
        "bytes": last_ok.get("bytes") if last_ok else None,
        "verified": last_ok.get("verified") if last_ok else None,
        "last_result": None if last is None else ("ok" if last.get("ok") else "failed"),
        "last_error": None if last is None else last.get("error"),
        "every": None if every is None else every.text,
        "overdue": every is not None and overdue(when, every, now, zone),
    }


def status_line(view: dict[str, Any]) -> str:
    """`backup: last ok 3h 12m ago (1234 files, 5678 bytes, verified); every 6h`."""
    if view["last_ok_at"] is None:
        text = "backup: none yet"
    else:
        verified = "verified" if view["verified"] else "NOT verified"
        text = (
            f"backup: last ok {describe_age(view['age_s'])} ago ({view['files']} files, "
            f"{view['bytes']} bytes, {verified})"
        )
    if view["last_result"] == "failed":
        text += f"; the last attempt failed: {view['last_error']}"
    if view["every"]:
        text += f"; every {view['every']}"
    if view["overdue"]:
        text += "; OVERDUE (older than twice its interval)"
    return text
