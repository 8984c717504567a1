"""The `[notify]` settings table (env `HYOS_NOTIFY__*`), issue 27: where notifications go.

`urls` are Apprise URLs (discord://, slack://, tgram://, ntfy://, matrix://, mailto://,
json://...): comma-separated in the environment, a list in TOML. They are secrets (a
webhook's path or a bot's token is the credential), so `config` shows only each URL's
scheme and `urls_file` (env `HYOS_NOTIFY__URLS_FILE`, one or more URLs, one a line or
comma-separated) wins over `urls`, like every other `*_file` secret. A URL Apprise cannot
read is one line naming its position and scheme, exit 78, never the URL itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, field_validator

from supervisor.secretfile import SecretFile, SecretFileSetting

__all__ = ["NotifySettings", "apprise_quiet", "redact", "scheme_of"]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def scheme_of(url: str) -> str:
    """`discord://***`: all of a notification URL that may be shown."""
    found = _SCHEME.match(url.strip())
    return f"{found.group(1).lower()}://***" if found else "***"


def split_urls(text: str) -> list[str]:
    """Commas, newlines or spaces separate URLs (as Apprise's own CLI reads them)."""
    return [item for item in re.split(r"[,\s]+", text) if item]


def _urls(value: object) -> object:
    if isinstance(value, str):
        return split_urls(value)
    return value


@contextmanager
def apprise_quiet() -> Iterator[None]:
    """Apprise logs the URLs it cannot parse and the transport errors it meets (which
    name a webhook's path); while we call it, its logger says nothing. What went wrong
    is reported by us, redacted."""
    logger = logging.getLogger("apprise")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def redact(text: str, secrets: list[str]) -> str:
    """`text` with each URL, and each part of it long enough to be a token (user,
    password, host, path segments, query values), replaced by ***."""
    parts: set[str] = set()
    for url in secrets:
        parts.add(url)
        parts.update(p for p in re.split(r"[/:@?&=#,]+", url.split("://", 1)[-1]) if len(p) >= 6)
    for part in sorted(parts, key=len, reverse=True):
        text = text.replace(part, "***")
    return text


def _check_url(index: int, url: str) -> None:
    if not _SCHEME.match(url):
        raise ValueError(
            f"URL #{index} is not an Apprise URL ({scheme_of(url)}); write it as "
            "scheme://..., e.g. discord://webhook_id/webhook_token"
        )
    import apprise  # only when notifications are configured: its import costs ~0.1 s

    with apprise_quiet():
        plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        raise ValueError(
            f"URL #{index} ({scheme_of(url)}) is not a URL Apprise can send to; check it "
            "against Apprise's list of services"
        )


class NotifySettings(BaseModel):
    """Notifications through Apprise (supervisor/alerts.py decides, alertsender.py sends)."""

    model_config = ConfigDict(extra="forbid")

    urls: Annotated[list[SecretStr], BeforeValidator(_urls)] = []
    urls_file: SecretFileSetting = None

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, url in enumerate(value, 1):
            _check_url(index, url.get_secret_value().strip())
        return value

    @field_validator("urls_file")
    @classmethod
    def _check_file(cls, file: SecretFile | None) -> SecretFile | None:
        if file is not None:
            for index, url in enumerate(split_urls(file.value.get_secret_value()), 1):
                _check_url(index, url)
        return file

    def targets(self) -> list[str]:
        """The URLs to send to (the file's wins), as written; never log them."""
        if self.urls_file is not None:
            return split_urls(self.urls_file.value.get_secret_value())
        return [url.get_secret_value().strip() for url in self.urls]

    @property
    def enabled(self) -> bool:
        return bool(self.targets())

    def masked(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump(mode="json")
        data["urls"] = [scheme_of(url.get_secret_value()) for url in self.urls]
        return data
