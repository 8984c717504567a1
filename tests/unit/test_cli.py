"""The command line: global options on either side of the verb."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.cli import _parser, main
from supervisor.logs import TextFormatter
from supervisor.settings import EX_CONFIG


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("HYOS_") or name in ("DOCKER_HOST", "JOURNAL_STREAM"):
            monkeypatch.delenv(name, raising=False)
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
