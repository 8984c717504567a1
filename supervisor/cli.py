"""`hyos-supervisor` verbs: parse arguments, load settings, hand off to the shell modules."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from supervisor import __version__, control, crashcli, hyos, policy, roles
from supervisor.backupsettings import backup_status, status_line
from supervisor.dockertypes import DockerUnreachable, EngineError
from supervisor.engine import Engine
from supervisor.failures import explain
from supervisor.logs import bind, error_line, setup_logging
from supervisor.ops import Operations
from supervisor.ports import EnginePort
from supervisor.roles import Role
from supervisor.settings import EX_CONFIG, ConfigError, Settings, load_settings
from supervisor.store import StateStore, state_dir_for, state_path
from supervisor.terminal import exec_command
from supervisor.updown import (
    ROTATIONS,
    NotReady,
    StackError,
    bring_up,
    stack_runtime,
    stack_status,
    take_down,
)

log = logging.getLogger("supervisor.cli")

EX_OK = 0
EX_FAILED = 1  # the stack could not be brought to the asked state (also: `run` at startup)
EX_USAGE = 64
EX_UNAVAILABLE = 69  # sysexits.h: the engine cannot be reached
EX_SOFTWARE = 70  # sysexits.h: an internal error (a bug); --log-level DEBUG shows where


def _global_options(suppress: bool) -> argparse.ArgumentParser:
    """--config, --log-format and --log-level, accepted before and after the verb.

    The copy on each verb has no defaults (SUPPRESS), so it sets a value only when the
    option is given there and never hides one given before the verb."""
    options = argparse.ArgumentParser(add_help=False)

    def default(value: str | None) -> Any:
        return argparse.SUPPRESS if suppress else value

    options.add_argument(
        "--config", metavar="PATH", default=default(None),
        help="TOML settings file (or HYOS_CONFIG)",
    )  # fmt: skip
    options.add_argument(
        "--log-format", choices=("auto", "json", "text"), default=default("auto"),
        help="auto: text on a TTY, plain lines with syslog priorities under journald, "
        "JSON lines otherwise (default: auto)",
    )  # fmt: skip
    options.add_argument(
        "--log-level", choices=("DEBUG", "INFO", "WARNING"), default=default("INFO"),
        help="default INFO",
    )  # fmt: skip
    return options


Verb = Callable[..., argparse.ArgumentParser]
NOW_HELP = "skip the drain: act at once, even with players online"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyos-supervisor",
        description="Runs the HyOS stack hardened on Docker and keeps it healthy.",
        parents=[_global_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    late = [_global_options(suppress=True)]

    def verb(name: str, help: str, group: Any = verbs) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help, parents=late)
        return sub

    _stack_verbs(verb)
    _service_verbs(verb)
    _output_verbs(verb)
    _backup_verbs(verb)
    crashcli.add_verbs(verb)
    from supervisor.updatecli import add_update_verb

    add_update_verb(verb)  # issue 26
    return parser


def _backup_verbs(verb: Verb) -> None:
    backup = verb("backup", "back up the world with restic, list, verify, prune, forget")
    sub = backup.add_subparsers(dest="backup_verb", required=True, metavar="VERB")
    create = verb("create", "save the world, snapshot it, verify it, apply retention", sub)
    create.add_argument("--tag", metavar="T", default=None, help="an extra tag on the snapshot")
    create.add_argument("--no-prune", action="store_true", help="keep every snapshot this time")
    create.add_argument(
        "--now", action="store_true", help="mode = stop: do not wait for the players"
    )
    listing = verb("list", "the stack's backups, newest first", sub)
    listing.add_argument("--json", action="store_true")
    verify = verb("verify", "read a backup back whole (or everything with --all)", sub)
    which = verify.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", default=None, help="a backup id or prefix, or latest")
    which.add_argument("--all", action="store_true", help="check --read-data of the repository")
    prune = verb("prune", "forget what the retention settings do not keep", sub)
    prune.add_argument("--dry-run", action="store_true", help="only show what would go")
    forget = verb("forget", "forget one backup (never a pinned one)", sub)
    forget.add_argument("id", help="a backup id or prefix")
    verb("key", "print the repository and its password (to restore elsewhere)", sub)
    restore = verb("restore", "put a backup's world in place; rolls back unless healthy", sub)
    restore.add_argument("id", help="a backup id or prefix, or latest")
    restore.add_argument("--now", action="store_true", help="do not wait for the players")


def _stack_verbs(verb: Verb) -> None:
    up = verb("up", "create or update the stack and start it")
    up.add_argument("--wait", action="store_true", help="return once both services are healthy")
    up.add_argument("--timeout", type=float, default=600.0, metavar="S", help="default 600")

    down = verb("down", "stop the stack gracefully and remove its containers")
    down.add_argument("--volumes", action="store_true", help="also remove the data volume")
    down.add_argument("--now", action="store_true", help=NOW_HELP)

    status = verb("status", "show each service's state and health")
    status.add_argument("--json", action="store_true")

    config = verb("config", "print the effective settings (secrets masked)")
    config.add_argument("--check", action="store_true", help="only validate")

    audit = verb("audit", "check the live containers against the policy")
    audit.add_argument("--json", action="store_true")

    verb("run", "reconcile, then supervise until SIGTERM or SIGINT")


def _service_verbs(verb: Verb) -> None:
    restart = verb("restart", "restart a service and clear its crash_loop or needs_auth state")
    restart.add_argument("service", choices=roles.NAMES)
    restart.add_argument("--now", action="store_true", help=NOW_HELP)

    verb("cancel", "cancel a pending drain (the players are told)")

    verb("health", "exit 0 when the running daemon's loop makes progress")

    secrets = verb("secrets", "manage the stack's generated secrets")
    secret_verbs = secrets.add_subparsers(dest="secrets_verb", required=True, metavar="VERB")
    rotate = verb(
        "rotate", "write new values, then restart the server and the manager", secret_verbs
    )
    rotate.add_argument("which", choices=sorted(ROTATIONS), nargs="?", default="all")
    rotate.add_argument("--now", action="store_true", help=NOW_HELP)

    auth = verb("auth", "show the Hytale login's URL and code and wait until it is done")
    auth.add_argument("--no-wait", action="store_true", help="print and return")
    auth.add_argument("--timeout", type=float, default=None, metavar="S",
                      help="give up waiting after S seconds (default: as long as HyOS waits)")  # fmt: skip

    exec_ = verb("exec", "run a command in a service's container as its service user")
    exec_.add_argument("service", choices=roles.NAMES)
    exec_.add_argument("--tty", "-t", action="store_true",
                       help="a terminal (interactive when stdin is one)")  # fmt: skip
    exec_.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD...")


def _output_verbs(verb: Verb) -> None:
    render = verb("render", "write the stack as manifests for another runtime (no Docker needed)")
    render.add_argument("target", choices=("kubernetes",))
    render.add_argument(
        "--namespace",
        metavar="NS",
        default=None,
        help="default: kubernetes.namespace, else the stack's name",
    )
    render.add_argument(
        "--output",
        "-o",
        metavar="DIR|-",
        default="-",
        help="a directory (one file per object + kustomization.yaml) "
        "or - for one YAML stream on stdout (default)",
    )
    render.add_argument("--with-secrets", action="store_true",
                        help="also render the Secret with freshly generated values "
                        "(written 0600); otherwise the manifests reference a Secret you create")  # fmt: skip

    logs = verb("logs", "print a service's container logs, or `logs prune` the game logs")
    logs.add_argument("service", choices=(*roles.NAMES, "prune"))
    logs.add_argument("--tail", type=int, default=100, metavar="N")
    logs.add_argument("--dry-run", action="store_true", help="prune: only show what would go")


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    for warning in settings.warnings():
        log.warning(warning)
    return settings


async def _with_engine(settings: Settings, job: Callable[[EnginePort], Awaitable[int]]) -> int:
    async with Engine.connect(settings.docker_host, settings.docker_retries) as engine:
        return await job(engine)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


async def _up(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    try:
        report = await bring_up(engine, settings, wait=args.wait, timeout=args.timeout)
    except NotReady as err:
        error_line(f"hyos-supervisor: {err}")
        for line in err.logs:
            error_line(f"  | {line}")
        return EX_FAILED
    if report.changed:
        for change in report.changes:
            print(change)
        ready = "healthy" if args.wait else "started"
        print(f"stack {settings.stack} is up ({ready})")
    else:
        print(f"stack {settings.stack} is up to date: nothing changed")
    return EX_OK


async def _drained_for_down(settings: Settings, now: bool) -> bool | None:
    """A running daemon drains the server first (supervisor/drains.py; `now`: at once),
    then holds (restarts nothing) while the stack is removed: True once it holds, False
    when the drain ended without acting, None when no daemon answers (nothing to drain)."""
    path = _socket_path(settings)
    try:
        request = {"command": "drain", "action": "stop", "now": now}
        reply = control.request(path, request, timeout=15)
    except control.DaemonNotRunning:
        return None
    if not reply.get("ok"):
        error_line(f"hyos-supervisor: down: {reply.get('error')}")
        return False
    if reply.get("pending"):
        print(reply.get("message"), flush=True)
    while True:
        view = control.live_view(path)
        if view is None:
            return None  # the daemon went away (and stopped the stack, or left it)
        if view.get("drain") is None:
            outcome = (view.get("last_drain") or {}).get("outcome")
            if outcome == "act":
                return True
            error_line(f"hyos-supervisor: down: the drain ended ({outcome}); nothing stopped")
            return False
        await anyio.sleep(1)


async def _down(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    held = await _drained_for_down(settings, args.now)
    if held is False:
        return EX_FAILED
    changes = await take_down(engine, settings, volumes=args.volumes)
    for change in changes:
        print(change)
    print(f"stack {settings.stack} is down" + ("" if changes else " (nothing to do)"))
    if held:
        with contextlib.suppress(control.DaemonNotRunning, OSError, ValueError):
            control.request(_socket_path(settings), {"command": "end"}, timeout=15)
            print("the supervisor daemon ends (it held the stack for down)")
    return EX_OK


def _format_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _daemon_view(settings: Settings) -> dict[str, Any] | None:
    return control.live_view(_socket_path(settings))


def _socket_path(settings: Settings) -> Path:
    return state_dir_for(settings) / f"{settings.stack}.{control.SOCKET_NAME}"


def _daemon_stop_marker(settings: Settings, by: str) -> Callable[[str], Awaitable[None]]:
    """The `backup` verbs' StopMarker (supervisor/backup.py): a daemon supervising the
    stack is told before the server is stopped, so it leaves it stopped; where none
    answers, nothing is told. A daemon that answers but refuses ends the verb before
    anything is stopped."""
    from supervisor.backup import BackupError

    async def mark(container_id: str) -> None:
        message = {"command": "mark-stop", "service": "server", "container": container_id,
                   "by": by}  # fmt: skip
        try:
            reply = await anyio.to_thread.run_sync(
                control.request, _socket_path(settings), message, 30.0
            )
        except control.DaemonNotRunning:
            return
        except (OSError, ValueError) as err:
            raise BackupError(
                f"the supervisor daemon did not answer ({err}); nothing stopped"
            ) from None
        if not reply.get("ok"):
            raise BackupError(
                f"the supervisor daemon would not leave the server stopped "
                f"({reply.get('error')}); nothing stopped"
            )

    return mark


async def _login(
    settings: Settings, engine: EnginePort, view: dict[str, Any] | None
) -> hyos.Login | None:
    """HyOS's login state: the daemon's (event-driven) view, else auth.json read through
    the engine from the server container (never by mounting the volume)."""
    if view is not None:
        found = (view.get("services", {}).get(Role.SERVER) or {}).get("login")
        return hyos.Login(found["status"], found["url"], found["code"]) if found else None
    servers = [o for o in await engine.list_stack(settings.stack) if o.role == Role.SERVER]
    if not servers:
        return None
    return hyos.parse_login(await engine.read_file(servers[0].id, hyos.AUTH_FILE))


async def _status(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    rows = await stack_status(engine, settings)
    view = _daemon_view(settings)
    for row in rows:
        supervised = (view or {}).get("services", {}).get(row["service"])
        row["supervisor"] = supervised
        if supervised:
            row["restart_count"] = supervised["restart_count"]
        if row["service"] == Role.SERVER:
            login = await _login(settings, engine, view)
            row["auth"] = login.to_json() if login is not None else None
    drained = {key: (view or {}).get(key) for key in ("drain", "last_drain", "next_window")}
    backup = _backup_view(settings)
    notifications = _outbox_view(settings)
    last_crash = crashcli.last_crash(settings)
    if backup is not None and backup["overdue"]:
        log.warning("the last successful backup is older than twice its interval",
                    extra={"age_s": backup["age_s"], "every": backup["every"]})  # fmt: skip
    if args.json:
        data = {"stack": settings.stack, "daemon": view is not None, "services": rows, **drained}
        if backup is not None:
            data["backup"] = backup
        if notifications is not None:
            data["notifications"] = notifications
        data["last_crash"] = last_crash
        data["update"] = _update_view(settings)
        _print_json(data)
        return EX_OK
    print(f"{'SERVICE':<9} {'STATE':<10} {'HEALTH':<10} {'SUPERVISOR':<11} {'UPTIME':<8} "
          f"{'RESTARTS':<8} {'EXIT':<5} IMAGE")  # fmt: skip
    for row in rows:
        exit_code = row.get("exit_code")
        supervised = row["supervisor"] or {}
        status = supervised.get("status", "-")
        if supervised.get("restart_in_s") is not None:
            status += f" {supervised['restart_in_s']:.0f}s"
        print(
            f"{row['service']:<9} {row['state']:<10} {row.get('health') or '-':<10} "
            f"{status:<11} {_format_uptime(row.get('uptime_s')):<8} "
            f"{row.get('restart_count', 0):<8} {'-' if exit_code is None else exit_code:<5} "
            f"{row.get('image') or '-'}"
        )
        if supervised.get("last_reason") and status != "running":
            print(f"          last: {supervised['last_reason']}")
        auth = row.get("auth") or {}
        if auth.get("status") == "pending" and auth.get("code"):
            print(f"          login: open {auth['url']} and enter {auth['code']}")
    for line in _drain_lines(view or {}):
        print(line)
    if backup is not None:
        print(status_line(backup))
    if notifications is not None:
        print(_outbox_line(notifications))
    if last_crash is not None:
        print(crashcli.last_crash_line(last_crash))
    from supervisor.updatecli import status_lines

    for line in status_lines(_update_view(settings)):
        print(line)
    if view is None:
        print("(no supervisor daemon answers: showing the engine's view only)")
    return EX_OK


def _drain_lines(view: dict[str, Any]) -> list[str]:
    """`status`'s words for the pending drain and the next schedule window."""
    lines = []
    pending = view.get("drain")
    if pending:
        players = "unknown" if pending.get("players") is None else pending["players"]
        if pending.get("postponed"):
            when = "postponed until the server is empty"
        else:
            when = f"deadline {pending['deadline']} (in {pending['deadline_in_s']} s)"
        warning = (
            f"; next warning {pending['next_warning']} (in {pending['next_warning_in_s']} s)"
            if pending.get("next_warning")
            else ""
        )
        lines.append(
            f"drain: {pending['action']} of the {Role.SERVER} pending, {when}; "
            f"players online: {players}{warning}"
        )
    if view.get("next_window"):
        lines.append(f"schedule: next restart window {view['next_window']}")
    return lines


def _backup_view(settings: Settings) -> dict[str, Any] | None:
    """The backups' part of `status`: read from the records, never from Docker or restic."""
    from supervisor.backup import records_path
    from supervisor.statefile import read_json

    zone = settings.schedule.zone
    return backup_status(
        read_json(records_path(settings)), settings.backup.every, time.time(), zone
    )


def _update_view(settings: Settings) -> dict[str, Any]:
    """The update's part of `status` (issue 26): from its journal, never from Docker."""
    from supervisor.updatecli import view

    return view(settings)


def _outbox_view(settings: Settings) -> dict[str, Any] | None:
    """The notification outbox's backlog: read from its files, never from a service."""
    from supervisor.alertsender import outbox_view

    return outbox_view(settings, time.time())


def _outbox_line(view: dict[str, Any]) -> str:
    """`notifications: 3 waiting (oldest 5m); last error: ...` or all delivered."""
    from supervisor.backupsettings import describe_age

    if not view["pending"]:
        return "notifications: all delivered"
    text = f"notifications: {view['pending']} waiting (oldest {describe_age(view['oldest_age_s'])})"
    if view["last_error"]:
        text += f"; last error: {view['last_error']}"
    return text


async def _auth(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    """Print the login's URL and code; unless --no-wait, wait until it is done."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    shown: str | None = None
    while True:
        login = await _login(settings, engine, _daemon_view(settings))
        if login is not None and login.waiting and login.code != shown:
            shown = login.code
            print(f"To log the server in to Hytale, open\n  {login.url}\nand enter the code "
                  f"{login.code}", flush=True)  # fmt: skip
            if args.no_wait:
                return EX_OK
        elif login is None or not login.waiting:
            status = login.status if login is not None else "unknown"
            if shown is None:
                print(f"no login is waiting (auth.json: {status})")
                return EX_OK if status == "authenticated" else EX_FAILED
            if status == "authenticated":
                print("logged in")
                return EX_OK
            print(f"the login ended without approval ({status}); the supervisor starts the "
                  f"server again for a fresh code in {settings.restart.auth_retry_s:g} s")  # fmt: skip
            return EX_FAILED
        if deadline is not None and time.monotonic() > deadline:
            error_line("hyos-supervisor: auth: timed out waiting for the login")
            return EX_FAILED
        await anyio.sleep(0.5)


async def _exec(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    """`exec server -- CMD`: as the service user, never root; the exit code passes through."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        error_line("hyos-supervisor: exec: no command; use e.g. `exec server -- ls /data`")
        return EX_USAGE
    service = settings.services()[args.service]
    if service.user.uid == 0:
        error_line(f"hyos-supervisor: exec: {args.service} runs as root; exec refuses root")
        return EX_FAILED
    running = [
        o for o in await engine.list_stack(settings.stack) if o.role == args.service and o.running
    ]
    if not running:
        error_line(f"hyos-supervisor: exec: the {args.service} container is not running")
        return EX_FAILED
    return await exec_command(engine, running[0].id, command, str(service.user), args.tty)


async def _restart(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    try:
        reply = control.request(
            _socket_path(settings),
            {"command": "restart", "service": args.service, "now": args.now},
        )
    except control.DaemonNotRunning:
        reply = None
    if reply is not None:
        print(reply.get("message") or reply.get("error"))
        return EX_OK if reply.get("ok") else EX_FAILED
    # No daemon: restart directly; the next daemon starts with a clean slate for it.
    containers = [o for o in await engine.list_stack(settings.stack) if o.role == args.service]
    if not containers:
        error_line(f"hyos-supervisor: no {args.service} container; run `up` first")
        return EX_FAILED
    ops = Operations(engine, settings, bind(logging.getLogger("supervisor.cli")), patient=False)
    for container in containers:
        await ops.restart(args.service, container.id, running=container.running)
    StateStore(state_path(settings)).forget(args.service)
    print(f"{args.service} restarted (no daemon running)")
    return EX_OK


async def _secrets(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    names = ROTATIONS[args.which]
    supplied = sorted(set(names) & set(settings.supplied_secrets()))
    if supplied:
        error_line(
            f"hyos-supervisor: {', '.join(supplied)} is supplied by you (HYOS_*_FILE); "
            "change it at its source instead"
        )
        return EX_FAILED
    if not settings.prepare:
        error_line("hyos-supervisor: secrets need the prepare step (prepare = true)")
        return EX_FAILED
    try:
        reply = control.request(
            _socket_path(settings),
            {"command": "rotate", "names": list(names), "now": args.now},
            timeout=900,
        )
    except control.DaemonNotRunning:
        reply = None
    if reply is not None:
        print(reply.get("message") or reply.get("error"))
        return EX_OK if reply.get("ok") else EX_FAILED
    ops = Operations(engine, settings, bind(logging.getLogger("supervisor.cli")), patient=False)
    await ops.rotate_and_restart(names)
    print(f"rotated {', '.join(names)}; server and manager restarted")
    return EX_OK


async def _logs(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    if args.service == "prune":
        return await crashcli.prune_logs(args, settings, engine)
    containers = [o for o in await engine.list_stack(settings.stack) if o.role == args.service]
    if not containers:
        error_line(f"hyos-supervisor: no {args.service} container")
        return EX_FAILED
    for line in await engine.logs_tail(containers[0].id, args.tail):
        print(line)
    return EX_OK


def _cancel(settings: Settings) -> int:
    """Cancel the daemon's pending drain (no engine needed: the daemon does it)."""
    try:
        reply = control.request(_socket_path(settings), {"command": "cancel"}, timeout=15)
    except control.DaemonNotRunning:
        error_line("hyos-supervisor: cancel: no daemon runs, so no drain is pending")
        return EX_FAILED
    if reply.get("ok"):
        print(reply.get("message"))
        return EX_OK
    error_line(f"hyos-supervisor: cancel: {reply.get('error')}")
    return EX_FAILED


def _health(settings: Settings) -> int:
    """For HEALTHCHECK: the daemon answers and its loop beat recently."""
    try:
        reply = control.request(_socket_path(settings), {"command": "health"}, timeout=5)
    except (control.DaemonNotRunning, OSError, ValueError) as err:
        error_line(f"unhealthy: {err}")
        return EX_FAILED
    limit = 3 * settings.reconcile_interval_s + 10
    age = float(reply.get("heartbeat_age_s", limit + 1))
    if age > limit:
        error_line(f"unhealthy: no progress for {age:.0f} s (limit {limit:.0f} s)")
        return EX_FAILED
    print(f"healthy: last progress {age:.1f} s ago")
    return EX_OK


async def _audit(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    findings: list[policy.Finding] = []
    observed = await engine.list_stack(settings.stack)
    if not observed:
        error_line(f"hyos-supervisor: stack {settings.stack} has no containers to audit")
        return EX_FAILED
    services = settings.services()
    runtime = await stack_runtime(engine, settings)
    ours = frozenset(filter(None, (runtime.machine_id_source, runtime.guard_socket)))
    for container in observed:
        if container.role not in services:
            continue  # e.g. a prepare helper caught mid-run
        info = await engine.inspect_hardening(container.id)
        if info is None:
            continue
        service = services[container.role]
        expect = policy.Expectation(
            stack=settings.stack,
            network=settings.network_name,
            cap_add=frozenset(service.cap_add),
            host_ips=frozenset(p.host_ip for p in service.port_bindings),
            allowed_binds=ours,
        )
        findings += policy.audit(info, expect)
    failed = [f for f in findings if not f.passed]
    if args.json:
        _print_json(
            [
                {
                    "container": f.container,
                    "rule": f.rule.id,
                    "title": f.rule.title,
                    "cis": f.rule.cis,
                    "pss": f.rule.pss,
                    "result": "PASS" if f.passed else "FAIL",
                    "detail": f.detail,
                    "fix": "" if f.passed else f.rule.fix,
                }
                for f in findings
            ]
        )
    else:
        print(f"{'CONTAINER':<22} {'CIS':<5} {'RULE':<22} {'RESULT':<6} DETAIL / FIX")
        for f in findings:
            passed_note = f.rule.pss if f.detail == "ok" else f.detail
            note = passed_note if f.passed else f"{f.detail}; fix: {f.rule.fix}"
            print(f"{f.container:<22} {f.rule.cis or '-':<5} {f.rule.id:<22} "
                  f"{'PASS' if f.passed else 'FAIL':<6} {note}")  # fmt: skip
        print(f"{len(findings) - len(failed)} passed, {len(failed)} failed")
    return EX_FAILED if failed else EX_OK


def _backup_key(settings: Settings) -> int:
    from supervisor import backupkey

    try:
        password, source = backupkey.password(settings, create=False)
    except backupkey.BackupKeyError as err:
        error_line(f"hyos-supervisor: {err}")
        return EX_FAILED
    repo = settings.backup.repository_for(settings.stack)
    print(f"repository: {repo.shown} ({repo.kind})")
    print(f"password:   {password.get_secret_value()}")
    print(f"source:     {source}")
    print("Keep both somewhere else than this machine. To restore on another machine, set")
    print("HYOS_BACKUP__REPOSITORY to the repository and HYOS_BACKUP__PASSWORD_FILE to a file")
    print("holding the password, then `hyos-supervisor backup list` and `backup restore ID`.")
    return EX_OK


async def _backup(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    from supervisor import alerts
    from supervisor.alertsender import alerts_for
    from supervisor.backup import BackupError, Backups
    from supervisor.backupkey import BackupKeyError
    from supervisor.restore import Restore

    verb = args.backup_verb
    by = f"`backup {verb}`"
    backups = Backups(engine, settings, mark_stop=_daemon_stop_marker(settings, by))
    # Written to the outbox here; the daemon's sender delivers it (at once if one runs).
    emit = alerts_for(settings, log).emit
    try:
        # A restore a killed supervisor left half done is finished or rolled back first.
        recovered = await Restore(backups).recover() if verb != "restore" else None
        if recovered is not None:
            print(f"an interrupted restore was {recovered}")
        if verb == "create":
            made = await backups.create(args.tag, prune=not args.no_prune, now=args.now)
            print(
                f"backup {made.id[:8]}: {made.files} files, {made.bytes} bytes "
                f"({made.added} new), tags {','.join(made.tags)}, "
                f"{'verified' if made.verified else 'NOT verified'}, {made.seconds:.1f} s"
            )
            if made.forgotten:
                print(f"retention forgot {len(made.forgotten)}: "
                      f"{' '.join(i[:8] for i in made.forgotten)}")  # fmt: skip
        elif verb == "list":
            rows = await backups.listing()
            if args.json:
                _print_json(rows)
                return EX_OK
            print(f"{'ID':<9} {'TIME (UTC)':<20} {'FILES':>7} {'SIZE':>12} {'VERIFIED':<9} "
                  f"{'VERSION':<16} TAGS")  # fmt: skip
            for row in rows:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["time"]))
                verified = {True: "yes", False: "FAILED", None: "-"}[row["verified"]]
                files = "-" if row["files"] is None else row["files"]
                size = "-" if row["size"] is None else row["size"]
                version = row["game_version"] or "-"
                print(f"{row['short_id']:<9} {when:<20} {files:>7} {size:>12} {verified:<9} "
                      f"{version:<16} {','.join(row['tags'])}")  # fmt: skip
        elif verb == "verify":
            done = await backups.verify(None if args.all else args.id)
            print(f"verified: {done}")
        elif verb == "prune":
            ids = await backups.prune(dry_run=args.dry_run)
            plan = backups.last_plan
            for snap in plan.keep:
                print(f"keep   {snap.id[:8]} ({', '.join(plan.reasons[snap.id])})")
            for snap in plan.forget:
                print(f"{'would forget' if args.dry_run else 'forgot'} {snap.id[:8]}")
            print(
                f"{len(plan.keep)} kept, {len(ids)} {'to forget' if args.dry_run else 'forgotten'}"
            )
        elif verb == "forget":
            print(f"forgot {(await backups.forget(args.id))[:8]}")
        elif verb == "restore":
            restored = await Restore(backups).run(args.id, now=args.now)
            print(f"restored {restored.snapshot[:8]} in {restored.seconds:.1f} s (server down "
                  f"{restored.downtime_s:.1f} s); the world before is backup "
                  f"{restored.pinned[:8]}")  # fmt: skip
            emit(
                alerts.restore_done(
                    settings.stack,
                    time.time(),
                    snapshot=restored.snapshot,
                    pinned=restored.pinned,
                    downtime_s=restored.downtime_s,
                )
            )
    except (BackupError, BackupKeyError) as err:
        error_line(f"hyos-supervisor: backup {verb}: {err}")
        if verb == "create":
            emit(alerts.backup_failed(settings.stack, time.time(), error=str(err), scheduled=False))
        return EX_FAILED
    return EX_OK


async def _update(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    from supervisor.updatecli import run_update

    return await run_update(args, settings, engine)


_ENGINE_VERBS: dict[str, Callable[[argparse.Namespace, Settings, EnginePort], Awaitable[int]]] = {
    "up": _up,
    "down": _down,
    "status": _status,
    "audit": _audit,
    "restart": _restart,
    "logs": _logs,
    "auth": _auth,
    "exec": _exec,
    "secrets": _secrets,
    "backup": _backup,
    "update": _update,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_format, getattr(logging, args.log_level))
    try:
        settings = _settings(args)
    except ConfigError as err:
        for problem in err.problems:
            error_line(f"hyos-supervisor: config error: {problem}")
        return EX_CONFIG
    if args.verb == "config":
        if not args.check:
            _print_json(settings.masked())
        else:
            print("settings are valid")
        return EX_OK
    if args.verb == "health":
        return _health(settings)
    if args.verb == "cancel":
        return _cancel(settings)
    if args.verb == "crashes":
        return crashcli.crashes(args, settings)
    if args.verb == "update":
        from supervisor.updatecli import refused_early

        refused = refused_early(args)
        if refused is not None:
            return refused
    if args.verb == "backup" and args.backup_verb == "key":
        return _backup_key(settings)
    if args.verb == "render":
        from supervisor.render import render_kubernetes  # PyYAML only when rendering

        return render_kubernetes(settings, args.namespace, args.output, args.with_secrets)
    try:
        if args.verb == "run":
            from supervisor.daemon import run_daemon

            return anyio.run(run_daemon, settings)
        verb = _ENGINE_VERBS[args.verb]
        return anyio.run(_with_engine, settings, lambda engine: verb(args, settings, engine))
    except DockerUnreachable as err:
        error_line(f"hyos-supervisor: {explain(err, settings)}")
        return EX_UNAVAILABLE
    except (StackError, EngineError) as err:
        error_line(f"hyos-supervisor: {explain(err, settings)}")
        return EX_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        # A bug: one line for the operator, the traceback for whoever debugs it.
        log.debug("internal error", exc_info=err)
        error_line(
            f"hyos-supervisor: internal error: {err!r}; this is a bug: "
            "run again with --log-level DEBUG for the traceback and report it"
        )
        return EX_SOFTWARE
