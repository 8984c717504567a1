"""`hyos-supervisor update` and `status`'s update lines (supervisor/updatecli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor import cli
from supervisor.updatecli import status_lines


def test_a_malformed_version_is_one_line_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYOS_STATE_DIR", str(tmp_path))
    # No engine answers here: the refusal comes before any Docker call.
    monkeypatch.setenv("HYOS_DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    monkeypatch.setenv("HYOS_DOCKER_RETRIES", "1")
    code = cli.main(["update", "--version", "1.0; rm -rf /"])
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.strip() and not line.startswith("{")]  # not warnings
    assert code == 1 and len(lines) == 1, lines
    assert "--version" in lines[0] and "is not a version" in lines[0] and "e.g." in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_status_lines_say_the_step_the_result_and_what_needs_attention() -> None:
    view = {
        "current": "v1",
        "available": "v2",
        "bad_versions": ["v0"],
        "last": {"version": "v0", "result": "rolled_back", "when": 0, "reason": "crashed"},
        "transaction": {
            "version": "v2",
            "phase": "snapshot",
            "since_s": 3,
            "steps": ["stop", "snapshot"],
        },
    }
    lines = status_lines(view)
    assert lines[0] == "game: v1; update available: v2; bad: v0"
    assert lines[1] == "update to v2: snapshot (3 s); steps: stop -> snapshot"
    assert lines[2].startswith("last update: v0 rolled_back at 1970-01-01 00:00 UTC (crashed)")
    attention = status_lines(
        {
            "current": "v1",
            "needs_attention": {
                "reason": "crashed; the rollback failed: disk full",
                "snapshot": "0123456789abcdef",
                "restore": "hyos-supervisor backup restore 01234567 --now",
            },
        }
    )
    assert "NEEDS ATTENTION" in attention[1] and "01234567" in attention[1]
    assert "update --resolved" in attention[1]
