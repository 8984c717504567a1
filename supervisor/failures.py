"""One line for a failure the operator must act on: what failed, what Docker said, the
likely fix. Pure: it reads the error and the settings, never the engine."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath

from supervisor.dockertypes import EngineError
from supervisor.settings import Settings

_BIND_SOURCE = re.compile(r"bind source path does not exist: (?P<path>\S+)")


def _under(path: str, directory: str | None) -> bool:
    if not directory:
        return False
    return PurePosixPath(path).is_relative_to(PurePosixPath(directory))


def _missing_bind_source(match: re.Match[str], settings: Settings) -> str:
    path = match["path"]
    if settings.guard and _under(path, str(settings.guard_dir)):
        return (
            f"the guard directory {settings.guard_dir} must exist on the host where the Docker "
            "engine runs, at the same path (a supervisor in a container needs "
            f"-v {settings.guard_dir}:{settings.guard_dir})"
        )
    if settings.data_is_bind and _under(path, settings.data_source):
        return f"the data directory {path} must exist on the host where the Docker engine runs"
    return f"{path} must exist on the host where the Docker engine runs"


def _port_taken(match: re.Match[str], settings: Settings) -> str:
    return (
        "another process or container holds that host port: stop it, or change "
        "HYOS_SERVER__PORTS / HYOS_MANAGER__PORTS"
    )


def _no_image(match: re.Match[str], settings: Settings) -> str:
    return "build or load the image, or fix HYOS_SERVER__IMAGE / HYOS_MANAGER__IMAGE"


def _memory(match: re.Match[str], settings: Settings) -> str:
    return "raise HYOS_SERVER__MEMORY / HYOS_MANAGER__MEMORY"


# Docker's message -> the likely fix; the first match wins.
_HINTS: list[tuple[re.Pattern[str], Callable[[re.Match[str], Settings], str]]] = [
    (_BIND_SOURCE, _missing_bind_source),
    (re.compile(r"port is already allocated|address already in use"), _port_taken),
    (re.compile(r"No such image|pull access denied|manifest unknown"), _no_image),
    (re.compile(r"Minimum memory limit"), _memory),
]


def likely_fix(message: str, settings: Settings) -> str | None:
    for pattern, fix in _HINTS:
        match = pattern.search(message)
        if match:
            return fix(match, settings)
    return None


def explain(err: BaseException, settings: Settings) -> str:
    """``<what failed>: <Docker's message>; <likely fix>`` (parts left out when unknown)."""
    message = str(err) or type(err).__name__
    what = getattr(err, "what", "") if isinstance(err, EngineError) else ""
    line = f"could not {what}: {message}" if what else message
    fix = likely_fix(message, settings)
    return f"{line}; {fix}" if fix else line
