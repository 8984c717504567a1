"""What to do with HyOS's game logs (supervisor/logprune.py), decided on a fake clock:
compressed after a day, deleted after 7 days or past the total, the file being written
never touched."""

from __future__ import annotations

from supervisor.logprune import Action, LogFile, LogPolicy, plan
from tests.fakeclock import FakeClock

DAY = 86400.0
MB = 1000**2
LOGS = "/data/Server/logs"
HYOS = "/data/logs"


def _log(directory: str, name: str, age_days: float, clock: FakeClock, size: int = MB) -> LogFile:
    return LogFile(f"{directory}/{name}", size, clock.now - age_days * DAY)


def test_nothing_is_done_to_fresh_logs() -> None:
    clock = FakeClock()
    files = [_log(LOGS, f"{n}_server.log", n * 0.1, clock) for n in range(5)]
    assert plan(files, clock.now, LogPolicy()) == []


def test_a_log_is_compressed_after_a_day_and_deleted_after_seven() -> None:
    clock = FakeClock()
    old = _log(LOGS, "old_server.log", 0.5, clock)
    live = _log(LOGS, "live_server.log", 0.0, clock)
    assert plan([old, live], clock.now, LogPolicy()) == []
    clock.advance(0.6 * DAY)  # the old one is 1.1 days old; the live one 0.6
    assert plan([old, live], clock.now, LogPolicy()) == [
        Action("gzip", old.path, "age"),
    ]
    gz = LogFile(old.path + ".gz", MB // 10, old.mtime)  # gzip keeps the mtime
    clock.advance(6 * DAY)  # 7.1 days old: deleted, whatever its form
    assert plan([gz, live], clock.now, LogPolicy()) == [Action("delete", gz.path, "age")]


def test_the_newest_file_of_each_directory_is_never_touched() -> None:
    clock = FakeClock()
    lonely = _log(LOGS, "only_server.log", 30, clock)  # a server started once, long ago
    hyos = _log(HYOS, "entrypoint.log", 30, clock)
    assert plan([lonely, hyos], clock.now, LogPolicy()) == []


def test_past_the_total_the_oldest_go_first_across_both_directories() -> None:
    clock = FakeClock()
    files = [
        _log(LOGS, "a_server.log", 0.5, clock, 80 * MB),
        _log(HYOS, "b.log", 0.4, clock, 80 * MB),
        _log(LOGS, "c_server.log", 0.3, clock, 80 * MB),
        _log(HYOS, "d.log", 0.2, clock, 10 * MB),
        _log(LOGS, "e_server.log", 0.1, clock, 10 * MB),
    ]
    actions = plan(files, clock.now, LogPolicy(max_bytes=200 * MB))
    assert actions == [Action("delete", files[0].path, "total")]  # 260 -> 180 MB
    actions = plan(files, clock.now, LogPolicy(max_bytes=100 * MB))
    assert actions == [
        Action("delete", files[0].path, "total"),
        Action("delete", files[1].path, "total"),
    ]  # 260 -> 100 MB; c is the newest of /data/Server/logs' older ones, kept


def test_a_file_deleted_for_the_total_is_not_also_compressed() -> None:
    clock = FakeClock()
    files = [
        _log(LOGS, "a_server.log", 3, clock, 300 * MB),
        _log(LOGS, "b_server.log", 0, clock, 1 * MB),
    ]
    assert plan(files, clock.now, LogPolicy()) == [Action("delete", files[0].path, "total")]


def test_deletions_by_age_come_before_compressions() -> None:
    clock = FakeClock()
    files = [
        _log(LOGS, "a_server.log", 8, clock),
        _log(LOGS, "b_server.log", 2, clock),
        _log(LOGS, "c_server.log", 0, clock),
    ]
    assert [a.op for a in plan(files, clock.now, LogPolicy())] == ["delete", "gzip"]


def test_shorter_settings_are_followed() -> None:
    clock = FakeClock()
    files = [_log(HYOS, "a.log", 2 / 24, clock), _log(HYOS, "b.log", 0, clock)]
    policy = LogPolicy(compress_after_s=3600, remove_after_s=3 * 3600, max_bytes=10**12)
    assert plan(files, clock.now, policy) == [Action("gzip", files[0].path, "age")]
    clock.advance(2 * 3600)
    assert plan(files, clock.now, policy) == [Action("delete", files[0].path, "age")]


def test_each_of_hyos_server_layouts_keeps_its_newest() -> None:
    """HyOS's lib/download.sh finds the game at /data/Server or /data/game/Server."""
    clock = FakeClock()
    files = [
        _log("/data/Server/logs", "a_server.log", 3, clock),
        _log("/data/game/Server/logs", "b_server.log", 3, clock),
        _log("/data/game/Server/logs", "c_server.log", 2, clock),
    ]
    assert plan(files, clock.now, LogPolicy()) == [Action("gzip", files[1].path, "age")]
