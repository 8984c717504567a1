"""Argument parsing, user resolution, machine-id, and the CLI end to end (no Docker)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint import errors
from entrypoint.cli import parse_args, prepare_request
from entrypoint.contract import PREPARE_ENTRYPOINT, PrepareRequest, parse_events, prepare_argv
from entrypoint.errors import EXIT_USAGE, EntrypointError
from entrypoint.machine_id import ensure_machine_id, is_valid_machine_id
from entrypoint.privileges import resolve_user

REPO = Path(__file__).resolve().parents[2]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def run_ep(
    *args: str, user: int | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "entrypoint", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


# --- parsing -------------------------------------------------------------------------


def test_parse_full_command_line() -> None:
    o = parse_args(
        [
            "--user",
            "568:568",
            "--group-of",
            "/s",
            "--prepare",
            "/a",
            "--prepare",
            "/b",
            "--machine-id",
            "/m",
            "--",
            "java",
            "--jar",
            "x",
        ]
    )
    assert (o.user, o.group_of, o.prepare, o.machine_id) == ("568:568", "/s", ["/a", "/b"], "/m")
    assert o.command == ["java", "--jar", "x"] and not o.allow_root


def test_parse_command_without_separator_and_prepare_only() -> None:
    assert parse_args(["--allow-root", "id", "-u"]).command == ["id", "-u"]
    assert parse_args(["--prepare", "/data"]).command == []


@pytest.mark.parametrize(
    "argv", [["--bogus"], ["--user"], ["--prepare"], ["--user", "1", "x", "--", "y"]]
)
def test_parse_errors_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(EntrypointError) as exc:
        parse_args(argv)
    assert exc.value.code == errors.EXIT_USAGE


def test_exit_codes_are_distinct() -> None:
    codes = [v for k, v in vars(errors).items() if k.startswith("EXIT_")]
    assert len(codes) == len(set(codes))


# --- users ---------------------------------------------------------------------------


def test_resolve_numeric_users() -> None:
    u = resolve_user("568:569")
    assert (u.uid, u.gid, u.groups) == (568, 569, (569,))
    u = resolve_user("4321")  # no passwd entry: gid follows uid, never 0
    assert (u.uid, u.gid, u.groups, u.name) == (4321, 4321, (4321,), None)


def test_resolve_named_users() -> None:
    u = resolve_user("root")
    assert (u.uid, u.gid, u.name, u.home) == (0, 0, "root", "/root")
    u = resolve_user("nobody")
    assert (u.uid, u.name) == (65534, "nobody") and u.gid in u.groups
    u = resolve_user("0")
    assert u.name == "root"
    assert resolve_user("daemon:root").gid == 0


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ("no-such-user-x", errors.EXIT_UNKNOWN_USER),
        ("568:no-such-group-x", errors.EXIT_UNKNOWN_USER),
        ("", errors.EXIT_USAGE),
        ("568:", errors.EXIT_USAGE),
    ],
)
def test_resolve_errors(spec: str, code: int) -> None:
    with pytest.raises(EntrypointError) as exc:
        resolve_user(spec)
    assert exc.value.code == code


# --- machine-id ----------------------------------------------------------------------


def test_machine_id_created_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "machine-id"
    assert ensure_machine_id(str(path)) is True
    first = path.read_text()
    assert is_valid_machine_id(first) and len(first.strip()) == 32 and first.endswith("\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    path.chmod(0o644)
    assert ensure_machine_id(str(path)) is False
    assert path.read_text() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert [p.name for p in path.parent.iterdir()] == ["machine-id"]  # no temp left


@pytest.mark.parametrize("content", ["", "xyz\n", "0" * 32, "ABCDEF" + "0" * 26, "a" * 31])
def test_invalid_machine_id_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "machine-id"
    path.write_text(content)
    assert ensure_machine_id(str(path)) is True
    assert is_valid_machine_id(path.read_text())


def test_machine_id_symlink_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    link = tmp_path / "machine-id"
    link.symlink_to(target)
    assert ensure_machine_id(str(link)) is True
    assert target.read_text() == "keep"
    assert not link.is_symlink()


# --- helper contract -----------------------------------------------------------------


def prepare_args(uid: int, gid: int, paths: list[str], machine_id: str) -> list[str]:
    """As the supervisor runs it: the subcommand (the entrypoint's last word), then argv."""
    request = PrepareRequest(uid, gid, tuple(paths), machine_id=machine_id)
    return [*PREPARE_ENTRYPOINT[-1:], *prepare_argv(request)]


@pytest.mark.parametrize(
    "request_",
    [
        PrepareRequest(568, 568, ("/data",)),
        PrepareRequest(568, 568, ("/data",), machine_id="/run/hyos-system/machine-id"),
        PrepareRequest(
            1000,
            1001,
            ("/data", "/srv/extra"),
            machine_id="/run/hyos-system/machine-id",
            file_env_shim="/run/hyos-system/file-env",
            secrets_dir="/data/.hyos/secrets",
            secrets=("api_client_id", "session_secret"),
            forget=("server_password",),
            rotate=("session_secret",),
            secrets_on_stdin=True,
            manager_config="/data/.state/manager-config.json",
        ),
    ],
)
def test_prepare_contract_round_trip(request_: PrepareRequest) -> None:
    """One builder (contract.prepare_argv), one parser (the entrypoint's own)."""
    assert prepare_request(parse_args([*PREPARE_ENTRYPOINT[-1:], *prepare_argv(request_)])) == (
        request_
    )
    # The older flat form reads the same.
    assert prepare_request(parse_args(prepare_argv(request_))) == request_


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["init", "--user", "568"], "init needs a command"),
        (["prepare", "--user", "568:568", "--", "sh"], "prepare runs no command"),
        (["prepare", "--user", "568:568", "--group-of", "/x"], "unrecognized arguments"),
        (["prepare", "--allow-root"], "unrecognized arguments"),
        (["init", "--secret", "s", "--", "sh"], "unrecognized arguments"),
        (["init", "--manager-config", "/x", "--", "sh"], "unrecognized arguments"),
    ],
)
def test_each_subcommand_has_its_own_options(argv: list[str], message: str) -> None:
    with pytest.raises(EntrypointError, match=message) as raised:
        parse_args(argv)
    assert raised.value.code == EXIT_USAGE


def test_init_takes_its_command_and_keeps_its_options() -> None:
    opts = parse_args(["init", "--user", "hyos", "--group-of", "/s", "--prepare", "/d", "--", "x"])
    assert (opts.user, opts.group_of, opts.prepare, opts.command) == ("hyos", "/s", ["/d"], ["x"])
    assert opts.secrets is None and opts.machine_id is None  # not init's to set


def test_prepare_events_are_the_json_lines() -> None:
    out = 'noise\n{"event":"prepared","changed":3}\n{bad json\n[1]\n'
    assert parse_events(out) == [{"event": "prepared", "changed": 3}]


# --- the CLI as a process ------------------------------------------------------------


@root_only
def test_cli_prepare_prints_json_and_is_idempotent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / ".auth").mkdir(parents=True)
    (data / ".auth" / "tokens.json").write_text("{}")
    mid = str(data / ".hyos" / "machine-id")
    out = run_ep(*prepare_args(568, 568, [str(data)], machine_id=mid))
    assert out.returncode == 0, out.stderr
    events = parse_events(out.stdout)
    assert [e["event"] for e in events] == ["machine_id", "prepared"]
    assert events[0]["created"] is True
    # data, .auth, tokens.json, and .hyos (made by the machine-id step as root)
    assert events[1]["changed"] == 4 and events[1]["failed"] == 0
    again = parse_events(run_ep(*prepare_args(568, 568, [str(data)], machine_id=mid)).stdout)
    assert again[0]["created"] is False and again[1]["changed"] == 0
    assert stat.S_IMODE(os.stat(mid).st_mode) == 0o444 and os.stat(mid).st_uid == 568


@root_only
def test_cli_unknown_user_never_runs_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    out = run_ep("--user", "no-such-user-x", "--", "touch", str(marker))
    assert out.returncode == errors.EXIT_UNKNOWN_USER
    assert out.stderr.count("\n") == 1 and "unknown user" in out.stderr
    assert not marker.exists()


@root_only
def test_cli_root_needs_allow_root(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert run_ep("--", "touch", str(marker)).returncode == errors.EXIT_ROOT_REFUSED
    assert run_ep("--user", "0", "--", "touch", str(marker)).returncode == errors.EXIT_ROOT_REFUSED
    assert not marker.exists()
    assert run_ep("--allow-root", "--", "touch", str(marker)).returncode == 0
    assert marker.exists()


@root_only
def test_cli_drops_privileges_for_good(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    os.chown(sock, 0, 4242)
    out = run_ep(
        "--user",
        "568:568",
        "--group-of",
        str(sock),
        "--",
        "sh",
        "-c",
        "id -u; id -g; id -G; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[:3] == ["568", "568", "568 4242"]
    assert "CapEff:\t0000000000000000" in out.stdout and "NoNewPrivs:\t1" in out.stdout


@root_only
def test_cli_group_of_missing_path() -> None:
    out = run_ep("--user", "568:568", "--group-of", "/nonexistent/sock", "--", "true")
    assert out.returncode == errors.EXIT_GROUP_OF


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A temp dir uid 568 can reach (pytest's tmp_path is root-only), with the package."""
    d = Path(tempfile.mkdtemp(prefix="hyos-ep-test-"))
    try:
        d.chmod(0o755)
        shutil.copytree(REPO / "entrypoint", d / "pkg" / "entrypoint")
        yield d
    finally:
        shutil.rmtree(d)


@root_only
def test_cli_started_non_root(public_dir: Path) -> None:
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip(f"{python} (a Python uid 568 may run) is missing")
    mine = public_dir / "mine"
    mine.mkdir()
    os.chown(mine, 568, 568)
    theirs = public_dir / "theirs"
    theirs.mkdir(mode=0o755)

    def as_568(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-m", "entrypoint", *args],
            capture_output=True,
            text=True,
            cwd=public_dir / "pkg",
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(public_dir / "pkg")},
            timeout=30,
            user=568,
            group=568,
            extra_groups=[],
        )

    out = as_568(
        "--user",
        "568:568",
        "--prepare",
        str(mine),
        "--",
        "sh",
        "-c",
        "id -u; grep NoNewPrivs /proc/self/status",
    )
    assert (out.returncode, out.stdout) == (0, "568\nNoNewPrivs:\t1\n"), out.stderr
    assert "prepare_skipped" in out.stderr  # with a command, events go to stderr
    out = as_568("--user", "568:568", "--prepare", str(theirs))
    assert out.returncode == errors.EXIT_NOT_WRITABLE
    assert parse_events(out.stdout)[0]["writable"] is False
    assert out.stderr.count("\n") == 1 and "not writable" in out.stderr


def test_cli_command_not_found() -> None:
    out = (
        run_ep("--allow-root", "--", "/no/such/binary")
        if os.geteuid() == 0
        else run_ep("--", "/no/such/binary")
    )
    assert out.returncode == errors.EXIT_NOT_FOUND
    assert "command not found" in out.stderr


# --- PID 1 loop (works in any process; PID 1 only changes who gets orphans) ------------


def supervise_proc(script: str) -> subprocess.Popen[str]:
    code = f"from entrypoint.init import supervise; raise SystemExit(supervise({['sh', '-c', script]!r}))"
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, text=True, stdout=subprocess.PIPE
    )


def test_supervise_propagates_exit_code_and_signal() -> None:
    assert supervise_proc("exit 3").wait(timeout=30) == 3
    assert supervise_proc("kill -KILL $$").wait(timeout=30) == 128 + signal.SIGKILL


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGWINCH])
def test_supervise_forwards_signals(sig: signal.Signals) -> None:
    name = sig.name.removeprefix("SIG")
    proc = supervise_proc(f"trap 'exit 42' {name}; echo ready; while :; do sleep 0.05; done")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    deadline = time.monotonic() + 10
    proc.send_signal(sig)
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)  # the trap may not be armed on the first delivery
    assert proc.wait(timeout=10) == 42


@root_only
def test_machine_id_parent_symlink_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".hyos").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(EntrypointError) as exc:
        ensure_machine_id(str(tmp_path / ".hyos" / "machine-id"), (568, 568))
    assert exc.value.code == errors.EXIT_MACHINE_ID
    assert list(elsewhere.iterdir()) == []
