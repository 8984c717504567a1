"""`hyos-supervisor update [--version V] [--now] [--resolved]` and `status`'s update lines
(issue 26). With a daemon running, the request goes to it (drained like `restart server`,
carried out by the server's worker); without one, this process runs the same transaction
(supervisor/updater.py), drained first unless `--now`."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from supervisor import control, drain, hyos, update
from supervisor.alertsender import alerts_for
from supervisor.backup import BackupError, Backups
from supervisor.drain import Kind
from supervisor.drainer import Drainer
from supervisor.logs import error_line
from supervisor.ports import EnginePort
from supervisor.settings import Settings
from supervisor.store import state_dir_for
from supervisor.update import Outcome, Source, Transaction
from supervisor.updater import Updater, UpdateRefused, bad_version, update_view

__all__ = ["add_update_verb", "run_update", "status_lines"]

log = logging.getLogger("supervisor.update")

EX_OK, EX_FAILED = 0, 1


def add_update_verb(verb: Any) -> None:
    parser: argparse.ArgumentParser = verb(
        "update", "update the game: snapshot, install, health gate; rolls back on failure"
    )
    parser.add_argument("--version", dest="target", metavar="V", default=None,
                        help="this version (also one marked bad after a failed update)")  # fmt: skip
    parser.add_argument("--now", action="store_true", help="do not wait for the players")
    parser.add_argument("--resolved", action="store_true",
                        help="the update that needs attention was restored by hand")  # fmt: skip


def _socket(settings: Settings) -> Path:
    return state_dir_for(settings) / f"{settings.stack}.{control.SOCKET_NAME}"


def _describe(tx: Transaction) -> str:
    last = f"{tx.previous or 'none'} -> {tx.target}"
    if tx.outcome is Outcome.APPLIED:
        return f"updated {last}; snapshot {(tx.snapshot or '')[:8]} pinned before it"
    if tx.outcome is Outcome.ROLLED_BACK:
        return f"update {last} rolled back ({tx.reason}); {tx.previous} runs again"
    if tx.outcome is Outcome.ABORTED:
        return f"update {last} not done, nothing was changed: {tx.reason}"
    return (
        f"update {last} FAILED and its rollback too ({tx.reason}); the server is stopped. "
        f"Restore with `{update.restore_command(tx.snapshot)}`"
    )


def refused_early(args: argparse.Namespace) -> int | None:
    """A malformed `--version`: one line, before any Docker call or daemon request."""
    if args.target is not None and hyos.game_version(args.target.encode()) != args.target:
        error_line(f"hyos-supervisor: update: {bad_version(args.target)}")
        return EX_FAILED
    return None


async def run_update(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    try:
        reply = control.request(
            _socket(settings),
            {"command": "update", "version": args.target, "now": args.now,
             "resolved": args.resolved},
            timeout=30,
        )  # fmt: skip
    except control.DaemonNotRunning:
        reply = None
    if reply is not None:
        if reply.get("ok"):
            print(reply.get("message"))
            return EX_OK
        error_line(f"hyos-supervisor: update: {reply.get('error')}")
        return EX_FAILED
    updater = Updater(engine, settings, Backups(engine, settings), tell=alerts_for(settings, log))
    if args.resolved:
        if updater.resolve():
            print("the update that needed attention is closed; the server is started again by `up`")
            return EX_OK
        error_line("hyos-supervisor: update: no update needs attention")
        return EX_FAILED
    try:
        recovered = await updater.recover()
        if recovered is not None:
            print(f"an interrupted update was finished: {_describe(recovered)}")
        tx = await updater.prepare(Source.CLI, args.target)
    except (UpdateRefused, BackupError) as err:
        error_line(f"hyos-supervisor: update: {err}")
        return EX_FAILED
    if not tx.stopped and not args.now and not await _drained(updater, tx):
        error_line("hyos-supervisor: update: the drain was cancelled; nothing was changed")
        return EX_FAILED
    ended = await updater.run(tx)
    print(_describe(ended))
    return EX_OK if ended.outcome is Outcome.APPLIED else EX_FAILED


async def _drained(updater: Updater, tx: Transaction) -> bool:
    """Players warned and waited for, the world saved (the daemon's drain, run here)."""
    policy = updater.settings.drain.policy()
    drainer = Drainer(policy, updater.api_for(tx.container), time.time, log)
    kind = await drainer.run(drain.start("update", time.time(), policy))
    return kind is Kind.ACT


def status_lines(view: dict[str, Any]) -> list[str]:
    """`status`'s words for the update section."""
    lines = []
    current, available = view.get("current"), view.get("available")
    head = f"game: {current or 'unknown'}"
    if available:
        head += f"; update available: {available}"
    if view.get("bad_versions"):
        head += f"; bad: {', '.join(view['bad_versions'])}"
    lines.append(head)
    tx = view.get("transaction")
    attention = view.get("needs_attention")
    if attention:
        lines.append(
            f"update NEEDS ATTENTION: {attention['reason']}; the server is stopped; "
            f"snapshot {(attention['snapshot'] or '')[:8]}: `{attention['restore']}`, then "
            "`hyos-supervisor update --resolved`"
        )
    elif tx:
        lines.append(
            f"update to {tx['version']}: {tx['phase']} ({tx['since_s']} s); "
            f"steps: {' -> '.join(tx['steps'])}"
        )
    last = view.get("last")
    if last and not attention:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(last.get("when") or 0))
        line = f"last update: {last['version']} {last['result']} at {when} UTC"
        if last.get("reason"):
            line += f" ({last['reason']})"
        lines.append(line)
    return lines


def view(settings: Settings) -> dict[str, Any]:
    return update_view(settings, time.time())
