"""Counts every call made through it (reads included) to what it wraps, not an engine of
its own: the typed fake engine in unit tests, the real one in bench/bench_metrics.py.
Proof that a scrape of `/metrics` makes no Docker call."""

from __future__ import annotations

from typing import Any


class CallCounter:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if not callable(found):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return found(*args, **kwargs)

        return counted
