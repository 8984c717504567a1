"""``python -m entrypoint``: prepare paths as root, drop privileges, run the command.

Two subcommands, each with its own options::

    python -m entrypoint prepare --user UID:GID [--prepare PATH]... [--full]
                         [--machine-id PATH] [--file-env-shim PATH] [--manager-config PATH]
                         [--secrets DIR [--secret NAME]... [--rotate NAME]... [--forget NAME]...
                          [--secrets-stdin]]
    python -m entrypoint init [--user UID[:GID]|NAME[:GROUP]] [--group-of PATH]
                         [--prepare PATH]... [--full] [--allow-root] -- COMMAND ARGS...

`prepare` is the supervisor's one-shot step: it prepares and exits 0, its results JSON
lines on stdout (one per path, see :mod:`entrypoint.contract`). `init` is a container's
PID 1: it prepares what it is asked to as root, drops privileges and runs the command;
its results are log lines on stderr, and the command's stdout stays its own. The older
flat form (every option, no subcommand) still works: without a command it is `prepare`,
with one `init`. Exit codes are listed in :mod:`entrypoint.errors`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from entrypoint.errors import (
    EXIT_NOT_WRITABLE,
    EXIT_PREPARE_FAILED,
    EXIT_ROOT_REFUSED,
    EXIT_SECRETS,
    EXIT_USAGE,
    EntrypointError,
)
from entrypoint.init import run_command
from entrypoint.perms import prepare_tree
from entrypoint.privileges import User, drop_privileges, group_of, resolve_user, set_no_new_privs
from entrypoint.stamp import Stamp

if TYPE_CHECKING:  # the contract (dataclasses, inspect) only when a request is built
    from entrypoint.contract import PrepareRequest

__all__ = ["Options", "main", "parse_args", "prepare_request"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise EntrypointError(EXIT_USAGE, message)


class Options(argparse.Namespace):
    user: str | None
    group_of: str | None
    prepare: list[str]
    machine_id: str | None
    allow_root: bool
    full: bool
    secrets: str | None
    secret: list[str]
    rotate: list[str]
    forget: list[str]
    secrets_stdin: bool
    file_env_shim: str | None
    manager_config: str | None
    command: list[str]


def _tree_options(p: _Parser) -> None:
    """What both subcommands prepare: ownership and safe modes of whole trees."""
    p.add_argument("--user", help="run as UID[:GID] or NAME[:GROUP]; prepared paths get this owner")
    p.add_argument(
        "--prepare",
        metavar="PATH",
        action="append",
        default=[],
        help="make the tree at PATH owned by --user with safe modes (repeatable)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="stat every entry, ignoring the stamp of the last complete prepare",
    )


def _step_options(p: _Parser) -> None:
    """The supervisor's prepare step: machine-id, secrets, the shim, the manager config."""
    p.add_argument(
        "--machine-id",
        metavar="PATH",
        help="write a stable machine-id (32 hex, mode 0444) unless PATH holds one",
    )
    p.add_argument(
        "--secrets",
        metavar="DIR",
        help="keep secret files (0600 in a 0700 dir owned by --user) in DIR, inside a --prepare path",
    )
    p.add_argument("--secret", metavar="NAME", action="append", default=[],
                   help="a secret to generate when missing (repeatable)")  # fmt: skip
    p.add_argument("--rotate", metavar="NAME", action="append", default=[],
                   help="replace this secret with a fresh value (repeatable)")  # fmt: skip
    p.add_argument("--forget", metavar="NAME", action="append", default=[],
                   help="scrub and remove this secret unless supplied (repeatable)")  # fmt: skip
    p.add_argument(
        "--secrets-stdin",
        action="store_true",
        help="read operator-supplied values as one JSON object line on stdin",
    )
    p.add_argument(
        "--file-env-shim",
        metavar="PATH",
        help="install the read-only shim that exports X from X_FILE, then execs the image",
    )
    p.add_argument(
        "--manager-config",
        metavar="PATH",
        help="drop what the supervisor wires from HyOS's manager-config.json; keep it 0600",
    )


def _init_options(p: _Parser) -> None:
    """A container's PID 1: whom to become, and what may be allowed."""
    p.add_argument("--group-of", metavar="PATH", help="also join the group owning PATH")
    p.add_argument("--allow-root", action="store_true", help="permit running the command as root")


# Every option's value when its subcommand does not have it.
_DEFAULTS: dict[str, Any] = {
    "user": None, "group_of": None, "prepare": [], "machine_id": None, "allow_root": False,
    "full": False, "secrets": None, "secret": [], "rotate": [], "forget": [],
    "secrets_stdin": False, "file_env_shim": None, "manager_config": None, "command": [],
}  # fmt: skip


def _parser(form: str) -> _Parser:
    doc = __doc__.splitlines()[0]
    p = _Parser(prog=f"python -m entrypoint {form}".rstrip(), description=doc)
    _tree_options(p)
    if form in ("prepare", ""):
        _step_options(p)
    if form in ("init", ""):
        _init_options(p)
        p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    return p


def prepare_request(opts: Options) -> PrepareRequest:
    """The prepare step these options ask for (the parser of contract.prepare_argv)."""
    from entrypoint.contract import PrepareRequest

    uid, _, gid = (opts.user or "").partition(":")
    if not (uid.isdigit() and gid.isdigit()):
        raise EntrypointError(EXIT_USAGE, f"--user {opts.user!r}: the prepare step needs UID:GID")
    return PrepareRequest(
        uid=int(uid),
        gid=int(gid),
        paths=tuple(opts.prepare),
        machine_id=opts.machine_id,
        file_env_shim=opts.file_env_shim,
        secrets_dir=opts.secrets,
        secrets=tuple(opts.secret),
        forget=tuple(opts.forget),
        rotate=tuple(opts.rotate),
        secrets_on_stdin=opts.secrets_stdin,
        manager_config=opts.manager_config,
    )


def parse_args(argv: Sequence[str]) -> Options:
    args = list(argv)
    form = args.pop(0) if args[:1] in (["prepare"], ["init"]) else ""
    command: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, command = args[:cut], args[cut + 1 :]
    if form == "prepare" and command:
        raise EntrypointError(EXIT_USAGE, "prepare runs no command; use init -- COMMAND")
    opts = _parser(form).parse_args(args, namespace=Options(**_DEFAULTS))
    if command and opts.command:
        raise EntrypointError(EXIT_USAGE, f"unexpected arguments before '--': {opts.command}")
    opts.command = command or opts.command
    if opts.command and opts.command[0].startswith("-"):
        raise EntrypointError(EXIT_USAGE, f"unknown option {opts.command[0]}")
    if form == "init" and not opts.command:
        raise EntrypointError(EXIT_USAGE, "init needs a command: init [OPTIONS] -- COMMAND ARGS...")
    return opts


def _emit(event: dict[str, Any], *, to_stdout: bool) -> None:
    """Machine-readable on stdout for the supervisor; a log line on stderr otherwise."""
    line = json.dumps(event, separators=(",", ":"))
    if to_stdout:
        print(line, flush=True)
    elif sys.stderr.isatty():
        details = " ".join(f"{k}={v}" for k, v in event.items() if k != "event" and v != [])
        print(f"entrypoint: {event['event']} {details}", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def _prepare(opts: Options, user: User | None, is_root: bool, to_stdout: bool) -> None:
    for path in opts.prepare:
        if not is_root:
            # docker run --user / runAsUser: ownership is the operator's job; just check.
            # os.path, not pathlib: pathlib's import is start-up time of every container.
            is_dir = os.path.isdir(path)  # noqa: PTH112
            writable = is_dir and os.access(path, os.W_OK | os.X_OK)
            _emit(
                {
                    "event": "prepare_skipped",
                    "path": path,
                    "reason": "not root",
                    "uid": os.geteuid(),
                    "writable": writable,
                },
                to_stdout=to_stdout,
            )
            if not writable:
                raise EntrypointError(
                    EXIT_NOT_WRITABLE, f"{path} is not writable by uid {os.geteuid()}"
                )
            continue
        if user is None:
            raise EntrypointError(EXIT_USAGE, "--prepare needs --user (the owner to set)")
        started = time.monotonic()
        stamp = Stamp(path, user.uid, user.gid)
        trust = None if opts.full else stamp.previous_ns()
        result = prepare_tree(path, user.uid, user.gid, trust_before_ns=trust)
        if not result.failed:
            stamp.record()
        _emit(
            {
                "event": "prepared",
                **result.as_dict(),
                "seconds": round(time.monotonic() - started, 3),
            },
            to_stdout=to_stdout,
        )
        if result.failed:
            raise EntrypointError(
                EXIT_PREPARE_FAILED,
                f"prepare {path}: {result.failed} entries could not be fixed, first: {result.failures[0]}",
            )


def _split_secrets_dir(opts: Options) -> tuple[str, list[str]]:
    """(trusted base, components to create without following symlinks)."""
    target = os.path.normpath(os.path.abspath(opts.secrets or ""))  # noqa: PTH100
    bases = [
        os.path.normpath(p) for p in opts.prepare if target.startswith(os.path.normpath(p) + "/")
    ]
    base = max(bases, key=len) if bases else os.path.dirname(target)  # noqa: PTH120
    return base, os.path.relpath(target, base).split("/")


def _secrets(opts: Options, user: User | None, is_root: bool, to_stdout: bool) -> None:
    from entrypoint.secretfiles import ensure_secrets  # secrets module: only when used

    supplied: dict[str, str] = {}
    if opts.secrets_stdin:
        line = sys.stdin.readline()
        try:
            data = json.loads(line or "{}")
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise EntrypointError(
                EXIT_SECRETS, "--secrets-stdin expects one JSON object of strings"
            )
        supplied = data
    owner = (user.uid, user.gid) if is_root and user is not None else None
    base, parts = _split_secrets_dir(opts)
    result = ensure_secrets(
        base, parts, opts.secret, owner, rotate=opts.rotate, supplied=supplied, forget=opts.forget
    )
    _emit({"event": "secrets", "path": opts.secrets, **result}, to_stdout=to_stdout)


def run(opts: Options) -> int:
    is_root = os.geteuid() == 0
    to_stdout = not opts.command
    # Resolve first: an unknown user fails before anything is touched or run.
    user = resolve_user(opts.user) if opts.user is not None else None
    if opts.machine_id is not None:
        from entrypoint.machine_id import ensure_machine_id  # secrets/re: import only when used

        owner = (user.uid, user.gid) if is_root and user is not None else None
        created = ensure_machine_id(opts.machine_id, owner)
        _emit(
            {"event": "machine_id", "path": opts.machine_id, "created": created},
            to_stdout=to_stdout,
        )
    if opts.secrets is not None:
        _secrets(opts, user, is_root, to_stdout)
    if opts.file_env_shim is not None:
        from entrypoint.file_env import install_shim

        written = install_shim(opts.file_env_shim)
        _emit(
            {"event": "file_env_shim", "path": opts.file_env_shim, "written": written},
            to_stdout=to_stdout,
        )
    if opts.manager_config is not None:
        from entrypoint.managerconfig import clean_manager_config

        owner = (user.uid, user.gid) if is_root and user is not None else None
        cleaned = clean_manager_config(opts.manager_config, owner)
        _emit(
            {"event": "manager_config", "path": opts.manager_config, **cleaned},
            to_stdout=to_stdout,
        )
    _prepare(opts, user, is_root, to_stdout)
    if not opts.command:
        return 0
    if is_root:
        if user is None:
            if not opts.allow_root:
                raise EntrypointError(
                    EXIT_ROOT_REFUSED, "no --user given; running as root needs --allow-root"
                )
        else:
            if opts.group_of is not None:
                gid = group_of(opts.group_of)
                user = User(
                    user.uid, user.gid, tuple(sorted({*user.groups, gid})), user.name, user.home
                )
            drop_privileges(user, allow_root=opts.allow_root)
    else:
        set_no_new_privs()  # already unprivileged: still close the setuid-binary door
    return run_command(opts.command)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(parse_args(sys.argv[1:] if argv is None else argv))
    except EntrypointError as err:
        print(f"entrypoint: {err.message}", file=sys.stderr, flush=True)
        return err.code
