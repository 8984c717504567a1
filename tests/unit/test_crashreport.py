"""The crash report's pure core (supervisor/crashreport.py): redaction by value, by shape
and by name; the document's parts; which log is the crashed run's; retention."""

from __future__ import annotations

import json

from supervisor import crashreport
from supervisor.crashreport import MASK, FileTail

SECRET = "s3cr3t-Value-0123456789abcdef"
OTHER = "another-secret-ABCDEFGH"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJodHRwIn0.c2lnbmF0dXJlLXZhbHVl"


def test_secret_values_are_masked_wherever_they_appear() -> None:
    text = f"client secret is {SECRET}, again:{SECRET}; and {OTHER}!"
    shown = crashreport.redact(text, [SECRET, OTHER])
    assert SECRET not in shown and OTHER not in shown
    assert shown.count(MASK) == 3


def test_a_secret_inside_another_leaves_no_part_of_the_longer_one() -> None:
    inner = "inner-value-1234"
    outer = f"prefix-{inner}-suffix"
    shown = crashreport.redact(f"x {outer} y", [inner, outer])
    assert "prefix" not in shown and "suffix" not in shown and inner not in shown


def test_very_short_values_are_not_masked_by_value() -> None:
    # A 1-character join password would turn every such letter of every log into ***.
    assert crashreport.redact("a bad day", ["a"]) == "a bad day"


def test_jwts_bearer_tokens_and_secret_named_pairs_are_masked_by_shape() -> None:
    text = (
        f"token {JWT}\nAuthorization: Bearer abcdefgh12345678\n"
        'API_CLIENT_SECRET=hunter22hunter22 "password": "pw-in-json" session_token: tok123456'
    )
    shown = crashreport.redact(text, [])
    for leaked in (JWT, "abcdefgh12345678", "hunter22hunter22", "pw-in-json", "tok123456"):
        assert leaked not in shown
    assert "Authorization: Bearer ***" in shown


def test_a_file_setting_keeps_its_path() -> None:
    shown = crashreport.redact("API_CLIENT_SECRET_FILE=/run/secrets/api", [])
    assert shown == "API_CLIENT_SECRET_FILE=/run/secrets/api"


def test_the_inspect_loses_secret_env_values_and_keeps_the_rest() -> None:
    inspect = {
        "Id": "abc",
        "Config": {
            "Env": [
                "SESSION_SECRET=plain-value-xyz",
                "API_CLIENT_SECRET_FILE=/data/.hyos/secrets/api_client_secret",
                "TZ=Europe/Berlin",
                f"JAVA_OPTS=-Dx={SECRET}",
            ],
            "Labels": {"io.hyos.role": "server"},
        },
        "HostConfig": {"Memory": 1024},
    }
    shown = crashreport.redact_inspect(inspect, [SECRET])
    env = shown["Config"]["Env"]
    assert "SESSION_SECRET=***" in env
    assert "API_CLIENT_SECRET_FILE=/data/.hyos/secrets/api_client_secret" in env
    assert "TZ=Europe/Berlin" in env
    assert f"JAVA_OPTS=-Dx={MASK}" in env
    assert shown["HostConfig"] == {"Memory": 1024}


def _build(**over: object) -> dict[str, object]:
    parts: dict[str, object] = dict(
        facts=crashreport.CrashFacts(
            role="server",
            container_id="abcdef123456",
            container_name="t-server",
            died_at=1_800_000_000.0,
            trigger="exit",
            judgement={"kind": "crash", "exit_code": 1, "signal": None, "oom_killed": False},
            decision={"action": "restart", "backoff_s": 1.0},
            decisions=[{"at": 1_800_000_000.0, "trigger": "exit", "action": "restart"}],
        ),
        written_at=1_800_000_001.5,
        container_log=[f"line {n}" for n in range(900)] + [f"leaked {SECRET}"],
        server_log=FileTail("/data/Server/logs/a_server.log", 10, 1_799_999_999.0, b"boom\n"),
        hs_err=None,
        state_files={
            "server.json": json.dumps({"status": "crashed", "password": "pw-1234"}).encode(),
            "health.json": b"not json " + SECRET.encode(),
            "version.json": None,
        },
        inspect={"Config": {"Env": [f"SERVER_PASSWORD={OTHER}"]}},
        memory={"peak_bytes": None},
        lines=500,
        missing=["memory: not read in time"],
        secrets=[SECRET, OTHER],
    )
    parts.update(over)
    return crashreport.build(**parts)  # type: ignore[arg-type]


def test_the_document_holds_each_part_and_no_secret() -> None:
    document = _build()
    dumped = json.dumps(document)
    assert SECRET not in dumped and OTHER not in dumped and "pw-1234" not in dumped
    log = document["container_log"]
    assert isinstance(log, list) and len(log) == 500 and log[-1] == f"leaked {MASK}"
    assert document["server_log"]["lines"] == ["boom"]  # type: ignore[index]
    assert document["state"]["server.json"] == {"status": "crashed", "password": MASK}  # type: ignore[index]
    assert document["state"]["health.json"] == f"not json {MASK}"  # type: ignore[index]
    assert document["state"]["version.json"] is None  # type: ignore[index]
    assert document["missing"] == ["memory: not read in time"]
    assert document["judgement"]["exit_code"] == 1  # type: ignore[index]


def test_the_crashed_runs_log_is_the_newest_written_before_the_exit() -> None:
    died = 1000.0
    files = [
        FileTail("/data/Server/logs/old_server.log", 1, 500.0),
        FileTail("/data/Server/logs/crashed_server.log", 1, 999.0),
        # The next run's (after a 0.1 s backoff and a 0.5 s start): not the crashed one.
        FileTail("/data/Server/logs/restarted_server.log", 1, 1000.6),
        FileTail("/data/Server/hs_err_pid7.log", 1, 999.5),
    ]
    found = crashreport.newest_before(files, crashreport.SERVER_LOG_GLOB, died)
    assert found is not None and found.path.endswith("crashed_server.log")
    err = crashreport.newest_before(files, crashreport.HS_ERR_GLOB, died)
    assert err is not None and err.path.endswith("hs_err_pid7.log")
    assert crashreport.newest_before(files[:1], crashreport.HS_ERR_GLOB, died) is None


def test_ids_sort_by_time_and_tell_apart_two_deaths_in_one_second() -> None:
    first = crashreport.report_id(1_800_000_000.100, "server", "abcdef0123")
    second = crashreport.report_id(1_800_000_000.900, "server", "abcdef0123")
    assert first != second and sorted([second, first]) == [first, second]
    assert first.endswith("-server-abcdef")


def test_retention_keeps_the_newest_count_and_size() -> None:
    reports = [(f"2026120{n}T000000.000Z-server-a", 10) for n in range(1, 10)]
    assert crashreport.to_keep(reports, keep=20, max_bytes=1000) == []
    gone = crashreport.to_keep(reports, keep=3, max_bytes=1000)
    assert sorted(gone) == [r for r, _ in reports[:6]]
    by_size = crashreport.to_keep(reports, keep=20, max_bytes=25)
    assert sorted(by_size) == [r for r, _ in reports[:7]]  # the newest two fit in 25


def test_the_newest_report_is_kept_even_when_it_alone_is_too_big() -> None:
    reports = [("20261202T000000.000Z-server-a", 900), ("20261201T000000.000Z-server-a", 1)]
    assert crashreport.to_keep(reports, keep=20, max_bytes=100) == [reports[1][0]]


def test_the_text_shows_the_judgement_the_decisions_and_the_logs() -> None:
    text = "\n".join(crashreport.render(_build(memory={"peak_bytes": 5, "limit_bytes": 9})))
    assert "exit:      code 1" in text and "memory:    peak 5 bytes, limit 9 bytes" in text
    assert "decisions (oldest first):" in text and ": restart" in text
    assert "  | boom" in text and "missing:   memory: not read in time" in text
    assert SECRET not in text


def test_a_summary_reads_the_judgement() -> None:
    found = crashreport.summary(_build(), size=123)
    assert (found.service, found.exit_code, found.kind, found.decision, found.size) == (
        "server",
        1,
        "crash",
        "restart",
        123,
    )
