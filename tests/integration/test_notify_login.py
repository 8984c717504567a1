"""The Hytale login reaches the operator: HyOS's own scripts (the replica server image,
tests/upstream) run the device-code flow and write auth.json; the daemon notifies the
URL and code through Apprise's json:// to a real local HTTP receiver within 5 s of that
write, once, with its idempotency key, and the outbox is empty after (status shows it)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator

import pytest

from tests.integration.conftest import DaemonFactory, Stack, docker, wait_for
from tests.receiver import Receiver
from tests.upstream.replica import REPLICA_IMAGE, replica_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def replica_image() -> None:
    reason = None
    if shutil.which("docker") is None or docker("version", check=False).returncode != 0:
        reason = "no Docker engine answers"
    elif docker("image", "inspect", REPLICA_IMAGE, check=False).returncode != 0:
        reason = f"{REPLICA_IMAGE} is not built: bash tests/upstream/build-server.sh"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: these tests must run)")
        pytest.skip(reason)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.down()


def test_the_login_code_is_notified_within_5_s_of_hyos_writing_auth_json(
    stack: Stack, daemon: DaemonFactory, receiver: Receiver
) -> None:
    stack.env.update(replica_env())  # no tokens: HyOS's device-code login
    token_path = "/hook/login-s3cr3t"
    d = daemon(wait=False, HYOS_NOTIFY__URLS=receiver.url(token_path))
    logins = wait_for(
        lambda: [r for r in receiver.received() if r.body.get("event") == "needs_auth"],
        120,
        "the login notification",
    )
    server = stack.container("server")
    # When HyOS's state_set_auth wrote the file (its mtime, to the nanosecond; the
    # container's clock is the host's), and what it holds.
    written = float(docker("exec", server, "stat", "-c", "%.9Y", "/data/.state/auth.json").stdout)
    auth = json.loads(docker("exec", server, "cat", "/data/.state/auth.json").stdout)
    assert auth["status"] == "pending" and auth["auth_code"]
    (login,) = [r for r in logins if auth["auth_code"] in r.body["message"]]
    assert auth["auth_url"] in login.body["message"]
    assert (
        login.body["idempotency_key"] == f"hyos/{stack.name}/needs_auth/server/{auth['auth_code']}"
    )
    assert login.headers["Idempotency-Key"] == login.body["idempotency_key"]
    delay = login.at - written
    print(f"\nlogin code notified {delay:.2f} s after HyOS wrote auth.json")
    assert 0 <= delay <= 5.0
    # The URL's path (its token) is in no log line of the daemon.
    d.assert_alive()
    assert "login-s3cr3t" not in d.log_path.read_text()
    # The outbox is drained, and `status` says so.
    status = stack.run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["notifications"]["pending"] == 0
    assert "notifications: all delivered" in stack.run("status").stdout
