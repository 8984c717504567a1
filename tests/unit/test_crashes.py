"""Crash reports' shell (supervisor/crashes.py) on the fake engine: a report holds no
secret the supervisor generated or was given (generated files, operator values, HyOS's
tokens, notification URLs and what is inside them, backup credentials), is 0600 in a 0700
directory, is bounded in time, withholds the logs when it cannot know the secrets, and
the worker's restart is never held up by it."""

from __future__ import annotations

import json
import logging
import stat
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import crashes, secretspec
from supervisor.crashes import CrashReporter, given_secrets, list_reports, load_report
from supervisor.crashreport import CrashFacts
from supervisor.dockertypes import EngineError
from supervisor.logs import bind
from supervisor.notify import Notifier
from supervisor.settings import Settings, load_settings
from supervisor.store import StateStore
from supervisor.supervision import Supervision
from tests.fakeengine import FakeEngine
from tests.unitkit import lone_worker, server_event

pytestmark = pytest.mark.anyio

CID = "c0ffee0123456789"
GENERATED = {
    "api_client_id": "client-id-generated-0001",
    "api_client_secret": "api-secret-generated-ABCDEFGH",
    "session_secret": "session-secret-generated-0123456789abcdef",
}
TOKEN = "hytale-cached-access-token-ZYXWVU"
PASSWORD = "join-password-supplied"
NOTIFY_URL = "discord://112233445566/webhook-token-QWERTYUIOP"
NTFY_URL = "json://alice:receiver-pass-777@127.0.0.1:9999/hook?key=query-key-12345678"
CREDENTIAL = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
BACKUP_PASSWORD = "backup-repository-password-42"


def _settings(tmp_path: Path, **more: Any) -> Settings:
    return load_settings(
        state_dir=str(tmp_path),
        server_password=PASSWORD,
        notify={"urls": [NOTIFY_URL, NTFY_URL]},
        backup={
            "repository": "s3:https://s3.example.com/bucket",
            "password": BACKUP_PASSWORD,
            "credentials": {"AWS_SECRET_ACCESS_KEY": CREDENTIAL},
        },
        **more,
    )


def _every_secret() -> list[str]:
    return [
        *GENERATED.values(),
        TOKEN,
        PASSWORD,
        NOTIFY_URL,
        "webhook-token-QWERTYUIOP",
        NTFY_URL,
        "receiver-pass-777",
        "query-key-12345678",
        CREDENTIAL,
        BACKUP_PASSWORD,
    ]


def _leaky_text() -> str:
    return " ".join(_every_secret())


def _helper_answer(server_log: str) -> str:
    import base64

    def item(path: str, text: str) -> dict[str, Any]:
        return {
            "path": path,
            "size": len(text),
            "mtime": time.time() - 1,
            "tail": base64.b64encode(text.encode()).decode(),
        }

    lines = [
        {"step": 0, "op": "tails", "code": 0,
         "files": [item("/data/Server/logs/2026-12-07_server.log", server_log)]},
        {"step": 1, "op": "tails", "code": 0,
         "files": [item("/data/Server/hs_err_pid42.log", "SIGSEGV " + _leaky_text())]},
        {"step": 2, "op": "read", "code": 0,
         "files": [item("/data/.state/server.json", json.dumps({"msg": _leaky_text()}))]},
    ]  # fmt: skip
    return "\n".join(json.dumps(line) for line in lines) + "\n"


@pytest.fixture
def engine() -> FakeEngine:
    engine = FakeEngine()
    container = engine.add_container(
        "t-server",
        container_id=CID,
        body={"Env": [f"SERVER_PASSWORD={PASSWORD}", "TZ=UTC"], "HostConfig": {"Memory": 6 << 30}},
    )
    container.logs = ["booting", f"leak: {_leaky_text()}", "Exception in thread main"]
    for name, value in GENERATED.items():
        engine.files[(CID, secretspec.BY_NAME[name].path)] = value.encode() + b"\n"
    engine.files[(CID, crashes.TOKENS_FILE)] = json.dumps({"access_token": TOKEN}).encode()
    engine.run_once_result = (0, _helper_answer(f"[SEVERE] crashed\n{_leaky_text()}\n"), "")
    engine.memory_peaks[CID] = 123456
    return engine


async def _report(reporter: CrashReporter, **over: Any) -> Path | None:
    context: dict[str, Any] = dict(
        role="server",
        container_id=CID,
        container_name="t-server",
        died_at=time.time(),
        trigger="exit",
        judgement={"kind": "crash", "exit_code": 1, "oom_killed": False, "reason": "exit 1"},
        decision={"action": "restart"},
        decisions=[{"at": time.time(), "trigger": "exit", "action": "restart"}],
    )
    context.update(over)
    return await reporter.report(CrashFacts(**context))


def test_the_secrets_given_include_notify_urls_and_backup_credentials(tmp_path: Path) -> None:
    found = given_secrets(_settings(tmp_path))
    for value in (PASSWORD, NOTIFY_URL, "webhook-token-QWERTYUIOP", "receiver-pass-777",
                  "query-key-12345678", CREDENTIAL, BACKUP_PASSWORD):  # fmt: skip
        assert value in found, value


async def test_a_report_holds_every_part_and_no_secret(tmp_path: Path, engine: FakeEngine) -> None:
    reporter = CrashReporter(engine, _settings(tmp_path))
    path = await _report(reporter)
    assert path is not None
    raw = path.read_text()
    assert [s for s in _every_secret() if s in raw] == []  # 0 secret values
    document = json.loads(raw)
    assert document["container_log"][0] == "booting"
    assert document["server_log"]["path"].endswith("_server.log")
    assert "[SEVERE] crashed" in document["server_log"]["lines"]
    assert document["hs_err"]["lines"][0].startswith("SIGSEGV")
    assert set(document["state"]) == {"server.json", "health.json", "version.json"}
    assert document["memory"] == {"peak_bytes": 123456, "limit_bytes": 6 << 30, "oom_killed": False}
    assert "SERVER_PASSWORD=***" in document["inspect"]["Config"]["Env"]
    assert document["missing"] == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_a_rotated_away_secret_stays_masked(tmp_path: Path, engine: FakeEngine) -> None:
    reporter = CrashReporter(engine, _settings(tmp_path))
    await reporter.refresh_secrets(CID)
    old = GENERATED["api_client_secret"]
    engine.files[(CID, secretspec.BY_NAME["api_client_secret"].path)] = b"rotated-new-secret-XYZ"
    await reporter.refresh_secrets(CID)
    engine.containers[CID].logs = [f"old {old}", "new rotated-new-secret-XYZ"]
    path = await _report(reporter)
    assert path is not None
    raw = path.read_text()
    assert old not in raw and "rotated-new-secret-XYZ" not in raw


async def test_after_a_rotation_a_report_reads_the_values_itself(
    tmp_path: Path, engine: FakeEngine
) -> None:
    """A rotation's new value, in a run that died before the worker's refresh: the
    report reads the values itself (the restart's engine lock is the price, only then)."""
    reads: list[str] = []
    original = engine.read_file

    async def counted(container_id: str, path: str, limit: int = 1 << 20) -> bytes | None:
        reads.append(path)
        return await original(container_id, path, limit)

    engine.read_file = counted  # type: ignore[method-assign]
    reporter = CrashReporter(engine, _settings(tmp_path))
    await reporter.refresh_secrets(CID)
    reads.clear()
    # Nothing changed since the read: the values known are the volume's, nothing is read.
    assert await _report(reporter) is not None
    assert reads == []
    rotated = "rotated-in-a-fresh-run-0123456789"
    engine.files[(CID, secretspec.BY_NAME["session_secret"].path)] = rotated.encode()
    reporter.secrets_changed()
    engine.containers[CID].logs = [f"new value {rotated}"]
    path = await _report(reporter)
    assert path is not None and reads != []
    assert rotated not in path.read_text()
    # The restarted service's refresh: from then on, no read in a report again.
    await reporter.refresh_secrets(CID)
    reads.clear()
    assert await _report(reporter) is not None and reads == []


async def test_without_the_secrets_the_logs_are_withheld(
    tmp_path: Path, engine: FakeEngine
) -> None:
    engine.refuse("read_file", EngineError("archive refused"), times=10)

    async def refused(container_id: str, path: str, limit: int = 1 << 20) -> bytes | None:
        raise EngineError("archive refused")

    engine.read_file = refused  # type: ignore[method-assign]
    reporter = CrashReporter(engine, _settings(tmp_path))
    path = await _report(reporter)
    assert path is not None
    document = json.loads(path.read_text())
    assert document["container_log"] == [] and document["server_log"] is None
    assert any("withheld" in m for m in document["missing"])
    raw = path.read_text()
    assert [s for s in _every_secret() if s in raw] == []


async def test_gathering_is_bounded_and_names_what_did_not_come(
    tmp_path: Path, engine: FakeEngine
) -> None:
    async def hangs(container_id: str, lines: int = 50, until: float | None = None) -> list[str]:
        await anyio.sleep_forever()
        return []

    engine.logs_tail = hangs  # type: ignore[method-assign]
    reporter = CrashReporter(engine, _settings(tmp_path, crashes={"gather_s": 0.3}), complete_s=0)
    started = time.monotonic()
    path = await _report(reporter)
    took = time.monotonic() - started
    assert path is not None and took < 1.5
    document = json.loads(path.read_text())
    assert "container log: not read in time" in document["missing"]
    assert document["server_log"] is not None  # what came in is there


async def test_the_budget_counts_from_the_exit(tmp_path: Path, engine: FakeEngine) -> None:
    """Judging the exit took 0.4 s of a 1 s budget: 0.6 s are left for gathering; an
    exit found much later (a stack pass) still gets half the budget."""

    async def hangs(container_id: str, lines: int = 50, until: float | None = None) -> list[str]:
        await anyio.sleep_forever()
        return []

    engine.logs_tail = hangs  # type: ignore[method-assign]
    reporter = CrashReporter(engine, _settings(tmp_path, crashes={"gather_s": 1.0}), complete_s=0)
    for late, budget in ((0.4, 0.6), (3600.0, 0.5)):
        started = time.monotonic()
        assert await _report(reporter, died_at=time.time() - late) is not None
        took = time.monotonic() - started
        assert budget - 0.05 <= took < budget + 0.35, (late, took)


async def test_a_slow_helper_cleanup_does_not_hold_the_report_back(
    tmp_path: Path, engine: FakeEngine
) -> None:
    """At the deadline the report is written with what came in; the helper's removal
    (shielded, slow on a loaded engine) finishes after, not before."""
    removed = anyio.Event()

    async def slow(
        name: str, body: Any, stdin: bytes | None, timeout: float
    ) -> tuple[int, str, str]:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1.0)
                removed.set()
        return 0, "", ""

    engine.run_once = slow  # type: ignore[method-assign]
    settings = _settings(tmp_path, crashes={"gather_s": 0.4})
    reporter = CrashReporter(engine, settings, complete_s=0)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(_report, reporter))
        with anyio.fail_after(5):
            while not list_reports(settings):
                await anyio.sleep(0.01)
        on_disk = time.monotonic() - started
        assert not removed.is_set()
    assert on_disk < 0.9 and removed.is_set()
    document = load_report(settings, list_reports(settings)[0].id)
    assert document is not None
    assert "server log files and HyOS's state: not read in time" in document["missing"]


async def test_parts_late_at_the_deadline_complete_the_same_report(
    tmp_path: Path, engine: FakeEngine
) -> None:
    """The helper (the game's log files) comes 0.5 s after the deadline: the report is on
    disk at the deadline naming it late, then written again whole, its `written_at`
    kept and `completed_at` set."""
    answer = engine.run_once_result
    helped = anyio.Event()

    async def late(
        name: str, body: Any, stdin: bytes | None, timeout: float
    ) -> tuple[int, str, str]:
        await anyio.sleep(0.9)
        helped.set()
        return answer

    engine.run_once = late  # type: ignore[method-assign]
    settings = _settings(tmp_path, crashes={"gather_s": 0.4})
    reporter = CrashReporter(engine, settings, complete_s=5.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(_report, reporter))
        with anyio.fail_after(5):
            while not list_reports(settings):
                await anyio.sleep(0.01)
        first = load_report(settings, list_reports(settings)[0].id)
        assert not helped.is_set()
    assert first is not None and first["completed_at"] is None
    assert "server log files and HyOS's state: not read in time" in first["missing"]
    [summary] = list_reports(settings)
    whole = load_report(settings, summary.id)
    assert whole is not None and whole["missing"] == [] and whole["server_log"] is not None
    assert whole["written_at"] == first["written_at"] and whole["completed_at"] is not None
    assert [s for s in _every_secret() if s in json.dumps(whole)] == []


async def test_a_managers_report_runs_no_helper(tmp_path: Path, engine: FakeEngine) -> None:
    """The dashboard writes no game logs: its report is the container's log, the inspect
    and the judgement, and no helper container is run for it."""
    reporter = CrashReporter(engine, _settings(tmp_path))
    path = await _report(reporter, role="manager", container_name="t-manager")
    assert path is not None and path.name.endswith(f"-manager-{CID[:6]}.json")
    document = json.loads(path.read_text())
    assert document["server_log"] is None and document["state"] == {}
    assert document["container_log"][0] == "booting" and document["missing"] == []
    assert not any(verb == "run_once" for verb, _ in engine.calls)


async def test_retention_keeps_the_newest(tmp_path: Path, engine: FakeEngine) -> None:
    settings = _settings(tmp_path, crashes={"keep": 3})
    reporter = CrashReporter(engine, settings)
    for n in range(5):
        assert await _report(reporter, died_at=1_800_000_000.0 + n) is not None
    found = list_reports(settings)
    assert len(found) == 3 and found[0].id > found[1].id > found[2].id
    assert found[0].id.startswith("20270115T080004.000Z")
    from supervisor import crashcli

    last = crashcli.last_crash(settings)
    assert last is not None and last["id"] == found[0].id  # status: the newest only
    assert f"`hyos-supervisor crashes show {found[0].id}`" in crashcli.last_crash_line(last)
    assert load_report(settings, found[0].id[:10]) is None  # ambiguous prefix
    assert load_report(settings, found[0].id)["id"] == found[0].id  # type: ignore[index]
    assert load_report(settings, "../etc") is None and load_report(settings, "*") is None


async def test_reports_off_write_nothing(tmp_path: Path, engine: FakeEngine) -> None:
    settings = _settings(tmp_path, crashes={"enabled": False})
    assert await _report(CrashReporter(engine, settings)) is None
    assert list_reports(settings) == []


async def test_the_restart_is_not_held_up_by_a_report_still_gathering(tmp_path: Path) -> None:
    """A die with a hanging log read: the worker starts the container again after its
    backoff (50 ms) while the report still gathers; the report comes at gather_s."""
    engine = FakeEngine()
    engine.add_container("t-server", container_id=CID)
    engine.files[(CID, secretspec.BY_NAME["api_client_secret"].path)] = b"x-secret-value-1234"
    gathering = anyio.Event()

    async def hangs(container_id: str, lines: int = 50, until: float | None = None) -> list[str]:
        gathering.set()
        await anyio.sleep_forever()
        return []

    engine.logs_tail = hangs  # type: ignore[method-assign]
    settings = load_settings(
        state_dir=str(tmp_path),
        restart={"backoff_base_s": 0.05},
        crashes={"gather_s": 1.0},
    )
    sup = Supervision(
        settings,
        engine,
        Notifier(environ={}),
        StateStore(tmp_path / "state.json"),
        bind(logging.getLogger("test"), stack="t"),
    )
    worker = lone_worker(sup, container_id=CID)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        worker.observe(server_event("start", time.time(), container_id=CID))
        died = time.time()
        worker.observe(server_event("die", died, exit_code=1, container_id=CID))
        with anyio.fail_after(5):
            while ("start", CID) not in engine.calls:
                await anyio.sleep(0.01)
        restarted = time.time() - died
        assert gathering.is_set()  # the report was gathering meanwhile
        assert list_reports(settings) == []  # and not written yet
        assert restarted < 0.9
        with anyio.fail_after(5):
            while not list_reports(settings):
                await anyio.sleep(0.02)
        written = time.time() - died
        tg.cancel_scope.cancel()
    assert 0.9 <= written < 3.0
    [summary] = list_reports(settings)
    assert summary.exit_code == 1 and summary.decision == "restart"
    assert sup.tallies.crash_reports == {"server": 1}  # hyos_crash_reports_total


async def test_the_cli_lists_and_shows_reports_without_a_daemon(
    tmp_path: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from supervisor import cli

    reporter = CrashReporter(engine, _settings(tmp_path))
    path = await _report(reporter)
    assert path is not None
    monkeypatch.setenv("HYOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HYOS_STACK", "hyos")
    capsys.readouterr()
    assert cli.main(["crashes", "--json"]) == 0
    [summary] = json.loads(capsys.readouterr().out)
    assert summary["id"] == path.stem and summary["exit_code"] == 1
    assert cli.main(["crashes"]) == 0
    assert path.stem in capsys.readouterr().out
    assert cli.main(["crashes", "show", path.stem]) == 0
    shown = capsys.readouterr().out
    assert "exit:      code 1" in shown and [s for s in _every_secret() if s in shown] == []
    assert cli.main(["crashes", "show", "../../etc/passwd"]) == 1
    assert "no report" in capsys.readouterr().err
