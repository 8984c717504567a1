"""HyOS's state files read as values (lib/state.sh's shapes), and what they add to exits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from supervisor import hyos
from supervisor.hyos import Login, ServerExit, explain_exit, parse_login, update_started_since

URL = "https://oauth.accounts.hytale.com/oauth2/device/verify?user_code=ABCD1234"


def state_json(**fields: object) -> bytes:
    """As state_set_auth/state_set_update write them: json_object, nulls as null."""
    return json.dumps(fields).encode()


def test_a_pending_login_carries_url_and_code() -> None:
    raw = state_json(status="pending", authenticated=False, profile=None, expires_at=None,
                     auth_url=URL, auth_code="ABCD1234", updated_at="2026-12-05T08:00:00+00:00")  # fmt: skip
    login = parse_login(raw)
    assert login == Login("pending", URL, "ABCD1234")
    assert login is not None and login.waiting
    assert login.to_json() == {"status": "pending", "url": URL, "code": "ABCD1234"}


@pytest.mark.parametrize("status", ["authenticated", "timeout", "failed", "unknown"])
def test_other_statuses_never_show_a_code(status: str) -> None:
    login = parse_login(state_json(status=status, auth_url=URL, auth_code="X"))
    assert login == Login(status) and not login.waiting


@pytest.mark.parametrize(
    "raw", [None, b"", b"{", b"[]", b'{"status": null}', b'{"status": 5}', b"\xff", b"[" * 5000]
)
def test_unreadable_auth_files_are_none(raw: bytes | None) -> None:
    assert parse_login(raw) is None


def test_pending_with_null_code_is_not_waiting() -> None:
    login = parse_login(state_json(status="pending", auth_url="null", auth_code=None))
    assert login == Login("pending") and not login.waiting


STARTED = datetime(2026, 12, 5, 8, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (state_json(status="downloading", updated_at="2026-12-05T08:01:00+00:00"), True),
        # HyOS's first download leaves a stale "downloading" from before this start.
        (state_json(status="downloading", updated_at="2026-12-05T07:59:00+00:00"), False),
        (state_json(status="idle", updated_at="2026-12-05T08:01:00+00:00"), False),
        (state_json(status="downloading"), False),
        (state_json(status="downloading", updated_at="yesterday"), False),
        (None, False),
    ],
)
def test_the_update_button_is_told_by_a_fresh_downloading(
    raw: bytes | None, expected: bool
) -> None:
    assert update_started_since(raw, STARTED) is expected


def test_explain_exit() -> None:
    ended = Login("timeout")
    assert explain_exit(1, ended, False) is ServerExit.LOGIN_ENDED
    assert explain_exit(1, Login("failed"), False) is ServerExit.LOGIN_ENDED
    assert explain_exit(1, Login("authenticated"), False) is None  # Java crashed
    assert explain_exit(1, None, False) is None
    assert explain_exit(143, Login("authenticated"), True) is ServerExit.UPDATE
    assert explain_exit(143, None, False) is None
    assert explain_exit(2, ended, True) is None  # the game's own codes keep their meaning


def test_update_on_restart_is_what_schedule_update_writes() -> None:
    body = json.loads(hyos.update_on_restart(datetime(2026, 12, 5, 8, 0, tzinfo=UTC)))
    assert body == {"scheduled_at": "2026-12-05T08:00:00+00:00", "target_version": None,
                    "scheduled_by": "hyos-supervisor"}  # fmt: skip


@pytest.mark.parametrize(
    ("line", "relevant"),
    [
        (URL, True),
        ("Authorization code: ABCD1234", True),
        ("[INFO]  Waiting for authentication...", True),
        ("Device code expired", True),
        ("[World|default] Saving Chunks...", False),
        ("Player Steve joined", False),
    ],
)
def test_login_lines(line: str, relevant: bool) -> None:
    assert bool(hyos.LOGIN_LINE.search(line)) is relevant


def test_manager_config_overrides_name_the_keys_the_dashboard_saved_over_the_wiring() -> None:
    saved = {"serverHost": "hyos-server", "apiClientSecret": "x", "telemetryEnabled": False}
    assert hyos.manager_config_overrides(json.dumps(saved).encode()) == (
        "serverHost",
        "apiClientSecret",
    )
    assert hyos.manager_config_overrides(b'{"telemetryEnabled": false}') == ()
    assert hyos.manager_config_overrides(None) == ()
    assert hyos.manager_config_overrides(b"not json") == ()


def test_game_version_is_one_printable_token_or_none() -> None:
    assert hyos.game_version(b"2026.01.15-abc123\n") == "2026.01.15-abc123"
    assert hyos.game_version(None) is None
    assert hyos.game_version(b"") is None
    # A tag cannot hold a comma or a space: such a file gives no version, not a broken tag.
    assert hyos.game_version(b"1.0, 2.0") is None
    assert hyos.game_version(b"x" * 65) is None
