"""The pydantic schema of a setting parsed once from how it was written and shown that
way again (`config`, model_dump)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_core import core_schema

__all__ = ["parsed_once", "written_as"]


def parsed_once(parse: Callable[[Any], Any], show: Callable[[Any], str]) -> Any:
    """`parse` takes what was written (or an already parsed value back), `show` writes it
    out again."""
    return core_schema.no_info_plain_validator_function(
        parse, serialization=core_schema.plain_serializer_function_ser_schema(show)
    )


def written_as(cls: type) -> Any:
    """For a value type built from its text that keeps it as `.text` (sizes, durations)."""
    return parsed_once(lambda v: v if isinstance(v, cls) else cls(v), lambda v: v.text)
