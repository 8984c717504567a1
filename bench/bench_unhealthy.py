"""Unhealthy to restart: the engine's `health_status: unhealthy` event -> the supervisor's
restart of that container, beside docker-autoheal's polling.

Run: python -m bench.bench_unhealthy [--episodes 10]
Needs the engine and the stand-in images (bash tests/images/build.sh).

Each episode: the stand-in's /data/control/unhealthy is created (health check every
1 s, 2 retries), the engine emits `health_status: unhealthy`, the supervisor stops the
container (the engine's `kill` event, signal 15, is its stop call arriving) and starts it
again ("restarted" line, after the stand-in's world save); the file is then removed and
the episode ends at the engine's next `health_status: healthy` (the restarted server
serves again). Goal (issue 3): median unhealthy -> restart <= 1 s.
docker-autoheal polls every 5 s (AUTOHEAL_INTERVAL): a uniformly placed unhealthy
transition waits 2.5 s on average before it is even seen, then the same restart (the
engine's stop and start, the same health checks): its estimate to healthy is that mean
wait plus our measured stop call -> healthy.
"""

from __future__ import annotations

import argparse

from bench._daemon import Events, docker, log_time, median_ms, seconds, supervised_stack, wait_for

AUTOHEAL_INTERVAL_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    settings = {
        "HYOS_SERVER__HEALTHCHECK__INTERVAL": "1",
        "HYOS_SERVER__HEALTHCHECK__TIMEOUT": "2",
        "HYOS_SERVER__HEALTHCHECK__RETRIES": "2",
        "HYOS_SERVER__HEALTHCHECK__START_PERIOD": "1",
        "HYOS_RESTART__CRASH_LOOP_LIMIT": "100000",
        "HYOS_RESTART__RESTART_MANAGER_WITH_SERVER": "false",
    }
    to_stop, to_restarted, to_healthy = [], [], []
    with supervised_stack(settings) as daemon:
        server = f"{daemon.name}-server"
        events = Events(f"container={server}", "event=health_status", "event=kill")
        try:
            for n in range(1, args.episodes + 1):
                wait_for(daemon.healthy, 30, "a healthy stack", interval=0.05)
                events.drain()
                docker("exec", server, "touch", "/data/control/unhealthy")
                unhealthy = seconds(events.next("health_status: unhealthy"))
                kill = seconds(events.next("kill"))
                restarted = daemon.wait_lines("restarted", n, 30, service="server")[n - 1]
                docker("exec", server, "rm", "-f", "/data/control/unhealthy")
                healthy = seconds(events.next("health_status: healthy"))
                to_healthy.append(healthy - unhealthy)
                to_stop.append(kill - unhealthy)
                to_restarted.append(log_time(restarted["timestamp"]) - unhealthy)
        finally:
            events.close()
    stop, done = median_ms(to_stop), median_ms(to_restarted)
    healthy = median_ms(to_healthy)
    poll_wait = AUTOHEAL_INTERVAL_S / 2 * 1000
    autoheal = poll_wait + (healthy - stop)
    print(f"episodes: {args.episodes}")
    print(f"unhealthy event -> supervisor's stop call (kill event)  median {stop:7.1f} ms")
    print(f"unhealthy event -> restarted (stopped, saved, started)  median {done:7.1f} ms")
    print(f"unhealthy event -> healthy again                        median {healthy:7.1f} ms")
    print(
        f"docker-autoheal: polls every {AUTOHEAL_INTERVAL_S:g} s -> mean detection delay "
        f"{poll_wait:.0f} ms (up to {AUTOHEAL_INTERVAL_S * 1000:.0f} ms), then the same "
        f"restart: about {autoheal:.0f} ms to healthy"
    )
    print(
        f"headline: unhealthy -> healthy again, autoheal estimate / supervisor: "
        f"{autoheal / healthy:5.2f}x"
    )
    print(f"ratio autoheal mean detection / supervisor to stop call: {poll_wait / stop:6.1f}x")
    print(f"goal unhealthy -> restart <= 1 s: {'met' if stop <= 1000 else 'MISSED'}")


if __name__ == "__main__":
    main()
