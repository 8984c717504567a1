"""Logging setup: text on a TTY, plain lines with syslog priorities when stderr is the
journal (systemd), JSON lines otherwise (docker logs, collectors).

Event lines carry structured fields as ``extra``; ``bind()`` attaches the usual ones
(stack, service, container_id) once so every line of a service carries them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

__all__ = [
    "BoundLogger",
    "JournalFormatter",
    "LogFormat",
    "TextFormatter",
    "bind",
    "error_line",
    "is_journal",
    "make_formatter",
    "quiet_cancelled_wakeups",
    "setup_logging",
    "syslog_priority",
]

LogFormat = Literal["auto", "json", "text"]

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

# Marks the handler we installed so a second setup_logging() replaces it, not doubles it.
_HANDLER_NAME = "hyos-supervisor"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}


class TextFormatter(logging.Formatter):
    """``2025-01-01 12:00:00 WARNING supervisor.daemon: message key=value ...``"""

    def __init__(
        self,
        fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt: str | None = "%Y-%m-%d %H:%M:%S",
    ) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return line
        first, newline, rest = line.partition("\n")  # keep tracebacks after the fields
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in extras.items())
        return f"{first} {fields}{newline}{rest}"


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level: 2 crit, 3 err, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(TextFormatter):
    """``<4>WARNING supervisor.daemon: message key=value ...``: no timestamp (journald adds
    its own), each line prefixed with the record's syslog priority, which journald strips
    and stores as PRIORITY (so ``journalctl -p warning`` works, tracebacks included)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s", None)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def is_journal(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` (default stderr) is the journal: systemd sets JOURNAL_STREAM to
    ``<device>:<inode>`` of the stream it connected, and only that stream matches it
    (a child whose stderr was redirected inherits the variable but not the stream)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat((sys.stderr if stream is None else stream).fileno())
    except (AttributeError, ValueError, OSError):  # closed or file-less streams
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def error_line(text: str, stream: TextIO | None = None) -> None:
    """One line for the operator on stderr; at priority err when stderr is the journal."""
    out = sys.stderr if stream is None else stream
    print(("<3>" if is_journal(out) else "") + text, file=out)


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return repr(text)
    return text


class _UtcJsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


def make_formatter(fmt: Literal["json", "text", "journal"]) -> logging.Formatter:
    if fmt == "text":
        return TextFormatter()
    if fmt == "journal":
        return JournalFormatter()
    # asctime -> "timestamp" (ISO 8601 UTC, via formatTime); levelname -> "level";
    # name -> "logger"; extras are appended by python-json-logger.
    return _UtcJsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
        json_default=str,  # Paths, enums, datetimes: never fail a log line on a value
    )


def setup_logging(
    fmt: LogFormat = "auto",
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install one stderr handler on the root logger (idempotent) and return it.

    "auto" picks text when the stream is a terminal, plain lines with syslog priority
    prefixes when it is the journal (JOURNAL_STREAM), and JSON otherwise.
    """
    out = sys.stderr if stream is None else stream
    if fmt not in ("auto", "json", "text"):
        raise ValueError(f"unknown log format {fmt!r}: use auto, json or text")
    chosen: Literal["json", "text", "journal"] = fmt if fmt != "auto" else _auto(out)
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(make_formatter(chosen))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def _auto(stream: TextIO) -> Literal["json", "text", "journal"]:
    if _isatty(stream):
        return "text"
    return "journal" if is_journal(stream) else "json"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or file-less streams
        return False


class BoundLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines all carry the bound fields; a call's own ``extra`` wins."""

    def __init__(self, logger: logging.Logger, fields: Mapping[str, Any]) -> None:
        super().__init__(logger, dict(fields))

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        # The stock adapter replaces the call's `extra`; merge instead (3.13's merge_extra).
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs

    def bind(self, **fields: Any) -> BoundLogger:
        """A new logger with more fields (e.g. container_id once it is known)."""
        return BoundLogger(self.logger, {**(self.extra or {}), **fields})


def bind(logger: logging.Logger | BoundLogger, **fields: Any) -> BoundLogger:
    """``bind(log, stack="hyos", service="server", container_id=cid)``.

    Fields must not clash with LogRecord attributes (``name``, ``msg``, ``args``...),
    which the logging module rejects; checked here so it fails at bind time.
    """
    clash = _RECORD_ATTRS.intersection(fields)
    if clash:
        raise ValueError(f"log field names clash with LogRecord attributes: {sorted(clash)}")
    if isinstance(logger, BoundLogger):
        return logger.bind(**fields)
    return BoundLogger(logger, fields)


def _is_cancelled_wakeup(context: Mapping[str, Any]) -> bool:
    """anyio's UNIX socket streams wait on a future that a reader callback resolves; when
    the receive is cancelled (a relay ends, the peer's bytes or EOF arrive in the same
    loop pass) the callback still runs and asyncio reports InvalidStateError as an error.
    Nothing was lost: the future was cancelled on purpose."""
    handle = context.get("handle")
    callback = getattr(handle, "_callback", None)
    future = getattr(callback, "__self__", None)
    return (
        isinstance(context.get("exception"), asyncio.InvalidStateError)
        and getattr(callback, "__name__", "") == "set_result"
        and isinstance(future, asyncio.Future)
        and future.cancelled()
    )


def quiet_cancelled_wakeups(loop: asyncio.AbstractEventLoop) -> None:
    """Log that one benign race at DEBUG; every other loop error as asyncio would."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _is_cancelled_wakeup(context):
            logging.getLogger("asyncio").debug("a cancelled socket wait was woken; ignored")
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
