"""The CLI's verbs for crash reports and bounded game logs (issue 27), kept out of cli.py
so that module only wires them: `crashes [--json]`, `crashes show ID [--json]`, the
last report's line in `status`, and `logs prune [--dry-run]`.

Reports are read from the state dir directly: no daemon and no engine are needed to list
or show them. Pruning the game logs goes through the one-shot helper container
(supervisor/gamelogs.py), as the daemon's daily turn does.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from supervisor import gamelogs, logprune
from supervisor.crashes import list_reports, load_report, reports_dir
from supervisor.crashreport import render
from supervisor.logs import error_line
from supervisor.ports import EnginePort
from supervisor.settings import Settings

__all__ = ["add_verbs", "crashes", "last_crash", "last_crash_line", "prune_logs"]

EX_OK = 0
EX_FAILED = 1


def add_verbs(verb: Callable[..., argparse.ArgumentParser]) -> None:
    crashes = verb("crashes", "list the crash reports (newest first), or show one")
    crashes.add_argument("--json", action="store_true")
    crash_verbs = crashes.add_subparsers(dest="crashes_verb", metavar="VERB")
    show = verb("show", "print one crash report", crash_verbs)
    show.add_argument("id", help="a report id or an unambiguous prefix")
    show.add_argument("--json", action="store_true")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def crashes(args: argparse.Namespace, settings: Settings) -> int:
    """`crashes [--json]` and `crashes show ID [--json]`."""
    if getattr(args, "crashes_verb", None) == "show":
        document = load_report(settings, args.id)
        if document is None:
            error_line(
                f"hyos-supervisor: crashes show: no report {args.id!r} in "
                f"{reports_dir(settings)}; `hyos-supervisor crashes` lists them"
            )
            return EX_FAILED
        if args.json:
            _print_json(document)
        else:
            print("\n".join(render(document)))
        return EX_OK
    found = list_reports(settings)
    if args.json:
        _print_json([s.to_json() for s in found])
        return EX_OK
    if not found:
        print(f"no crash reports (in {reports_dir(settings)})")
        return EX_OK
    print(f"{'ID':<36} {'SERVICE':<8} {'EXIT':<5} {'DECISION':<16} REASON")
    for item in found:
        code = "-" if item.exit_code is None else str(item.exit_code)
        print(f"{item.id:<36} {item.service:<8} {code:<5} {item.decision or '-':<16} {item.reason}")
    return EX_OK


def last_crash(settings: Settings) -> dict[str, Any] | None:
    """The newest crash report's summary, read from the state dir (no Docker, no daemon)."""
    found = list_reports(settings, limit=1)
    return found[0].to_json() if found else None


def last_crash_line(summary: dict[str, Any]) -> str:
    return (
        f"last crash: {summary['id']} ({summary['service']}, {summary['died_at']}): "
        f"{summary['reason']}; `hyos-supervisor crashes show {summary['id']}`"
    )


async def prune_logs(args: argparse.Namespace, settings: Settings, engine: EnginePort) -> int:
    """`logs prune [--dry-run]`: bound HyOS's game logs now, as the daemon does daily."""
    if not await engine.list_stack(settings.stack):
        error_line(
            f"hyos-supervisor: logs prune: the stack {settings.stack!r} has no containers; "
            "run `hyos-supervisor up` first"
        )
        return EX_FAILED
    if not await engine.image_exists(settings.helper_image):
        error_line(
            f"hyos-supervisor: logs prune: the helper image {settings.helper_image} is missing; "
            "build or pull it (helper_image)"
        )
        return EX_FAILED
    if args.dry_run:
        files = await gamelogs.listing(engine, settings)
        actions = logprune.plan(files, time.time(), settings.logs.policy())
        for action in actions:
            print(f"would {action.op} {action.path} ({action.why})")
        if not actions:
            print("nothing to prune")
        return EX_OK
    done = await gamelogs.prune(engine, settings)
    print(
        f"gzipped {done['gzipped']}, deleted {done['deleted']}, failed {done['failed']}; "
        f"freed {done['freed_bytes']} bytes"
    )
    return EX_FAILED if done["failed"] else EX_OK
