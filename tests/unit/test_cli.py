"""The command line: global options on either side of the verb; failures of `run` at
startup as one line with a documented exit code."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from supervisor import daemon
from supervisor.cli import EX_FAILED, EX_SOFTWARE, EX_UNAVAILABLE, _parser, main
from supervisor.dockertypes import DockerUnreachable, EngineError
from supervisor.logs import TextFormatter
from supervisor.settings import EX_CONFIG
from tests.fakeengine import FakeEngine


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "a.toml", "--log-format", "json", "--log-level", "DEBUG", "run"],
        ["run", "--config", "a.toml", "--log-format", "json", "--log-level", "DEBUG"],
        ["--log-level", "DEBUG", "run", "--log-format", "json", "--config", "a.toml"],
    ],
)
def test_global_options_are_accepted_on_either_side_of_the_verb(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert (args.verb, args.config, args.log_format, args.log_level) == (
        "run",
        "a.toml",
        "json",
        "DEBUG",
    )


def test_an_option_after_the_verb_keeps_the_defaults_of_the_others() -> None:
    args = _parser().parse_args(["status", "--json", "--log-level", "WARNING"])
    assert (args.config, args.log_format, args.log_level, args.json) == (
        None,
        "auto",
        "WARNING",
        True,
    )
    # Given on both sides, the one after the verb wins (the last word, as usual).
    args = _parser().parse_args(["--log-format", "text", "up", "--log-format", "json"])
    assert args.log_format == "json"


def test_global_options_after_a_nested_verb() -> None:
    args = _parser().parse_args(["secrets", "rotate", "api", "--log-format", "text"])
    assert (args.secrets_verb, args.which, args.log_format) == ("rotate", "api", "text")


def test_options_after_the_verb_take_effect(tmp_path: Path) -> None:
    config = tmp_path / "hyos.toml"
    config.write_text('stack = "Not A Valid Name!"\n')
    assert main(["config", "--check", "--config", str(config), "--log-format", "text"]) == (
        EX_CONFIG
    )
    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "hyos-supervisor"]
    assert isinstance(handler.formatter, TextFormatter)


# --- `run` failing at startup: one line and a documented exit code -----------------------


class _Connect:
    """Stands in for `Engine` in the daemon: its `connect` gives the tests' fake engine."""

    @staticmethod
    @asynccontextmanager
    async def connect(host: str, retries: int = 5) -> AsyncIterator[FakeEngine]:
        yield FakeEngine()


def _failing_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception) -> None:
    """The daemon's first reconcile raises `error` inside its task groups, as it does
    against a real engine (tests/integration/test_startup.py does it for real)."""

    async def run(self: daemon.Daemon) -> int:
        async with anyio.create_task_group() as root, anyio.create_task_group() as work:
            work.start_soon(anyio.sleep_forever)
            raise error
        raise AssertionError(root)

    monkeypatch.setattr(daemon, "Engine", _Connect)
    monkeypatch.setattr(daemon.Daemon, "run", run)
    monkeypatch.setenv("HYOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HYOS_SERVER__IMAGE", "hyos-test/server:1")  # pinned: no warnings
    monkeypatch.setenv("HYOS_MANAGER__IMAGE", "hyos-test/manager:1")


def test_a_refused_first_reconcile_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = (
        'invalid mount config for type "bind": bind source path does not exist: '
        "/run/hyos-supervisor/hyos"
    )
    _failing_run(monkeypatch, tmp_path, EngineError(message, "create container hyos-manager"))
    assert main(["run"]) == EX_FAILED == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"hyos-supervisor: could not create container hyos-manager: {message}; the guard "
        "directory /run/hyos-supervisor must exist on the host where the Docker engine runs, "
        "at the same path (a supervisor in a container needs "
        "-v /run/hyos-supervisor:/run/hyos-supervisor)"
    ]


def test_an_unreachable_engine_during_startup_is_exit_69(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _failing_run(monkeypatch, tmp_path, DockerUnreachable("the event stream broke"))
    assert main(["run"]) == EX_UNAVAILABLE == 69
    assert capsys.readouterr().err.splitlines() == ["hyos-supervisor: the event stream broke"]


def test_a_bug_at_startup_is_one_line_exit_70_and_the_traceback_at_debug(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _failing_run(monkeypatch, tmp_path, KeyError("Id"))
    assert main(["run", "--log-format", "text"]) == EX_SOFTWARE == 70
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("hyos-supervisor: internal error: KeyError('Id'); this is a bug")
    assert main(["run", "--log-format", "text", "--log-level", "DEBUG"]) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ExceptionGroup" not in err


def test_first_error_finds_the_cause_inside_nested_groups() -> None:
    async def check() -> None:
        cause = EngineError("no")
        cancelled = anyio.get_cancelled_exc_class()()
        group = BaseExceptionGroup("outer", [cancelled, BaseExceptionGroup("inner", [cause])])
        assert daemon.first_error(group) is cause
        only_cancelled = BaseExceptionGroup("outer", [cancelled])
        assert daemon.first_error(only_cancelled) is only_cancelled

    anyio.run(check)


def test_cancel_without_a_daemon_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYOS_STATE_DIR", str(tmp_path))
    assert main(["cancel"]) == EX_FAILED
    err = capsys.readouterr().err.strip().splitlines()  # (after the settings' warnings)
    assert err[-1] == "hyos-supervisor: cancel: no daemon runs, so no drain is pending"
    assert not any("cancel" in line for line in err[:-1])


def test_now_is_an_option_of_each_drained_verb() -> None:
    parser = _parser()
    assert parser.parse_args(["restart", "server", "--now"]).now is True
    assert parser.parse_args(["secrets", "rotate", "api", "--now"]).now is True
    assert parser.parse_args(["down", "--now"]).now is True
    assert parser.parse_args(["down"]).now is False


def test_status_words_for_a_postponed_drain_and_the_next_window() -> None:
    from supervisor.cli import _drain_lines

    view = {
        "drain": {"action": "scheduled", "postponed": True, "players": None},
        "next_window": "2026-12-08T04:30:00+00:00",
    }
    assert _drain_lines(view) == [
        "drain: scheduled of the server pending, postponed until the server is empty; "
        "players online: unknown",
        "schedule: next restart window 2026-12-08T04:30:00+00:00",
    ]
    assert _drain_lines({}) == []
