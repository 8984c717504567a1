"""scripts/code_shape.py's figure for issue #23's "one writer per service": no write of a
service's record (store.Service) from another task. Every write outside the worker's
modules is one OUTSIDE_THE_TURN explains (before the workers run, after they ended, or a
stack pass's share run in the worker's turn); a new one fails here until it is moved into
the worker or explained there."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def code_shape() -> ModuleType:
    spec = importlib.util.spec_from_file_location("code_shape", ROOT / "scripts/code_shape.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["code_shape"] = module
    spec.loader.exec_module(module)
    return module


def test_no_service_record_is_written_from_another_task() -> None:
    shape = code_shape()
    writers = shape.record_writers(ROOT / "supervisor")
    others = [w for w in writers if shape._writer_key(w) not in shape.OUTSIDE_THE_TURN]
    assert others == []
    assert writers  # the count sees the writes it explains (it is not blind)


def test_the_count_sees_a_write_from_outside(tmp_path: Path) -> None:
    """What it catches: a field of Service assigned on another object, tuple targets
    included; `self.<field>` of the writer's own object is not a service record."""
    shape = code_shape()
    # The fields come from store.Service.
    (tmp_path / "store.py").write_text((ROOT / "supervisor/store.py").read_text())
    (tmp_path / "control.py").write_text(
        "def on_request(server, self):\n"
        "    server.restart = reset(server.restart)\n"
        "    before, server.login = server.login, None\n"
        "    self.health = 'x'\n"
    )
    found = shape.record_writers(tmp_path)
    assert [w for w in found if w.startswith("control.py")] == [
        "control.py:2 on_request .restart",
        "control.py:3 on_request .login",
    ]
