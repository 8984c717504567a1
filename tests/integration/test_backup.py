"""Backups on the real engine with a real restic repository (issue 25): the verbs through
the CLI against a running stand-in stack, the helper's hardening as `docker inspect` sees
it, `mode = "stop"`, the faults (each ends with one line and the server running), and the
key that outlives `down --volumes`.

Builds its own supervisor image under its own tag (hyos-supervisor:backup) once per run;
the stand-in workload images are built only when missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO, docker
from tests.integration.conftest import Stack, base_env, daemons_for, own_supervisor_image
from tests.integration.test_hyos_server import replica_image
from tests.standin import remove_stack_objects
from tests.upstream.replica import injected_tokens, replica_env

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("backup")]

__all__ = ["replica_image"]  # a fixture, imported for the replica test

IMAGE = "hyos-supervisor:backup"
PASSWORD = "integration-repository-password-42"


@pytest.fixture(scope="session")
def backup_image() -> None:
    own_supervisor_image(IMAGE)


@pytest.fixture
def repo_dir() -> Iterator[Path]:
    """A host directory repository, owned by the workload's uid (as an operator makes it)."""
    path = Path(tempfile.mkdtemp(prefix="hyos-restic-"))
    os.chown(path, 568, 568)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def bstack(backup_image: None, repo_dir: Path) -> Iterator[Stack]:
    name = f"b{uuid.uuid4().hex[:10]}"
    state = Path(tempfile.mkdtemp(prefix="hs-"))
    env = base_env(name, state / "state")
    env.update(
        HYOS_HELPER_IMAGE=IMAGE,
        HYOS_BACKUP__REPOSITORY=str(repo_dir),
        HYOS_BACKUP__PASSWORD=PASSWORD,
    )
    yield Stack(name, env)
    remove_stack_objects(name)
    shutil.rmtree(state, ignore_errors=True)


def _world(stack: Stack, megabytes: int = 1) -> None:
    """A small world in HyOS's layout, written as the server's user."""
    script = (
        "mkdir -p /data/universe/worlds/default/chunks /data/Server /data/mods && "
        f"head -c {megabytes * 1024 * 1024} /dev/urandom > /data/universe/worlds/default/chunks/r.0.0 && "
        "echo '{\"seed\": 42}' > /data/universe/worlds/default/config.json && "
        "echo 'v1' > /data/Server/version.txt && "
        "echo '2026.01.15-abc123' > /data/.version"
    )
    docker("exec", stack.container("server"), "sh", "-c", script)


def _running(stack: Stack) -> bool:
    out = docker("inspect", "-f", "{{.State.Running}}", stack.container("server"), check=False)
    return out.stdout.strip() == "true"


def _one_line(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [
        line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")
    ]
    assert len(lines) == 1, result.stderr
    assert words in lines[0], lines[0]


def _list(stack: Stack, **env: str) -> list[dict[str, Any]]:
    result = stack.run("backup", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


CREDENTIAL = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def test_create_list_verify_prune_forget_on_a_running_stack(bstack: Stack) -> None:
    # Backend credentials (ignored by a local repository) must not show in the helper.
    bstack.env["HYOS_BACKUP__CREDENTIALS"] = json.dumps({"AWS_SECRET_ACCESS_KEY": CREDENTIAL})
    bstack.up()
    _world(bstack)
    seen: dict[str, Any] = {}

    def watch() -> None:
        """The live helper as the engine reports it (it exists only during the backup)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            out = docker("inspect", bstack.container("backup"), check=False)
            if out.returncode == 0:
                seen.update(json.loads(out.stdout)[0])
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    began = time.monotonic()
    made = bstack.run("backup", "create", "--tag", "first", timeout=300)
    first_s = time.monotonic() - began
    watcher.join()
    assert made.returncode == 0, made.stderr
    assert "verified" in made.stdout and "NOT verified" not in made.stdout, made.stdout
    assert _running(bstack)
    # The stand-in server has no REST API: the snapshot is taken, marked unquiesced.
    assert "unquiesced" in made.stdout

    assert seen, "the helper container was never seen"
    config, host = seen["Config"], seen["HostConfig"]
    assert config["User"] == "568:568"
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert host["NetworkMode"] == "none"
    assert host["Memory"] > 0 and host["PidsLimit"] > 0
    data = next(m for m in seen["Mounts"] if m["Destination"] == "/data")
    assert data["RW"] is False
    assert PASSWORD not in json.dumps(seen) and CREDENTIAL not in json.dumps(seen)
    assert CREDENTIAL not in made.stdout + made.stderr

    rows = _list(bstack)
    assert len(rows) == 1
    row = rows[0]
    assert {"hyos", "first", "unquiesced", "mode:save"} <= set(row["tags"])
    assert row["files"] >= 3 and row["size"] >= 1024 * 1024 and row["verified"] is True
    assert row["host"] == bstack.name
    # The game version HyOS's `.version` names, kept as a tag in the repository itself.
    assert row["game_version"] == "2026.01.15-abc123"
    assert "version:2026.01.15-abc123" in row["tags"]
    assert "2026.01.15-abc123" in bstack.run("backup", "list").stdout

    status = bstack.run("status")
    assert "backup: last ok" in status.stdout and "verified)" in status.stdout, status.stdout
    shown = json.loads(bstack.run("status", "--json").stdout)["backup"]
    assert shown["files"] == row["files"] and shown["last_result"] == "ok"

    assert bstack.run("backup", "verify", "latest").returncode == 0
    everything = bstack.run("backup", "verify", "--all", timeout=300)
    assert everything.returncode == 0, everything.stderr

    # An incremental backup after a small change writes little.
    docker("exec", bstack.container("server"), "sh", "-c", "echo more >> /data/Server/version.txt")
    began = time.monotonic()
    again = bstack.run("backup", "create", "--no-prune", timeout=300)
    second_s = time.monotonic() - began
    assert again.returncode == 0, again.stderr
    print(f"\nfirst backup {first_s:.1f} s, incremental {second_s:.1f} s: {again.stdout.strip()}")
    assert len(_list(bstack)) == 2

    keep_one = {
        "HYOS_BACKUP__KEEP_LAST": "1",
        "HYOS_BACKUP__KEEP_HOURLY": "0",
        "HYOS_BACKUP__KEEP_DAILY": "0",
        "HYOS_BACKUP__KEEP_WEEKLY": "0",
        "HYOS_BACKUP__KEEP_MONTHLY": "0",
    }
    dry = bstack.run("backup", "prune", "--dry-run", env=keep_one)
    assert dry.returncode == 0, dry.stderr
    assert "1 kept, 1 to forget" in dry.stdout, dry.stdout
    assert len(_list(bstack)) == 2  # a dry run forgets nothing

    newest = _list(bstack)[0]["short_id"]
    forgot = bstack.run("backup", "forget", newest)
    assert forgot.returncode == 0, forgot.stderr
    assert [r["short_id"] for r in _list(bstack)] != [newest]
    assert len(_list(bstack)) == 1
    _one_line(bstack.run("backup", "forget", "ffffffff"), "no backup 'ffffffff'")
    assert _running(bstack)


def test_stop_mode_stops_snapshots_and_starts_the_server(bstack: Stack) -> None:
    bstack.up()
    _world(bstack)
    before = docker("inspect", "-f", "{{.State.StartedAt}}", bstack.container("server")).stdout
    # --now: the stand-in server has no REST API to count players with (the drain would
    # wait its max_wait for one; test_drain.py covers the drain itself).
    made = bstack.run("backup", "create", "--now", timeout=300, HYOS_BACKUP__MODE="stop")
    assert made.returncode == 0, made.stderr
    assert "stopped" in made.stdout and "mode:stop" in made.stdout
    assert _running(bstack)
    after = docker("inspect", "-f", "{{.State.StartedAt}}", bstack.container("server")).stdout
    assert after != before  # it was stopped and started again
    # Checked too: in a second helper, after the server was started again.
    assert [row["verified"] for row in _list(bstack)] == [True]


def test_under_a_running_daemon_a_stop_backup_and_a_restore_are_not_undone(
    bstack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The `backup` verbs stop the server behind the daemon's back unless they tell it:
    its worker took the stop for a crash and started the server in the middle of the
    snapshot, or of a restore's swap. They mark the stop with the daemon first (as the
    dashboard's Stop does); the daemon leaves the server stopped and restarts nothing."""
    with daemons_for(bstack, tmp_path, request) as daemons:
        daemon = daemons(timeout=90)
        _world(bstack)
        server = bstack.container("server")
        made = bstack.run("backup", "create", "--now", timeout=300, HYOS_BACKUP__MODE="stop")
        assert made.returncode == 0, made.stderr
        assert "stopped" in made.stdout
        daemon.wait_lines("`backup create` stops the server; it stays stopped until started again")
        exits = daemon.wait_lines("exited", service="server")
        assert [(e["decision"], e["exit_kind"]) for e in exits] == [("none", "clean")], exits
        assert _running(bstack)
        daemon.wait_healthy(90)

        stamp = docker("exec", server, "cat", "/data/universe/worlds/default/config.json")
        docker(
            "exec", server, "sh", "-c", "echo changed > /data/universe/worlds/default/config.json"
        )
        restored = bstack.run("backup", "restore", "latest", "--now", timeout=600)
        assert restored.returncode == 0, restored.stderr
        daemon.wait_lines("`backup restore` stops the server; it stays stopped until started again")
        after = docker("exec", server, "cat", "/data/universe/worlds/default/config.json")
        assert after.stdout == stamp.stdout
        daemon.wait_healthy(90)
        exits = daemon.lines("exited", service="server")
        assert all((e["decision"], e["exit_kind"]) == ("none", "clean") for e in exits), exits
        assert daemon.lines("restart issued", service="server") == []
        view = daemon.view()
        assert view is not None
        assert view["services"]["server"]["totals"]["crashes"] == 0, view["services"]["server"]


def test_faults_end_in_one_line_and_the_server_running(bstack: Stack, repo_dir: Path) -> None:
    bstack.up()
    _world(bstack)
    assert bstack.run("backup", "create", "--no-prune", timeout=300).returncode == 0

    # A wrong password.
    wrong = bstack.run("backup", "create", HYOS_BACKUP__PASSWORD="not-the-right-password-123")
    _one_line(wrong, "wrong password or no key found")
    assert "not-the-right-password-123" not in wrong.stderr + wrong.stdout
    assert _running(bstack)

    # The helper image missing.
    missing = bstack.run("backup", "create", HYOS_HELPER_IMAGE="hyos-supervisor:no-such-tag")
    _one_line(missing, "the helper image hyos-supervisor:no-such-tag is missing")

    # A repository the helper cannot write (read-only for its uid).
    readonly = Path(tempfile.mkdtemp(prefix="hyos-restic-ro-"))
    try:
        os.chmod(readonly, 0o555)
        ro = bstack.run("backup", "create", HYOS_BACKUP__REPOSITORY=str(readonly))
        _one_line(ro, "init failed")
        assert _running(bstack)
    finally:
        shutil.rmtree(readonly, ignore_errors=True)

    # A full repository disk: a 2 MiB tmpfs, a 4 MiB world.
    full = Path(tempfile.mkdtemp(prefix="hyos-restic-full-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,uid=568,gid=568,mode=0700", "tmpfs", str(full)],
        check=True,
    )
    try:
        _world(bstack, megabytes=4)
        disk = bstack.run("backup", "create", HYOS_BACKUP__REPOSITORY=str(full), timeout=300)
        _one_line(disk, "failed")
        assert "no space left on device" in disk.stderr.lower(), disk.stderr
        assert _running(bstack)
    finally:
        subprocess.run(["umount", str(full)], check=False)
        shutil.rmtree(full, ignore_errors=True)

    # A second request while a backup runs: refused in one line.
    busy = docker(
        "run", "-d", "--name", bstack.container("backup"),
        "--label", "io.hyos.managed=true", "--label", f"io.hyos.stack={bstack.name}",
        "--label", "io.hyos.role=backup", "--entrypoint", "sleep", IMAGE, "60",
    ).stdout.strip()  # fmt: skip
    try:
        _one_line(bstack.run("backup", "create"), "is running")
        # `up` leaves a running backup alone.
        bstack.up()
        assert docker("inspect", "-f", "{{.State.Running}}", busy).stdout.strip() == "true"
    finally:
        docker("rm", "-f", busy, check=False)
    assert _running(bstack)
    # What was there is still there and whole.
    assert bstack.run("backup", "verify", "--all", timeout=300).returncode == 0
    assert len(_list(bstack)) == 1


def _locked(repo_dir: Path) -> bool:
    """A lock restic has finished writing (its local backend makes the file read-only
    then; one killed half-way is unreadable, and restic ignores it)."""
    files = list(Path(repo_dir, "locks").glob("*"))
    return any(f.stat().st_size > 0 and not f.stat().st_mode & 0o222 for f in files)


def _poll(what: str, check: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.02)


def test_a_helper_killed_mid_backup_leaves_no_lock_that_blocks_the_next(
    bstack: Stack, repo_dir: Path
) -> None:
    """The helper container killed while restic holds its lock (what an OOM kill or a host
    crash does): the next backup removes the dead helper's lock, verifies, prunes."""
    bstack.up()
    _world(bstack, megabytes=300)
    command = [sys.executable, "-m", "supervisor", "backup", "create", "--no-prune"]
    proc = subprocess.Popen(
        command, env=bstack.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _poll("restic lock", lambda: _locked(repo_dir))
        docker("kill", bstack.container("backup"))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert _running(bstack)
    assert _locked(repo_dir)  # the dead helper's lock is still there

    made = bstack.run("backup", "create", timeout=300)  # prunes: an exclusive lock
    assert made.returncode == 0, made.stderr
    assert "verified" in made.stdout and "NOT verified" not in made.stdout, made.stdout
    assert not _locked(repo_dir)
    assert bstack.run("backup", "verify", "--all", timeout=300).returncode == 0
    assert _running(bstack)


def test_a_supervisor_killed_mid_backup_leaves_the_server_running_and_the_repository_whole(
    bstack: Stack, repo_dir: Path
) -> None:
    """SIGKILL of the verb while its helper runs: the helper ends its job on its own; the
    next backup waits for it (one line), then runs; nothing in the repository is broken."""
    bstack.up()
    _world(bstack, megabytes=300)
    command = [sys.executable, "-m", "supervisor", "backup", "create", "--no-prune"]
    proc = subprocess.Popen(
        command, env=bstack.env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _poll("restic lock", lambda: _locked(repo_dir))
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _running(bstack)
    helper = bstack.container("backup")
    if docker("inspect", "-f", "{{.State.Running}}", helper, check=False).stdout.strip() == "true":
        _one_line(bstack.run("backup", "create"), "is running")
    _poll(
        "end of the orphaned helper",
        lambda: (
            docker("inspect", "-f", "{{.State.Running}}", helper, check=False).stdout.strip()
            != "true"
        ),
        timeout=300,
    )
    made = bstack.run("backup", "create", timeout=300)
    assert made.returncode == 0, made.stderr
    assert bstack.run("backup", "verify", "--all", timeout=300).returncode == 0
    assert len(_list(bstack)) == 2  # the orphan finished its snapshot; this one made another
    assert _running(bstack)


def _replica_api_journal(stack: Stack) -> list[dict[str, Any]]:
    out = docker(
        "exec", stack.container("server"), "sh", "-c",
        "cat /data/.test/api-journal.jsonl 2>/dev/null || true",
    ).stdout  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_a_save_the_server_refuses_marks_the_snapshot_and_leaves_it_running(
    bstack: Stack, replica_image: None
) -> None:
    """HyOS's REST plugin answering `POST /server/save` with 500 (the replica's `save-fail`
    control): the snapshot is still taken, tagged `unquiesced`, and the server runs on;
    with the save answered, the snapshot is `quiesced` and the save came first."""
    bstack.env.update(replica_env(injected_tokens()))
    bstack.up()
    assert _healthy(bstack, 120)
    docker("exec", "--user", "568:568", bstack.container("server"), "sh", "-c",
           "mkdir -p /data/.test && touch /data/.test/save-fail")  # fmt: skip
    refused = bstack.run("backup", "create", "--no-prune", timeout=300)
    assert refused.returncode == 0, refused.stderr
    assert "unquiesced" in refused.stdout, refused.stdout
    saves = [e for e in _replica_api_journal(bstack) if e["path"] == "/server/save"]
    assert [e["status"] for e in saves] == [500]
    assert _running(bstack) and _healthy(bstack)

    docker("exec", bstack.container("server"), "rm", "/data/.test/save-fail")
    saved = bstack.run("backup", "create", "--no-prune", timeout=300)
    assert saved.returncode == 0, saved.stderr
    assert "quiesced" in saved.stdout and "unquiesced" not in saved.stdout, saved.stdout
    saves = [e for e in _replica_api_journal(bstack) if e["path"] == "/server/save"]
    assert [e["status"] for e in saves] == [500, 200]
    rows = _list(bstack)
    assert [("unquiesced" in r["tags"], "quiesced" in r["tags"]) for r in rows] == [
        (False, True),
        (True, False),
    ]  # newest first
    assert _running(bstack)


def test_the_generated_key_outlives_down_volumes_and_opens_the_repository_elsewhere(
    bstack: Stack, tmp_path: Path
) -> None:
    env = {k: v for k, v in bstack.env.items() if not k.startswith("HYOS_BACKUP__")}
    stack = Stack(bstack.name, env)  # the default repository: the volume <stack>-backups
    stack.up()
    _world(stack)
    made = stack.run("backup", "create", timeout=300)
    assert made.returncode == 0, made.stderr
    key = stack.run("backup", "key")
    assert key.returncode == 0, key.stderr
    fields = dict(line.split(":", 1) for line in key.stdout.splitlines()[:3] if ":" in line)
    password = fields["password"].strip()
    assert fields["repository"].strip() == f"{stack.name}-backups (volume)"
    assert password not in json.dumps(docker("volume", "inspect", f"{stack.name}-backups").stdout)
    config = stack.run("config")
    assert password not in config.stdout + config.stderr

    down = stack.run("down", "--volumes")
    assert down.returncode == 0, down.stderr
    assert f"removed volume {stack.name}-data" in down.stdout
    assert docker("volume", "inspect", f"{stack.name}-backups", check=False).returncode == 0
    assert (Path(env["HYOS_STATE_DIR"]) / f"{stack.name}.backup-key").exists()

    # Another stack, on "another machine": only the repository and the key.
    key_file = tmp_path / "restic.key"
    key_file.write_text(password + "\n")
    other_name = f"b{uuid.uuid4().hex[:10]}"
    other_state = Path(tempfile.mkdtemp(prefix="hs-"))
    other = Stack(other_name, base_env(other_name, other_state / "state"))
    other.env.update(
        HYOS_HELPER_IMAGE=IMAGE,
        HYOS_BACKUP__REPOSITORY=f"{stack.name}-backups",
        HYOS_BACKUP__PASSWORD_FILE=str(key_file),
    )
    try:
        rows = _list(other)
        assert len(rows) == 1 and rows[0]["host"] == stack.name
        assert other.run("backup", "verify", rows[0]["short_id"]).returncode == 0
    finally:
        remove_stack_objects(other_name)
        shutil.rmtree(other_state, ignore_errors=True)


# --- restore -------------------------------------------------------------------------


def _world_hash(stack: Stack) -> str:
    """The world's files and contents (universe/, Server/, mods/), as one hash."""
    script = (
        "cd /data && find universe Server mods -type f 2>/dev/null | sort | "
        'while read -r f; do echo "$f $(md5sum < "$f")"; done | md5sum'
    )
    return docker("exec", stack.container("server"), "sh", "-c", script).stdout.split()[0]


def _healthy(stack: Stack, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = docker(
            "inspect", "-f", "{{.State.Health.Status}}", stack.container("server"), check=False
        )
        if out.stdout.strip() == "healthy":
            return True
        time.sleep(0.2)
    return False


def _write(stack: Stack, script: str) -> None:
    docker("exec", stack.container("server"), "sh", "-c", script)


def test_restore_puts_the_world_back_and_keeps_the_one_it_replaced(bstack: Stack) -> None:
    bstack.up()
    _world(bstack)
    v1 = _world_hash(bstack)
    assert bstack.run("backup", "create", "--tag", "v1", timeout=300).returncode == 0
    v1_id = _list(bstack)[0]["short_id"]
    _write(bstack, "echo v2 > /data/Server/version.txt; echo new > /data/universe/new-file")
    v2 = _world_hash(bstack)
    assert v2 != v1

    began = time.monotonic()
    done = bstack.run("backup", "restore", v1_id, "--now", timeout=600)
    print(f"\nrestore: {time.monotonic() - began:.1f} s: {done.stdout.strip()}")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert _running(bstack) and _healthy(bstack)
    assert _world_hash(bstack) == v1
    rows = _list(bstack)
    # The world it replaced is a backup of its own; its pin was released on success.
    replaced = [r for r in rows if r["short_id"] != v1_id]
    assert len(replaced) == 1 and "pin:pre-restore" not in replaced[0]["tags"]
    # The set-aside copy and the staging are gone.
    out = docker("exec", bstack.container("server"), "ls", "-a", "/data").stdout.split()
    assert ".hyos-restore" not in out
    # And the replaced world can be restored back.
    back = bstack.run("backup", "restore", replaced[0]["short_id"], "--now", timeout=600)
    assert back.returncode == 0, back.stderr
    assert _world_hash(bstack) == v2


def test_a_restore_that_fails_the_health_gate_rolls_back(bstack: Stack) -> None:
    bstack.up()
    _world(bstack)
    # A backup whose world makes the server unhealthy.
    _write(bstack, "mkdir -p /data/control && touch /data/control/unhealthy")
    assert bstack.run("backup", "create", "--tag", "bad", timeout=300).returncode == 0
    bad = _list(bstack)[0]["short_id"]
    _write(bstack, "rm -f /data/control/unhealthy; echo good > /data/Server/version.txt")
    assert _healthy(bstack)
    good = _world_hash(bstack)

    failed = bstack.run("backup", "restore", bad, "--now", timeout=600)
    _one_line(failed, "the previous world is back and the server running")
    assert _running(bstack) and _healthy(bstack)
    assert _world_hash(bstack) == good
    out = docker("exec", bstack.container("server"), "ls", "/data/control").stdout.split()
    assert "unhealthy" not in out
    assert not (Path(bstack.env["HYOS_STATE_DIR"]) / f"{bstack.name}.restore.json").exists()


def test_a_supervisor_killed_during_a_restore_is_rolled_back_by_the_next_verb(
    bstack: Stack,
) -> None:
    bstack.up()
    _world(bstack)
    assert bstack.run("backup", "create", timeout=300).returncode == 0
    old = _list(bstack)[0]["short_id"]
    _write(bstack, "echo current > /data/Server/version.txt")
    current = _world_hash(bstack)
    journal = Path(bstack.env["HYOS_STATE_DIR"]) / f"{bstack.name}.restore.json"
    command = [
        sys.executable, "-m", "supervisor", "--log-format", "json",
        "backup", "restore", old, "--now",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, env=bstack.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        phase = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                phase = json.loads(journal.read_text()).get("phase")
            except (OSError, ValueError):
                phase = None
            if phase in ("swapping", "started"):
                break
            time.sleep(0.01)
        assert phase in ("swapping", "started"), phase
        proc.kill()  # SIGKILL: no finally, no rollback
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # The next verb finishes the job: rolls back and starts the server on its world.
    recovered = bstack.run("backup", "list", timeout=300)
    assert recovered.returncode == 0, recovered.stderr
    assert "an interrupted restore was rolled back" in recovered.stdout
    assert _running(bstack) and _healthy(bstack)
    assert _world_hash(bstack) == current
    assert not journal.exists()
