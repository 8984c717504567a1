"""systemd notification protocol (sd_notify), standard library only.

Each message is a single datagram on NOTIFY_SOCKET. Everything is a no-op when the
variable is unset, so the daemon calls these unconditionally (container, terminal,
systemd alike). Send errors are logged, never raised: a missing notify socket must
not take the supervisor down.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

import anyio

__all__ = ["Heartbeat", "Notifier", "watchdog_loop"]

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify datagrams to the socket named by ``NOTIFY_SOCKET``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _parse_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_s = _parse_watchdog(env)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when the
        watchdog is off or meant for another process (WATCHDOG_PID)."""
        if self._address is None or self._watchdog_s is None:
            return None
        return self._watchdog_s / 2

    def notify(self, message: str) -> bool:
        """Send one raw datagram; True if it was handed to the socket."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop on a full receive queue; drop instead.
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc, extra={"notify_message": message})
            return False
        return True

    def ready(self) -> bool:
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        # STATUS is one line: newlines would start new (bogus) assignments.
        line = " ".join(text.split())
        return self.notify(f"STATUS={line}")

    def watchdog(self) -> bool:
        if self.watchdog_interval() is None:
            return False
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _parse_address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        # Abstract namespace: a leading NUL byte instead of '@'.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    if value:
        # e.g. vsock: addresses (systemd >= 254 in VMs): not needed here.
        log.warning("ignoring unsupported NOTIFY_SOCKET %r", value)
    return None


def _parse_watchdog(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    try:
        micros = int(usec)
    except ValueError:
        return None
    if micros <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    # As in sd_watchdog_enabled(): the watchdog is for exactly that process.
    if pid and pid != str(os.getpid()):
        return None
    return micros / 1_000_000


class Heartbeat:
    """Progress marker: the daemon calls beat() whenever its main work makes progress
    (an event handled, a reconcile finished, an idle tick of its loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last_beat = clock()

    def beat(self) -> None:
        self.last_beat = self.clock()

    def age(self) -> float:
        return self.clock() - self.last_beat


async def watchdog_loop(
    notifier: Notifier,
    heartbeat: Heartbeat,
    *,
    interval_s: float | None = None,
    max_age_s: float | None = None,
) -> None:
    """Ping WATCHDOG=1 every interval while the heartbeat is fresh.

    A stale heartbeat (no beat within ``max_age_s``, default one interval) means the
    daemon is stuck somewhere even though this task still runs, so pings stop and
    systemd's watchdog restarts us. Returns at once when the watchdog is off.
    """
    interval = notifier.watchdog_interval() if interval_s is None else interval_s
    if interval is None or interval <= 0:
        return
    max_age = interval if max_age_s is None else max_age_s
    stale = False
    while True:
        age = heartbeat.age()
        if age <= max_age:
            stale = False
            notifier.watchdog()
        elif not stale:
            stale = True  # log once per stale episode, not every interval
            log.warning("heartbeat stale for %.1f s: withholding watchdog pings", age)
        await anyio.sleep(interval)
