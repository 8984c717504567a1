"""The game-log helper's shell (supervisor/gamelogs.py) on the fake engine, whose one-shot
container answers like entrypoint/logjob.py over an in-memory volume: a prune lists,
plans, acts and lists again until nothing is left to do; the helper is hardened and
mounts the volume writable only to prune; the daily turn keeps its rhythm across daemon
restarts; a missing helper image or a failing helper costs a log line, never the daemon."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from supervisor import gamelogs
from supervisor.logs import bind
from supervisor.settings import Settings, load_settings
from tests.fakeengine import FakeEngine

pytestmark = pytest.mark.anyio

DAY = 86400.0
NOW = 1_800_000_000.0


class HelperEngine(FakeEngine):
    """run_once answers as the game-log helper would, over `disk` (path -> size, mtime)."""

    def __init__(self, disk: dict[str, tuple[int, float]]) -> None:
        super().__init__()
        self.disk = disk
        self.bodies: list[Mapping[str, Any]] = []
        self.fail_with: tuple[int, str, str] | None = None

    async def run_once(
        self, name: str, body: Mapping[str, Any], stdin: bytes | None, timeout: float
    ) -> tuple[int, str, str]:
        self._record("run_once", name)
        self.bodies.append(body)
        if self.fail_with is not None:
            return self.fail_with
        steps = json.loads(body["Cmd"][0])["steps"]
        lines = [json.dumps({"step": n, **self._answer(step)}) for n, step in enumerate(steps)]
        return 0, "\n".join(lines) + "\n", ""

    def _answer(self, step: dict[str, Any]) -> dict[str, Any]:
        op = step["op"]
        if op == "list":
            files = [
                {"path": p, "size": size, "mtime": mtime}
                for p, (size, mtime) in self.disk.items()
                if p.rpartition("/")[0] == step["dir"]
            ]
            return {"op": op, "code": 0, "files": files}
        path = step["path"]
        size, mtime = self.disk.pop(path)
        if op == "gzip":
            self.disk[path + ".gz"] = (size // 10, mtime)
            return {"op": op, "code": 0, "size": size // 10, "was": size}
        return {"op": op, "code": 0, "freed": size}


def _settings(tmp_path: Path, **logs: Any) -> Settings:
    return load_settings(state_dir=str(tmp_path), logs=logs or {})


async def test_a_prune_compresses_deletes_and_stops_when_nothing_is_left(tmp_path: Path) -> None:
    mb = 1000**2
    engine = HelperEngine(
        {
            "/data/Server/logs/a_server.log": (50 * mb, NOW - 8 * DAY),
            "/data/Server/logs/b_server.log": (50 * mb, NOW - 2 * DAY),
            "/data/Server/logs/c_server.log": (1 * mb, NOW - 60),
            "/data/logs/hyos.log": (1 * mb, NOW - 3 * DAY),
            "/data/logs/hyos-new.log": (1 * mb, NOW),
        }
    )
    done = await gamelogs.prune(engine, _settings(tmp_path), now=lambda: NOW)
    assert done == {"gzipped": 2, "deleted": 1, "failed": 0,
                    "freed_bytes": 50 * mb + 45 * mb + mb - mb // 10}  # fmt: skip
    assert set(engine.disk) == {
        "/data/Server/logs/b_server.log.gz",
        "/data/Server/logs/c_server.log",
        "/data/logs/hyos.log.gz",
        "/data/logs/hyos-new.log",
    }
    # list, act, list again (nothing left): three helper runs, only the acting one writable.
    writable = [not b["HostConfig"]["Mounts"][0]["ReadOnly"] for b in engine.bodies]
    assert writable == [False, True, False]


async def test_the_helper_is_hardened(tmp_path: Path) -> None:
    engine = HelperEngine({})
    await gamelogs.prune(engine, _settings(tmp_path), now=lambda: NOW)
    body = engine.bodies[0]
    host = body["HostConfig"]
    assert body["User"] == "568:568" and body["Entrypoint"][-1] == "entrypoint.logjob"
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["Privileged"] is False and host["PidsLimit"] and host["Memory"]
    assert [m["Target"] for m in host["Mounts"]] == ["/data"]
    assert body["Labels"]["io.hyos.role"] == "logs"
    assert not any("=" in v and "SECRET" in v for v in body["Env"])


async def test_a_failing_helper_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = HelperEngine({})
    engine.fail_with = (125, "", "docker: image not runnable\n")
    logger = bind(logging.getLogger("test.gamelogs"), stack="t")
    with caplog.at_level(logging.WARNING):
        await gamelogs.prune_once(engine, _settings(tmp_path), logger)
    assert [r.getMessage() for r in caplog.records] == ["bounding the game logs failed"]
    assert "image not runnable" in str(caplog.records[0].__dict__.get("error"))


async def test_a_missing_helper_image_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = HelperEngine({})
    engine.images = {}  # no image at all
    logger = bind(logging.getLogger("test.gamelogs"), stack="t")
    with caplog.at_level(logging.WARNING):
        await gamelogs.prune_once(engine, _settings(tmp_path), logger)
    assert "helper image hyos-supervisor" in caplog.records[0].getMessage()
    assert engine.bodies == []


def test_the_daily_turn_keeps_its_rhythm_across_restarts(tmp_path: Path) -> None:
    settings = _settings(tmp_path, every="1d")
    # Never pruned: a minute after the start.
    assert gamelogs.next_prune_in(settings, NOW) == 60
    gamelogs._mark_pruned(settings)
    stamp = tmp_path / f"{settings.stack}.logs-pruned"
    os.utime(stamp, (NOW - 3600, NOW - 3600))  # pruned an hour ago
    assert gamelogs.next_prune_in(settings, NOW) == pytest.approx(DAY - 3600)
    os.utime(stamp, (NOW - 2 * DAY, NOW - 2 * DAY))  # overdue: soon, not at once
    assert gamelogs.next_prune_in(settings, NOW) == 60
    # first_after is the floor, whatever the mark says.
    assert gamelogs.next_prune_in(_settings(tmp_path, first_after="5s"), NOW) == 5


def _args(dry_run: bool) -> Any:
    import argparse

    return argparse.Namespace(dry_run=dry_run)


async def test_logs_prune_without_a_stack_or_image_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from supervisor import crashcli

    settings = _settings(tmp_path)
    engine = HelperEngine({"/data/logs/a.log": (1, NOW - 30 * DAY)})
    assert await crashcli.prune_logs(_args(False), settings, engine) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no containers; run `hyos-supervisor up` first" in err[0]
    labels = {"io.hyos.managed": "true", "io.hyos.stack": settings.stack, "io.hyos.role": "server"}
    engine.add_container(settings.container_name("server"), labels=labels)
    engine.images = {}
    assert await crashcli.prune_logs(_args(False), settings, engine) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "helper image" in err[0] and "(helper_image)" in err[0]
    assert engine.bodies == []  # nothing was run


async def test_logs_prune_dry_run_only_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from supervisor import crashcli

    settings = _settings(tmp_path)
    now = time.time()  # the verb plans at the real time
    disk = {
        "/data/logs/a.log": (1, now - 30 * DAY),
        "/data/logs/b.log": (1, now - 2 * DAY),
        "/data/logs/c.log": (1, now),
    }
    engine = HelperEngine(disk)
    labels = {"io.hyos.managed": "true", "io.hyos.stack": settings.stack, "io.hyos.role": "server"}
    engine.add_container(settings.container_name("server"), labels=labels)
    assert await crashcli.prune_logs(_args(True), settings, engine) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["would delete /data/logs/a.log (age)", "would gzip /data/logs/b.log (age)"]
    assert len(engine.disk) == 3  # nothing changed
    assert all(b["HostConfig"]["Mounts"][0]["ReadOnly"] for b in engine.bodies)
