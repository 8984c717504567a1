"""The backup helper without Docker: its create body (hardening, no secret in it), the
requests each verb makes, the answers parsed, the manifest comparison, and the shell's
decisions (save first, unquiesced when the API is down, the server started again after a
`stop` backup whatever happened, one backup at a time) on the fake engine."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from entrypoint import resticjob
from supervisor import policy
from supervisor.backup import BackupError, Backups
from supervisor.backupjob import (
    create_request,
    find,
    parse_answer,
    parse_snapshots,
    parse_time,
    request,
    verify_request,
)
from supervisor.dockertypes import ContainerState, ownership_labels
from supervisor.serverapi import ApiError, Failure, ServerStatus
from supervisor.settings import Settings, load_settings
from supervisor.stack import Mount
from tests.fakeengine import FakeEngine

PASSWORD = "a-repository-password-0123456789"


def _spec(**overrides: Any) -> policy.BackupJobSpec:
    values: dict[str, Any] = dict(
        stack="s",
        image="hyos-supervisor:backup",
        uid=568,
        gid=568,
        data=Mount("volume", "s-data", "/data"),
        repository=Mount("volume", "s-backups", "/repo"),
    )
    values.update(overrides)
    return policy.BackupJobSpec(**values)


def test_the_helper_is_hardened_and_the_world_read_only_for_a_backup() -> None:
    body = policy.build_backup_body(_spec())
    host = body["HostConfig"]
    assert body["User"] == "568:568"
    assert host["CapDrop"] == ["ALL"] and "CapAdd" not in host
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert host["Memory"] == host["MemorySwap"] == policy.BACKUP_MEMORY
    assert host["PidsLimit"] == policy.BACKUP_PIDS
    assert host["NetworkMode"] == "none"
    data, repo = host["Mounts"]
    assert data["Target"] == "/data" and data["ReadOnly"] is True
    assert repo == {"Type": "volume", "Source": "s-backups", "Target": "/repo"}
    assert body["Labels"]["io.hyos.role"] == "backup"
    assert "noexec" in host["Tmpfs"]["/tmp"] and "uid=568" in host["Tmpfs"]["/tmp"]
    # The request (and its password) arrives on stdin.
    assert body["OpenStdin"] and body["StdinOnce"] and body["Cmd"] == []
    remote = policy.build_backup_body(_spec(repository=None, network=True, data_writable=True))
    assert remote["HostConfig"]["NetworkMode"] == "bridge"
    assert len(remote["HostConfig"]["Mounts"]) == 1
    assert remote["HostConfig"]["Mounts"][0]["ReadOnly"] is False  # a restore only


def test_the_password_is_only_in_the_stdin_request() -> None:
    body = policy.build_backup_body(_spec())
    assert PASSWORD not in json.dumps(body)
    steps = create_request("s", ["mode:save", "quiesced"])
    assert PASSWORD not in json.dumps(steps)
    sent = json.loads(request(PASSWORD, "/repo", steps))
    assert sent["password"] == PASSWORD and sent["steps"] == steps


def test_a_backup_request_manifests_snapshots_compares_and_checks() -> None:
    steps = create_request("s", ["mode:save", "quiesced"])
    assert [s["op"] for s in steps] == ["init", "manifest", "restic", "restic", "compare"]
    assert steps[2]["args"] == [
        "backup", "--json", "--host", "s", "--tag", "hyos", "--exclude", "/data/.hyos-restore",
        "--tag", "mode:save",
        "--tag", "quiesced", "/data",
    ]  # fmt: skip
    # The check runs beside the comparison (both only read).
    assert steps[3] == {
        "op": "restic", "args": ["check", "--read-data-subset=10%"], "background": True
    }  # fmt: skip
    assert verify_request(None) == [{"op": "restic", "args": ["check", "--read-data"]}]
    one = verify_request("abc")
    assert one[1]["args"][:2] == ["dump", "--archive"] and one[1]["discard"] is True


def test_answers_and_snapshots_are_parsed() -> None:
    steps = create_request("s", [])
    out = "\n".join(
        [
            "not json",
            json.dumps({"step": 0, "op": "init", "code": 0, "created": True}),
            json.dumps({"step": 1, "op": "manifest", "code": 0, "files": 3}),
            json.dumps({"step": 2, "op": "restic", "code": 0, "json": {"snapshot_id": "abcd1234"}}),
            json.dumps({"step": 4, "op": "compare", "code": 1, "missing": ["/data/x"]}),
            json.dumps({"step": 3, "op": "restic", "code": 0}),
        ]
    )
    answer = parse_answer(1, out, "", steps)
    assert not answer.ok
    backup = answer.restic("backup")
    assert backup is not None and backup.data["json"]["snapshot_id"] == "abcd1234"
    assert (
        answer.failure()
        == "compare failed (exit 1): 1 files missing from the snapshot, 0 of another size"
    )
    failed = parse_answer(
        1,
        json.dumps(
            {
                "step": 0,
                "op": "init",
                "code": 1,
                "stderr": "Fatal: wrong password or no key found\n",
            }
        ),
        "",
        steps,
    )
    assert failed.failure() == "init failed (exit 1): Fatal: wrong password or no key found"
    assert (
        parse_answer(125, "", "oci runtime error\n", steps).failure().endswith("oci runtime error")
    )
    listed = parse_snapshots(
        [
            {"id": "aa" * 32, "short_id": "aaaaaaaa", "time": "2026-12-07T04:11:02.123456789+00:00",
             "tags": ["hyos"], "hostname": "s", "paths": ["/data"]},
            {"id": "bb" * 32, "time": "2026-12-07T05:00:00Z", "hostname": "s"},
            {"id": "cc" * 32, "time": "2026-12-07T06:00:00Z", "hostname": "another-stack"},
        ],
        host="s",
    )  # fmt: skip
    assert [s.short_id for s in listed] == ["bbbbbbbb", "aaaaaaaa"]
    assert parse_time("2026-12-07T04:11:02.123456789+00:00") == pytest.approx(1796616662.123456)
    assert find(listed, "latest") == listed[0]
    assert find(listed, "aaaa") == listed[1] and find(listed, "zz") is None


def test_the_manifest_comparison_tells_a_changed_file_from_a_lost_one(tmp_path: Path) -> None:
    world = tmp_path / "data"
    (world / "universe").mkdir(parents=True)
    (world / "universe" / "a.bin").write_bytes(b"a" * 10)
    (world / "universe" / "b.bin").write_bytes(b"b" * 20)
    (world / "link").symlink_to("/etc/passwd")
    manifest = resticjob.walk(str(world))
    assert sorted(Path(p).name for p in manifest) == ["a.bin", "b.bin"]  # no symlink
    a, b = str(world / "universe" / "a.bin"), str(world / "universe" / "b.bin")
    same = resticjob.compare(manifest, {a: 10, b: 20}, started_ns=0)
    assert same["ok"] and same["files"] == 2 and same["bytes"] == 30
    lost = resticjob.compare(manifest, {a: 10}, started_ns=2**62)
    assert not lost["ok"] and lost["missing"] == [b]
    # Written again after the backup began (the server saves on its own too): not a loss.
    import os
    import time

    os.utime(b, ns=(time.time_ns(), time.time_ns()))
    changed = resticjob.compare(manifest, {a: 10, b: 21}, started_ns=0)
    assert changed["ok"] and changed["changed"] == 1


# --- the shell on the fake engine ----------------------------------------------------


class JobEngine(FakeEngine):
    """run_once answers like the helper would; each request is kept."""

    def __init__(self, answers: list[tuple[int, list[dict[str, Any]]]]) -> None:
        super().__init__()
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[Mapping[str, Any]] = []

    async def run_once(
        self, name: str, body: Mapping[str, Any], stdin: bytes | None, timeout: float
    ) -> tuple[int, str, str]:
        self._record("run_once", name)
        assert stdin is not None
        self.requests.append(json.loads(stdin))
        self.bodies.append(body)
        code, lines = self.answers.pop(0)
        return code, "\n".join(json.dumps(line) for line in lines), ""


def _ok_backup(check: bool = True) -> tuple[int, list[dict[str, Any]]]:
    """The helper's lines for create_request's steps: the check (step 3, run beside the
    comparison) answers last; stop mode's first job has no check."""
    summary = {"snapshot_id": "abcd1234", "total_files_processed": 3,
               "total_bytes_processed": 300, "data_added": 120}  # fmt: skip
    compare = {"step": 3 + check, "op": "compare", "code": 0, "ok": True, "files": 3}
    return 0, [
        {"step": 0, "op": "init", "code": 0},
        {"step": 1, "op": "manifest", "code": 0},
        {"step": 2, "op": "restic", "code": 0, "json": summary},
        compare,
        *([{"step": 3, "op": "restic", "code": 0}] if check else []),
    ]


def _ok_check() -> tuple[int, list[dict[str, Any]]]:
    return 0, [{"step": 0, "op": "restic", "code": 0}]


def _settings(tmp_path: Path, **backup: Any) -> Settings:
    return load_settings(stack="s", state_dir=tmp_path, backup={"password": PASSWORD, **backup})


def _server(engine: FakeEngine) -> str:
    labels = {**ownership_labels("s"), "io.hyos.role": "server", "io.hyos.spec-hash": "x"}
    return engine.add_container(
        "s-server", labels=labels, state=ContainerState(status="running", running=True)
    ).id


class Api:
    def __init__(self, failure: Failure | None = None, players: int = 0) -> None:
        self.failure = failure
        self.saves = 0
        self.players = players
        self.calls: list[str] = []

    async def save(self) -> None:
        self.calls.append("save")
        self.saves += 1
        if self.failure is not None:
            raise ApiError(self.failure, "as told")

    async def status(self) -> ServerStatus:
        self.calls.append("status")
        return ServerStatus(True, self.players, 10, "s")

    async def broadcast(self, message: str) -> None:
        self.calls.append("broadcast")


def test_save_mode_saves_first_and_an_unanswered_api_marks_the_snapshot(tmp_path: Path) -> None:
    for failure, tag in ((None, "quiesced"), (Failure.SERVER_ERROR, "unquiesced"),
                         (Failure.UNREACHABLE, "unquiesced")):  # fmt: skip
        engine = JobEngine([_ok_backup()])
        _server(engine)
        api = Api(failure)
        backups = Backups(engine, _settings(tmp_path), api=lambda _id, a=api: a)  # type: ignore[misc]
        made = anyio.run(lambda b=backups: b.create(prune=False))  # type: ignore[misc]
        assert api.saves == 1 and tag in made.tags and made.verified
        sent = engine.requests[0]
        assert sent["password"] == PASSWORD
        assert tag in sent["steps"][2]["args"]
        assert PASSWORD not in json.dumps(engine.bodies[0])
    records = json.loads((tmp_path / "s.backups.json").read_text())
    assert records["last_ok"]["files"] == 3 and records["snapshots"]["abcd1234"]["verified"]


def test_stop_mode_starts_the_server_again_even_when_the_backup_fails(tmp_path: Path) -> None:
    engine = JobEngine([(1, [{"step": 0, "op": "init", "code": 1, "stderr": "Fatal: disk full"}])])
    server = _server(engine)
    backups = Backups(engine, _settings(tmp_path, mode="stop"))
    with pytest.raises(BackupError, match=r"init failed \(exit 1\): Fatal: disk full"):
        anyio.run(lambda: backups.create(now=True))
    assert [verb for verb, ref in engine.calls if ref == server] == ["stop", "start"]
    assert engine.containers[server].state.running
    records = json.loads((tmp_path / "s.backups.json").read_text())
    assert records["last"]["ok"] is False and "last_ok" not in records


def test_stop_mode_drains_marks_the_stop_with_the_daemon_then_stops(tmp_path: Path) -> None:
    """The order a supervising daemon needs: the world saved by the drain, the stop marked
    as asked for (so the daemon leaves the server stopped), then the stop, then the
    backup, then the start."""
    engine = JobEngine([_ok_backup(check=False), _ok_check()])
    server = _server(engine)
    api = Api()
    order: list[str] = []

    async def mark(container_id: str) -> None:
        order.append(f"mark {container_id}")
        order.extend(f"engine {verb}" for verb, ref in engine.calls if ref == server)

    settings = _settings(tmp_path, mode="stop")
    backups = Backups(engine, settings, api=lambda _id: api, mark_stop=mark)  # type: ignore[arg-type,return-value]
    made = anyio.run(lambda: backups.create(prune=False))
    assert api.calls == ["status", "save"]  # nobody online: acts at once, saved first
    assert order == [f"mark {server}"]  # marked before anything was stopped
    assert [verb for verb, ref in engine.calls if ref == server] == ["stop", "start"]
    assert "stopped" in made.tags
    # The check runs in a second helper, after the start: it is not downtime.
    steps = [verb for verb, ref in engine.calls if verb in ("stop", "start", "run_once")]
    assert steps == ["stop", "run_once", "start", "run_once"]
    first, later = (request["steps"] for request in engine.requests)
    assert "check" not in [s.get("args", [""])[0] for s in first]
    assert later == [{"op": "restic", "args": ["check", "--read-data-subset=10%"]}]
    assert made.verified


def test_stop_mode_a_failed_check_after_the_start_fails_the_backup(tmp_path: Path) -> None:
    failed = (1, [{"step": 0, "op": "restic", "code": 1, "stderr": "Fatal: pack 1f2e damaged"}])
    engine = JobEngine([_ok_backup(check=False), failed])
    server = _server(engine)
    backups = Backups(engine, _settings(tmp_path, mode="stop"))
    with pytest.raises(BackupError, match=r"check failed \(exit 1\): Fatal: pack 1f2e damaged"):
        anyio.run(lambda: backups.create(now=True))
    assert engine.containers[server].state.running
    records = json.loads((tmp_path / "s.backups.json").read_text())
    assert records["last"]["ok"] is False and records["last"]["verified"] is False


def test_a_daemon_that_will_not_mark_the_stop_leaves_the_server_running(tmp_path: Path) -> None:
    engine = JobEngine([_ok_backup()])
    server = _server(engine)

    async def refuse(container_id: str) -> None:
        raise BackupError("the supervisor daemon would not leave the server stopped")

    backups = Backups(engine, _settings(tmp_path, mode="stop"), mark_stop=refuse)
    with pytest.raises(BackupError, match="would not leave the server stopped"):
        anyio.run(lambda: backups.create(now=True))
    assert [verb for verb, ref in engine.calls if ref == server] == []
    assert engine.containers[server].state.running and engine.requests == []


def test_a_stopped_server_is_backed_up_as_stopped_and_not_started(tmp_path: Path) -> None:
    engine = JobEngine([_ok_backup()])
    labels = {**ownership_labels("s"), "io.hyos.role": "server", "io.hyos.spec-hash": "x"}
    server = engine.add_container("s-server", labels=labels).id
    made = anyio.run(lambda: Backups(engine, _settings(tmp_path, mode="stop")).create(prune=False))
    assert "stopped" in made.tags
    assert not [verb for verb, ref in engine.calls if ref == server and verb == "start"]


def test_one_backup_at_a_time_and_a_missing_image_is_one_line(tmp_path: Path) -> None:
    engine = JobEngine([])
    labels = {**ownership_labels("s"), "io.hyos.role": "backup"}
    engine.add_container(
        "s-backup", labels=labels, state=ContainerState(status="running", running=True)
    )
    with pytest.raises(BackupError, match="a backup or restore of stack s is running"):
        anyio.run(lambda: Backups(engine, _settings(tmp_path)).create())
    missing = JobEngine([])
    missing.images = {}
    with pytest.raises(BackupError, match=r"the helper image hyos-supervisor:0\.1\.0 is missing"):
        anyio.run(lambda: Backups(missing, _settings(tmp_path)).create())


def test_the_schedule_backs_up_when_due_and_retries_a_failure_later(tmp_path: Path) -> None:
    import logging

    from supervisor.backupschedule import RETRY_S, run_schedule
    from tests.fakeclock import FakeClock

    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    failing = (1, [{"step": 0, "op": "init", "code": 1, "stderr": "Fatal: repository locked"}])
    listing = (0, [{"step": 0, "op": "restic", "code": 0, "json": []}])
    engine = JobEngine([_ok_backup(), listing, failing, _ok_backup(), listing])
    settings = _settings(tmp_path, every="1h")
    log = logging.getLogger("test.schedule")
    anyio.run(lambda: run_schedule(engine, settings, log, clock, sleep, rounds=3))
    # The first at once (none yet), the second an hour after it, which fails; the retry
    # RETRY_S after the failure.
    assert slept == [0.0, 3600.0, RETRY_S]
    records = json.loads((tmp_path / "s.backups.json").read_text())
    assert records["last"]["ok"] is True


# --- the restore transaction ---------------------------------------------------------


def _listing() -> tuple[int, list[dict[str, Any]]]:
    snap = {"id": "ab" * 32, "short_id": "abababab", "time": "2026-12-07T04:00:00Z",
            "tags": ["hyos"], "hostname": "s", "paths": ["/data"]}  # fmt: skip
    return 0, [{"step": 0, "op": "restic", "code": 0, "json": [snap]}]


def _step(op: str, code: int = 0, stderr: str = "") -> tuple[int, list[dict[str, Any]]]:
    return code, [{"step": 0, "op": op, "code": code, "stderr": stderr}]


def _restore(
    tmp_path: Path, answers: list[tuple[int, list[dict[str, Any]]]]
) -> tuple[JobEngine, str, Any]:
    from supervisor.restore import Restore

    engine = JobEngine(answers)
    server = _server(engine)
    api = Api()
    backups = Backups(engine, _settings(tmp_path), api=lambda _id: api)  # type: ignore[arg-type,return-value]
    return engine, server, Restore(backups, hold_s=0)


def test_a_failed_swap_is_rolled_back_and_the_server_started(tmp_path: Path) -> None:
    from supervisor.restore import RestoreError

    engine, server, restore = _restore(
        tmp_path,
        [
            _listing(),  # find the snapshot
            _ok_backup(),  # the pinned pre-restore backup
            _step("restic"),  # stage
            _step("swap", 1, "swap: /data/x exists"),
            _step("rollback"),
            _step("commit"),  # clean up
        ],
    )
    with pytest.raises(RestoreError, match="the previous world is back and the server running"):
        anyio.run(lambda: restore.run("abab", now=True))
    assert [verb for verb, ref in engine.calls if ref == server] == ["stop", "start"]
    assert engine.containers[server].state.running
    ops = [r["steps"][0]["op"] for r in engine.requests]
    assert ops == ["restic", "init", "clean", "swap", "rollback", "commit"]
    assert engine.bodies[3]["HostConfig"]["Mounts"][0]["ReadOnly"] is False  # the swap writes
    assert engine.bodies[1]["HostConfig"]["Mounts"][0]["ReadOnly"] is True  # the backup does not
    assert "pin:pre-restore" in engine.requests[1]["steps"][2]["args"]
    assert not (tmp_path / "s.restore.json").exists()


def test_a_failed_rollback_leaves_the_server_stopped_and_says_where_the_world_is(
    tmp_path: Path,
) -> None:
    from supervisor.restore import RestoreError

    engine, server, restore = _restore(
        tmp_path,
        [_listing(), _ok_backup(), _step("restic"), _step("swap", 1), _step("rollback", 1)],
    )
    with pytest.raises(RestoreError, match="ROLLBACK FAILED"):
        anyio.run(lambda: restore.run("abab", now=True))
    # Never started on a half-moved world.
    assert not engine.containers[server].state.running
    journal = json.loads((tmp_path / "s.restore.json").read_text())
    assert journal["phase"] == "rollback failed"


def test_a_failed_pre_restore_backup_or_staging_changes_nothing(tmp_path: Path) -> None:
    from supervisor.restore import RestoreError

    engine, server, restore = _restore(
        tmp_path, [_listing(), _step("init", 1, "Fatal: repository is already locked")]
    )
    with pytest.raises(RestoreError, match="the pre-restore backup failed, nothing was changed"):
        anyio.run(lambda: restore.run("abab", now=True))
    engine2, server2, restore2 = _restore(
        tmp_path, [_listing(), _ok_backup(), _step("restic", 1, "Fatal: no space"), _step("commit")]
    )
    with pytest.raises(RestoreError, match="staging failed, nothing was changed"):
        anyio.run(lambda: restore2.run("abab", now=True))
    for eng, srv in ((engine, server), (engine2, server2)):
        assert not [verb for verb, ref in eng.calls if ref == srv and verb == "stop"]
    assert not (tmp_path / "s.restore.json").exists()
