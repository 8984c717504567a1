"""Updates as transactions (issue 26) on the real engine, with the replica of HyOS's server
(its own scripts, its `.update-on-restart` path and its `perform_update`) and a real restic
repository: the six injected failures each end with the old version running and the world
sha256-identical to the pre-update snapshot; a good update ends on the new version with
its snapshot pinned; a daemon SIGKILLed mid-update resumes or rolls back on its next start.

The replica's failures come from its `versions.json` control (tests/upstream/README.md).
The pre-update world is read back from the restic snapshot itself (`restic dump`), not
from anything the supervisor says.

Images, built once per run so they are the code under test: the replica
(tests/upstream/build-server.sh, which rebuilds only when the fakes or HyOS's scripts
changed; HYOS_UPSTREAM_SERVER_IMAGE names another tag, as for the other replica tests)
and the supervisor's image as the helper under its own tag, hyos-supervisor:update
(scripts/build-image.sh: the rollback's steps are the entrypoint's)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.enginelock import once_per_run
from tests.harness import REPO, docker, poll
from tests.integration.conftest import DaemonFactory, Stack, base_env, daemons_for
from tests.standin import remove_stack_objects
from tests.upstream.replica import REPLICA_IMAGE, injected_tokens, replica_env

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("update")]

SERVER_IMAGE = REPLICA_IMAGE
HELPER = "hyos-supervisor:update"
PASSWORD = "integration-update-password-42"
OLD = "2026.01.01-old"
GATE_S = int(os.environ.get("HYOS_UPDATE_TEST_GATE_S", "12"))
# The "crash after 60 s inside the gate" needs gate_s > 60 (HYOS_UPDATE_TEST_GATE_S=120).
CRASH_IN_GATE_S = 60 if GATE_S > 60 else GATE_S // 2
UNIVERSE = "/data/Server/universe"


def _build() -> None:
    for script, image in (
        ("tests/upstream/build-server.sh", SERVER_IMAGE),
        ("scripts/build-image.sh", HELPER),
    ):
        subprocess.run(
            ["bash", str(REPO / script)],
            check=True,
            timeout=900,
            env={**os.environ, "IMAGE": image},
        )


@pytest.fixture
def update_images(test_images: None) -> None:
    """The stand-in manager and the prepare helper (test_images), the replica, ours; built
    once per run, and again if a tag went away meanwhile (the engine is shared: another
    run's clean-up removed hyos-supervisor:update mid-run once)."""
    once_per_run("update-images", _build)
    if any(
        docker("image", "inspect", image, check=False).returncode != 0
        for image in (SERVER_IMAGE, HELPER)
    ):
        _build()


def _env(name: str, state: Path, repo: Path, data: str | None) -> dict[str, str]:
    env = base_env(name, state / "state")
    env.update(
        replica_env({**injected_tokens(), "HYOS_FAKE_LATEST_VERSION": OLD}),
        HYOS_SERVER__IMAGE=SERVER_IMAGE,
        HYOS_HELPER_IMAGE=HELPER,
        HYOS_BACKUP__REPOSITORY=str(repo),
        HYOS_BACKUP__PASSWORD=PASSWORD,
        HYOS_UPDATE__GATE_S=str(GATE_S),
        HYOS_UPDATE__READY_S="40",
        HYOS_DRAIN__POLL_S="1",
        HYOS_DRAIN__MAX_WAIT="10s",
    )
    if data is not None:
        env["HYOS_DATA"] = data
    return env


@pytest.fixture
def ustack(update_images: None) -> Iterator[Stack]:
    name = f"u{uuid.uuid4().hex[:10]}"
    state = Path(tempfile.mkdtemp(prefix="hu-"))
    repo = state / "repo"
    repo.mkdir()
    os.chown(repo, 568, 568)
    yield Stack(name, _env(name, state, repo, None))
    remove_stack_objects(name)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def small_disk_stack(update_images: None) -> Iterator[Stack]:
    """The data on a 48 MiB ext4 of its own (a loop device): an update can fill it."""
    name = f"u{uuid.uuid4().hex[:10]}"
    state = Path(tempfile.mkdtemp(prefix="hu-"))
    repo = state / "repo"
    repo.mkdir()
    os.chown(repo, 568, 568)
    image, mount = state / "disk.img", state / "data"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "48M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        os.chown(mount, 568, 568)
        yield Stack(name, _env(name, state, repo, str(mount)))
        remove_stack_objects(name)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(state, ignore_errors=True)


# --- the world, the versions, the snapshot ----------------------------------------------


def _sh(stack: Stack, script: str, check: bool = True) -> str:
    out = docker("exec", stack.container("server"), "bash", "-c", script, check=check)
    return out.stdout


def _seed(stack: Stack, target: str, behaviour: dict[str, Any]) -> None:
    """A world worth keeping (2 MiB of chunks, a config), and the next version's control."""
    table = json.dumps({target: behaviour})
    _sh(
        stack,
        f"mkdir -p {UNIVERSE}/worlds/default/chunks /data/.test && "
        f"head -c 2097152 /dev/urandom > {UNIVERSE}/worlds/default/chunks/r.0.0 && "
        f"echo '{{\"seed\": 42}}' > {UNIVERSE}/worlds/default/config.json && "
        f"echo {target} > /data/.test/latest-version && "
        f"printf '%s' '{table}' > /data/.test/versions.json",
    )


def _version(stack: Stack) -> str:
    return _sh(stack, "cat /data/.version").strip()


def _live_world(stack: Stack) -> dict[str, str]:
    out = _sh(stack, f"cd {UNIVERSE} && find . -type f -print0 | sort -z | xargs -0 sha256sum")
    found = {}
    for line in out.splitlines():
        digest, path = line.split(maxsplit=1)
        found[path.removeprefix("./")] = digest
    return found


def _snapshot_world(stack: Stack, snapshot: str) -> dict[str, str]:
    """The universe as the restic snapshot holds it, read with restic itself."""
    repo = stack.env["HYOS_BACKUP__REPOSITORY"]
    out = subprocess.run(
        ["docker", "run", "--rm", "--user", "568:568", "--network", "none",
         "-v", f"{repo}:/repo:ro", "-e", f"RESTIC_PASSWORD={PASSWORD}",
         "--entrypoint", "restic", HELPER, "-r", "/repo", "--no-cache", "--no-lock",
         "dump", "--archive", "tar", snapshot, UNIVERSE],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    found = {}
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                data = tar.extractfile(member)
                assert data is not None
                path = member.name.lstrip("/").removeprefix(UNIVERSE.lstrip("/") + "/")
                found[path.removeprefix("universe/")] = hashlib.sha256(data.read()).hexdigest()
    return found


def _journal(stack: Stack) -> dict[str, Any]:
    path = Path(stack.env["HYOS_STATE_DIR"]) / f"{stack.name}.update.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _step(last: dict[str, Any], name: str) -> float:
    return float(next(at for step, at in last["steps"] if step == name))


def _running(stack: Stack) -> bool:
    out = docker("inspect", "-f", "{{.State.Running}}", stack.container("server"), check=False)
    return out.stdout.strip() == "true"


def _healthy(stack: Stack) -> bool:
    out = docker(
        "inspect", "-f", "{{.State.Health.Status}}", stack.container("server"), check=False
    )
    return out.stdout.strip() == "healthy"


# --- the six failures -------------------------------------------------------------------

FAILURES: dict[str, tuple[dict[str, Any], str]] = {
    "download fails": ({"download": "fail"}, "the install failed"),
    "crash at boot": ({"boot": "crash"}, "exited with code 1"),
    "never healthy": ({"boot": "hang"}, "unhealthy"),
    "crash inside the gate": ({"crash_after_s": CRASH_IN_GATE_S}, "into the gate"),
    "world migrated then crash": ({"migrate": True, "crash_after_s": 2}, "exited with code 1"),
}

RESULTS: list[str] = []


def _fails_and_rolls_back(stack: Stack, name: str, behaviour: dict[str, Any], words: str) -> None:
    stack.up()
    assert _version(stack) == OLD
    target = f"2026.02.0{len(RESULTS) + 1}-bad"
    _seed(stack, target, behaviour)
    began = time.monotonic()
    result = stack.run("update", "--version", target, "--now", timeout=400)
    took = time.monotonic() - began
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "rolled back" in result.stdout, result.stdout
    record = _journal(stack)["record"]
    last = record["last"]
    assert last["result"] == "rolled_back" and last["version"] == target
    assert words in last["reason"], last["reason"]
    assert record["bad"] == [target]
    # The old version runs, healthy, on the world of the snapshot taken before the update.
    assert _running(stack) and _version(stack) == OLD
    poll(lambda: _healthy(stack), 30, "the rolled-back server healthy")
    live, before = _live_world(stack), _snapshot_world(stack, last["snapshot"])
    assert live == before and "worlds/default/chunks/r.0.0" in live
    # From the failure to the old version ready again, then its own gate held gate_s.
    rollback_s = float(last["rollback_s"])
    assert 0 < rollback_s <= 90
    assert _step(last, "rolled_back") - last["ready_at"] >= GATE_S
    # An automatic retry of the bad version is refused; the operator's explicit one is not.
    again = stack.run("update", "--now")
    assert again.returncode == 1 and "marked bad" in again.stderr, again.stderr
    RESULTS.append(
        f"{name}: rolled back, {OLD} running, world equal, old version ready {rollback_s:.1f} s "
        f"after the failure, rollback with its gate {_step(last, 'rolled_back') - _step(last, 'rollback'):.1f} s "
        f"(update command {took:.1f} s; reason: {last['reason']})"
    )
    print(RESULTS[-1])


@pytest.mark.parametrize("name", [pytest.param(n, id=n.replace(" ", "_")) for n in FAILURES])
def test_a_failed_update_rolls_back_binaries_and_world(ustack: Stack, name: str) -> None:
    behaviour, words = FAILURES[name]
    _fails_and_rolls_back(ustack, name, behaviour, words)


def test_a_disk_filled_during_the_install_rolls_back(small_disk_stack: Stack) -> None:
    """HyOS's download of the new version fills the data volume (ENOSPC, the partial
    game.zip left behind): the rollback discards it, restores and starts the old version."""
    _fails_and_rolls_back(
        small_disk_stack, "disk full during install", {"download_pad_mb": 100}, ""
    )
    logs = docker("logs", small_disk_stack.container("server")).stdout
    assert "No space left on device" in logs  # the disk did fill during HyOS's download
    assert _sh(small_disk_stack, "test -e /data/game.zip || echo gone").strip() == "gone"
    free = int(_sh(small_disk_stack, "df -k --output=avail /data | tail -1").strip())
    assert free > 20_000  # KiB: the partial download is gone, not just the world back


def test_a_good_update_installs_through_hyos_and_pins_its_snapshot(ustack: Stack) -> None:
    ustack.up()
    target = "2026.03.01-good"
    _seed(ustack, target, {})
    began = time.monotonic()
    result = ustack.run("update", "--version", target, "--now", timeout=400)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert _version(ustack) == target and _running(ustack)
    last = _journal(ustack)["record"]["last"]
    assert last["result"] == "applied"
    assert [s for s, _ in last["steps"]] == ["stop", "snapshot", "install", "start", "gate", "done"]
    # Held for the whole gate: from the gate's start to done, at least gate_s.
    assert _step(last, "done") - _step(last, "gate") >= GATE_S
    rows = json.loads(ustack.run("backup", "list", "--json").stdout)
    pinned = [r for r in rows if r["id"].startswith(last["snapshot"][:8])]
    assert pinned and pinned[0]["pinned"] and pinned[0]["game_version"] == OLD
    status = json.loads(ustack.run("status", "--json").stdout)["update"]
    assert status["current"] == target and status["last"]["result"] == "applied"
    assert status["pinned"][0]["snapshot"] == last["snapshot"]
    print(f"good update: {time.monotonic() - began:.1f} s, {OLD} -> {target}")


# --- the daemon killed mid-update -------------------------------------------------------


def _phase(stack: Stack) -> str | None:
    try:
        tx = _journal(stack).get("tx")
    except (OSError, ValueError):
        return None
    return None if tx is None else str(tx["phase"])


ENDED = ("done", "rolled_back", "aborted", "needs_attention")


@pytest.fixture
def udaemon(
    ustack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[DaemonFactory]:
    """Daemons for the stack; a failed test gets their last log lines (as `daemon`)."""
    with daemons_for(ustack, tmp_path, request) as factory:
        yield factory


@pytest.mark.parametrize(
    ("kill_at", "behaviour", "ends_on"),
    [
        ("snapshot", {}, "applied"),
        ("gate", {}, "applied"),
        ("snapshot", {"boot": "crash"}, "rolled_back"),
        ("gate", {"crash_after_s": GATE_S // 2}, "rolled_back"),
        ("rollback", {"boot": "crash"}, "rolled_back"),
        ("rollback_gate", {"boot": "crash"}, "rolled_back"),
    ],
    ids=[
        "good-at-snapshot",
        "good-at-gate",
        "failing-at-snapshot",
        "failing-at-gate",
        "failing-at-rollback",
        "failing-at-rollback-gate",
    ],
)
def test_a_daemon_killed_mid_update_resumes_or_rolls_back(
    ustack: Stack, udaemon: DaemonFactory, kill_at: str, behaviour: dict[str, Any], ends_on: str
) -> None:
    first = udaemon(HYOS_RECONCILE_INTERVAL_S="5")
    target = "2026.04.01-next"
    _seed(ustack, target, behaviour)
    asked = ustack.run("update", "--version", target, "--now")
    assert asked.returncode == 0, (asked.stdout, asked.stderr)
    poll(lambda: _phase(ustack) == kill_at, 120, f"the update at {kill_at}", interval=0.02)
    first.kill9()
    seen_at_kill = _phase(ustack)
    # Never a half-installed server started behind the transaction's back meanwhile.
    second = udaemon(HYOS_RECONCILE_INTERVAL_S="5", wait=False)
    poll(lambda: _phase(ustack) in (None, "done", "rolled_back"), 240, "the update ended")
    second.wait_healthy(60, roles=("server",))
    record = _journal(ustack)["record"]
    assert record["last"]["result"] == ends_on, record["last"]
    expected = target if ends_on == "applied" else OLD
    assert _version(ustack) == expected
    live, before = _live_world(ustack), _snapshot_world(ustack, record["last"]["snapshot"])
    if ends_on == "rolled_back":
        assert live == before
    else:
        assert live["worlds/default/chunks/r.0.0"] == before["worlds/default/chunks/r.0.0"]
    print(f"SIGKILL at {seen_at_kill}: {ends_on}, {expected} running, world intact")


def test_hytales_exit_8_updates_through_the_same_transaction(
    ustack: Stack, udaemon: DaemonFactory
) -> None:
    """Exit 8 with a newer version known (HyOS's version.json) is the transaction, not a
    bare recreate: snapshot, HyOS's install, the gate; the daemon's record ends running."""
    d = udaemon(HYOS_RECONCILE_INTERVAL_S="5")
    target = "2026.05.01-exit8"
    _seed(ustack, target, {})
    # HyOS refreshes version.json at each start: a restart makes the newer version known.
    assert ustack.run("restart", "server", "--now").returncode == 0
    poll(lambda: f'"latest": "{target}"' in _sh(ustack, "cat /data/.state/version.json", False)
         or f'"latest":"{target}"' in _sh(ustack, "cat /data/.state/version.json", False),
         60, "HyOS's version.json naming the newer version")  # fmt: skip
    d.wait_healthy(60, roles=("server",))
    _sh(ustack, "echo 8 > /data/.test/java-exit")
    poll(lambda: _phase(ustack) is not None, 30, "the transaction begun by exit 8")
    poll(lambda: _phase(ustack) in ENDED, 180, "the transaction ended")
    last = _journal(ustack)["record"]["last"]
    assert last["source"] == "exit8" and last["result"] == "applied", last["reason"]
    d.wait_healthy(60, roles=("server",))
    assert _version(ustack) == target
    status = json.loads(ustack.run("status", "--json").stdout)
    assert status["update"]["current"] == target
    assert status["services"][0]["supervisor"]["status"] == "running"


def test_a_drained_update_through_the_daemon_shows_in_status_and_metrics(
    ustack: Stack, udaemon: DaemonFactory
) -> None:
    """`update` without --now while a daemon runs: drained like `restart server` (an empty
    server: it acts at once, after the save), carried out by the daemon; `status` shows
    the step it is at, then the result; /metrics counts it."""
    from tests.integration.test_metrics import free_port, scrape, value

    port = free_port()
    udaemon(HYOS_RECONCILE_INTERVAL_S="5", HYOS_METRICS__LISTEN=f"127.0.0.1:{port}")
    target = "2026.07.01-drained"
    _seed(ustack, target, {})
    asked = ustack.run("update", "--version", target)
    assert asked.returncode == 0, (asked.stdout, asked.stderr)
    poll(lambda: _phase(ustack) == "gate", 60, "the update at its gate")
    text = ustack.run("status").stdout
    assert f"update to {target}: gate" in text, text
    assert "stop -> snapshot -> install -> start -> gate" in text, text
    again = ustack.run("update", "--version", target, "--now")
    assert again.returncode == 1 and "under way" in again.stderr, again.stderr
    poll(lambda: _phase(ustack) == "done", 120, "the update done")
    journal = _journal(ustack)
    saves = [
        json.loads(line)
        for line in _sh(ustack, "cat /data/.test/api-journal.jsonl", False).splitlines()
        if line.strip()
    ]
    assert any(entry["path"] == "/server/save" for entry in saves)  # the drain's save
    assert journal["record"]["last"]["source"] == "cli"
    status = json.loads(ustack.run("status", "--json").stdout)
    assert status["update"]["current"] == target and status["update"]["transaction"] is None
    assert status["update"]["last"]["result"] == "applied"
    page = scrape(port)
    assert value(page, 'hyos_updates_total{result="applied"}') == 1
    assert value(page, f'hyos_server_game_version_info{{version="{target}"}}') == 1
    assert value(page, "hyos_update_available") == 0


def test_a_rollback_that_fails_leaves_the_server_stopped_and_says_how_to_restore(
    small_disk_stack: Stack,
) -> None:
    """A migration that fills the disk with its own files (not HyOS's download, which the
    rollback may discard): restoring the snapshot beside the world finds no space, so the
    rollback fails. The server stays stopped (no crash loop), `status` says needs
    attention with the snapshot and the command; the operator frees the space, runs that
    command, and closes it with `update --resolved`."""
    stack = small_disk_stack
    stack.up()
    target = "2026.08.01-fills"
    _seed(stack, target, {"migrate": True, "migrate_pad_mb": 100})
    result = stack.run("update", "--version", target, "--now", timeout=400)
    assert result.returncode == 1 and "its rollback too" in result.stdout, result.stdout
    assert "backup restore" in result.stdout
    assert not _running(stack)
    status = json.loads(stack.run("status", "--json").stdout)["update"]
    attention = status["needs_attention"]
    snapshot = attention["snapshot"]
    assert attention["restore"] == f"hyos-supervisor backup restore {snapshot[:8]} --now"
    assert "rollback failed" in attention["reason"]
    text = stack.run("status").stdout
    assert "update NEEDS ATTENTION" in text and snapshot[:8] in text
    # Nothing starts the server meanwhile, and no other update begins.
    again = stack.run("update", "--version", "2026.08.02-other", "--now")
    assert again.returncode == 1 and "needs attention" in again.stderr
    assert not _running(stack)
    # The operator: frees the space, restores the snapshot, closes the matter.
    pad = Path(stack.env["HYOS_DATA"]) / "Server/universe/migration.pad"
    pad.unlink()
    restored = stack.run("backup", "restore", snapshot[:8], "--now", timeout=400)
    assert restored.returncode == 0, (restored.stdout, restored.stderr)
    assert _running(stack) and _version(stack) == OLD
    assert _live_world(stack) == _snapshot_world(stack, snapshot)
    resolved = stack.run("update", "--resolved")
    assert resolved.returncode == 0, resolved.stderr
    assert "needs_attention" not in json.loads(stack.run("status", "--json").stdout)["update"]


def test_an_update_window_applies_the_available_version_and_skips_a_bad_one(
    ustack: Stack, udaemon: DaemonFactory
) -> None:
    """`[update] window` (here every minute): at the window the daemon finds the newer
    version in HyOS's version.json and runs the drained transaction; a version marked bad
    is not tried again at the next window."""
    d = udaemon(HYOS_RECONCILE_INTERVAL_S="5", HYOS_UPDATE__WINDOW="* * * * *")
    target = "2026.09.01-window"
    _seed(ustack, target, {"boot": "crash"})
    assert ustack.run("restart", "server", "--now").returncode == 0  # version.json learns it
    poll(lambda: _phase(ustack) in ENDED, 200, "the window's update ended")
    last = _journal(ustack)["record"]["last"]
    assert last["source"] == "window" and last["result"] == "rolled_back", last["reason"]
    d.wait_healthy(60, roles=("server",))
    assert _version(ustack) == OLD
    # The next window: the bad version is skipped (logged), nothing stopped.
    started = docker("inspect", "-f", "{{.State.StartedAt}}", ustack.container("server")).stdout
    d.wait_log("no update", timeout=90, source="window")
    assert _journal(ustack)["record"]["counts"] == {"rolled_back": 1}
    after = docker("inspect", "-f", "{{.State.StartedAt}}", ustack.container("server")).stdout
    assert after == started
