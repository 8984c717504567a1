"""The notification soak's sender process (tests/integration/test_notify_soak.py): the
daemon's AlertSender on a simulated clock, emitting events `--first` to `--last` (one
every `--gap` real seconds) while it sends, until killed.

Simulated time: `epoch + (now - epoch) * speed`, shared by every process of one soak
(the same `--epoch`), so ten simulated minutes of a receiver away take 6 s at speed 100
and the outbox's times stay consistent across kills. The sender's waits are divided by
the same speed (`AlertSender(time_scale=...)`).

    python -m tests.notifysoak --outbox DIR --url json://... --epoch T --speed 100 \
        --first 0 --last 250 --gap 0.01
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio

from supervisor import alerts
from supervisor.alertsender import AlertSender


class ScaledClock:
    def __init__(self, epoch: float, speed: float) -> None:
        self.epoch = epoch
        self.speed = speed

    def __call__(self) -> float:
        return self.epoch + (time.time() - self.epoch) * self.speed


def event(n: int) -> alerts.Alert:
    """Event n of a soak: its key names n (hyos/soak/backup_failed/<n>.000)."""
    return alerts.backup_failed("soak", float(n), error=f"soak event {n}", scheduled=True)


async def main(args: argparse.Namespace) -> None:
    clock = ScaledClock(args.epoch, args.speed)
    sender = AlertSender("soak", [args.url], Path(args.outbox), clock=clock, time_scale=args.speed)
    async with anyio.create_task_group() as tg:
        await tg.start(sender.run)
        for n in range(args.first, args.last):
            sender.emit(event(n))
            await anyio.sleep(args.gap)
        print(f"emitted {args.first}..{args.last - 1}", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--epoch", type=float, required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--last", type=int, default=0)
    parser.add_argument("--gap", type=float, default=0.0)
    anyio.run(main, parser.parse_args())
    sys.exit(0)
