#!/usr/bin/python3
"""Fake `java` for the HyOS server replica: the JVM running HytaleServer.jar (with HyOS's
REST API plugin) as seen from outside the process, invoked the way HyOS's entrypoint.sh
does it: java <JVM options> -jar /data/Server/HytaleServer.jar <server options>.

JVM       -Dname=value properties. Netty's QUIC native library is copied into
          java.io.tmpdir (default /tmp) and dlopen()ed there: a noexec tmpdir fails with
          UnsatisfiedLinkError ... failed to map segment from shared object, exit 1.
          SIGTERM, SIGINT, SIGHUP (unless inherited ignored) run the shutdown hook, which
          saves the world, then exit 128+signal (143 after SIGTERM). No jar: exit 1.
Server    Hytale-style log lines on stdout and in ./logs/<date>_server.log; --assets must
          exist; UDP socket on --bind; plugins from --mods (jars with a manifest.json);
          --session-token/--identity-token must be live tokens from the fake Hytale cloud
          (else exit 2, authentication failed) unless --auth-mode=offline; "stop" on stdin
          saves and exits 0. The save writes <universe>/save-marker.json atomically
          (universe: --universe or ./universe): {saves, saved_at, reason, version, pid}.
Plugin    the REST API (hytale_api.py) when com.hytale:HytaleAPI is among the plugins.

Test controls: $HYOS_FAKE_CONTROL_DIR/java-exit (default $DATA_DIR/.test): when it
appears the server deletes it and exits with the code it holds, without saving.
$HYOS_FAKE_CONTROL_DIR/versions.json: how each game version behaves (the jar's
Implementation-Version), `{"<version>": {...}}` with any of: "migrate": true (at boot,
rewrite every file of the universe and add migrated.json, as a format migration would;
with "migrate_pad_mb": N it also writes N MiB into universe/migration.pad, and a disk
that fills meanwhile crashes it, exit 1),
"boot": "crash" (exit `exit_code`, default 1, before "Booted") or "hang" (never print
"Booted", never bind the game port or the REST API; a signal still ends it), and
"crash_after_s": N (exit `exit_code` N seconds after "Booted", without saving).
HYOS_FAKE_BOOT_SECONDS (1): start to "Booted"; HYOS_FAKE_SAVE_SECONDS (0.5): the save.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, TextIO

import fakejwt
import hytale_api
from hytale_cloud import KEY as CLOUD_KEY

NATIVE = Path("/opt/hyos-fakes/native/libnetty_quiche_linux_x86_64.so")
VALUED = {"--assets", "--bind", "--session-token", "--identity-token", "--owner-uuid"}


class Log:
    def __init__(self, logs_dir: Path) -> None:
        logs_dir.mkdir(parents=True, exist_ok=True)
        name = time.strftime("%Y-%m-%d_%H-%M-%S_server.log")
        self.file: TextIO = (logs_dir / name).open("a", buffering=1)

    def __call__(self, logger: str, message: str, level: str = "INFO") -> None:
        line = (
            f"[{time.strftime('%Y/%m/%d %H:%M:%S')} {level:>6}] {'[' + logger + ']':>24} {message}"
        )
        print(line, flush=True)
        self.file.write(line + "\n")


def parse(argv: list[str]) -> tuple[dict[str, str], Path | None, dict[str, str]]:
    """(system properties, jar, server options) from a java command line."""
    props: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i] != "-jar":
        if argv[i].startswith("-D"):
            name, _, value = argv[i][2:].partition("=")
            props[name] = value
        i += 1
    if i + 1 >= len(argv):
        return props, None, {}
    jar, rest, opts = Path(argv[i + 1]), argv[i + 2 :], {}
    j = 0
    while j < len(rest):
        name, eq, value = rest[j].partition("=")
        if not eq and name in VALUED and j + 1 < len(rest):
            value, j = rest[j + 1], j + 1
        opts[name] = value if (eq or name in VALUED) else "true"
        j += 1
    return props, jar, opts


def load_quic_native(tmpdir: str) -> str:
    """Netty's NativeLibraryLoader: copy the library into tmpdir, load it, delete it."""
    path = ""
    try:
        fd, path = tempfile.mkstemp(prefix="libnetty_quiche_linux_x86_64", suffix=".so", dir=tmpdir)
        with os.fdopen(fd, "wb") as out, NATIVE.open("rb") as src:
            shutil.copyfileobj(src, out)
        lib = ctypes.CDLL(path)
        lib.quiche_version.restype = ctypes.c_char_p
        return str(lib.quiche_version().decode())
    except OSError as err:
        reason = str(err) if path and path in str(err) else f"{path or tmpdir}: {err}"
        print(
            'Exception in thread "main" java.lang.UnsatisfiedLinkError: could not load a '
            "native library: netty_quiche_linux_x86_64\n"
            "\tat io.netty.util.internal.NativeLibraryLoader.load(NativeLibraryLoader.java)\n"
            "\tat io.netty.handler.codec.quic.Quic.<clinit>(Quic.java)\n"
            f"\tSuppressed: java.lang.UnsatisfiedLinkError: {path or tmpdir}: {reason}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1) from err
    finally:
        if path:
            Path(path).unlink(missing_ok=True)


def jar_version(jar: Path) -> str:
    with zipfile.ZipFile(jar) as zf:
        manifest = zf.read("META-INF/MANIFEST.MF").decode()
    for line in manifest.splitlines():
        if line.startswith("Implementation-Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def plugins(mods_dir: str, log: Log) -> list[str]:
    """Group:Name of every plugin jar in --mods that has a manifest.json."""
    found = []
    for jar in sorted(Path(mods_dir).glob("*.jar")) if mods_dir else []:
        try:
            with zipfile.ZipFile(jar) as zf:
                manifest = json.loads(zf.read("manifest.json"))
            ident = f"{manifest['Group']}:{manifest['Name']}"
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            log("PluginManager", f"Failed to load plugin {jar}", "SEVERE")
            continue
        log("PluginManager", f"Loaded plugin {ident} from path {jar}")
        found.append(ident)
    return found


def control_file(name: str) -> Path:
    base = os.environ.get("HYOS_FAKE_CONTROL_DIR") or f"{os.environ.get('DATA_DIR', '/data')}/.test"
    return Path(base, name)


def save_world(universe: Path, reason: str, version: str, log: Log) -> None:
    log("World|default", "Saving Chunks...")
    time.sleep(float(os.environ.get("HYOS_FAKE_SAVE_SECONDS") or 0.5))
    marker = universe / "save-marker.json"
    try:
        saves = int(json.loads(marker.read_text()).get("saves", 0))
    except (OSError, ValueError):
        saves = 0
    universe.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    record = {"saves": saves + 1, "saved_at": time.time(), "reason": reason, "version": version}
    tmp.write_text(json.dumps({**record, "pid": os.getpid()}))
    tmp.replace(marker)
    log("World|default", "Done Saving Chunks!")
    log("PlayerSavingSystems", "Saving Players...")


def behaviour(version: str) -> dict[str, Any]:
    """This version's entry of the versions.json control ({} when none)."""
    try:
        table = json.loads(control_file("versions.json").read_text())
    except (OSError, ValueError):
        return {}
    found = table.get(version) if isinstance(table, dict) else None
    return found if isinstance(found, dict) else {}


def migrate(universe: Path, version: str, log: Log) -> None:
    """A format migration: every file of the world rewritten (what a rollback must undo)."""
    log("Universe", f"Migrating the universe to {version}...")
    for path in sorted(p for p in universe.rglob("*") if p.is_file()):
        with path.open("ab") as out:
            out.write(f"\nmigrated to {version}\n".encode())
    (universe / "migrated.json").write_text(json.dumps({"version": version}))
    log("Universe", "Migration done")


def main(argv: list[str]) -> int:
    if argv[:1] in (["-version"], ["--version"]):
        print('openjdk version "25" (hyos-replica fake java)', file=sys.stderr)
        return 0
    props, jar, opts = parse(argv)
    if jar is None:
        print("Usage: java [options] -jar <jarfile> [args...]", file=sys.stderr)
        return 1
    if not jar.is_file():
        print(f"Error: Unable to access jarfile {jar}", file=sys.stderr)
        return 1
    stop = threading.Event()
    reason: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        reason.append(signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:  # the JVM keeps inherited SIG_IGN
            signal.signal(signum, on_signal)

    version = jar_version(jar)
    try:
        log = Log(Path("logs"))
    except OSError as err:
        print(
            f'Exception in thread "main" java.nio.file.AccessDeniedException: {Path.cwd()}/logs'
            f" ({err.strerror})",
            file=sys.stderr,
            flush=True,
        )
        return 1
    log("HytaleServer", f"Booting up HytaleServer - Version: {version}, Revision: hyos-replica")
    log("HytaleServer", "Setup phase...")
    if not Path(opts.get("--assets", "")).is_file():
        log("HytaleServer", f"Assets not found: {opts.get('--assets')}", "SEVERE")
        return 1
    acts = behaviour(version)
    failure_code = int(acts.get("exit_code", 1))
    if acts.get("migrate"):
        universe_dir = Path(opts.get("--universe") or "universe")
        migrate(universe_dir, version, log)
        try:
            with (universe_dir / "migration.pad").open("wb") as pad:
                for _ in range(int(acts.get("migrate_pad_mb", 0))):
                    pad.write(b"\0" * (1 << 20))
        except OSError as err:
            log("Universe", f"Migration failed: {err}", "SEVERE")
            return failure_code
    if acts.get("boot") == "crash":
        log("HytaleServer", f"Failed to boot {version} (test control versions.json)", "SEVERE")
        return failure_code
    if acts.get("boot") == "hang":
        log("HytaleServer", f"{version} hangs before booting (test control versions.json)")
        stop.wait()
        return 128 + signal.Signals[reason[0]]
    if opts.get("--auth-mode") != "offline" and "--session-token" in opts:
        tokens = (opts["--session-token"], opts.get("--identity-token", ""))
        if any(fakejwt.decode(t, CLOUD_KEY) is None for t in tokens):
            log("ServerAuthManager", "Session or identity token rejected", "SEVERE")
            return 2
    log("PluginManager", "Loading pending core plugins!")
    loaded = plugins(opts.get("--mods", ""), log)
    quiche = load_quic_native(props.get("java.io.tmpdir", "/tmp"))
    host, _, port = opts.get("--bind", "0.0.0.0:5520").rpartition(":")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind((host, int(port)))
    except OSError as err:
        log("QUICTransport", f"Failed to bind {host}:{port}: {err}", "SEVERE")
        return 1
    log("QUICTransport", f"Bound QUIC transport (quiche {quiche}) to /{host}:{port}")
    started = time.time()
    universe = Path(opts.get("--universe") or "universe")

    def status() -> dict[str, Any]:
        try:
            config = json.loads(Path("config.json").read_text())
        except (OSError, ValueError):
            config = {}
        return {
            "name": config.get("ServerName", "Hytale Server"),
            "motd": config.get("MOTD", ""),
            "playerCount": 0,
            "maxPlayers": config.get("MaxPlayers", 100),
            "uptime": int(time.time() - started),
            "memory": {"used": 256 << 20, "max": 1 << 30, "free": 768 << 20},
            "online": True,
            "version": version,
        }

    api = None
    if "com.hytale:HytaleAPI" in loaded:

        def stop_command() -> None:
            reason.append("stop command")
            stop.set()

        api = hytale_api.API(
            Path.cwd(),
            status,
            save=lambda: save_world(universe, "api", version, log),
            stop=stop_command,
            control=control_file,
        )
        api.start()
        log("HytaleAPI|P", f"REST API listening on http://{api.address[0]}:{api.address[1]}")

    def console() -> None:
        for line in sys.stdin:
            if line.strip().lstrip("/") == "stop":
                reason.append("stop command")
                stop.set()

    threading.Thread(target=console, daemon=True).start()
    stop.wait(float(os.environ.get("HYOS_FAKE_BOOT_SECONDS") or 1))
    banner = "=" * 95
    log("HytaleServer", banner)
    log(
        "HytaleServer",
        f"         Hytale Server Booted! [Multiplayer] took {time.time() - started:.3f}sec",
    )
    log("HytaleServer", banner)
    if "--session-token" not in opts:
        log("HytaleServer", "No server tokens configured. Use /auth login to authenticate.", "WARN")
    exit_file = control_file("java-exit")
    crash_at = (
        None if acts.get("crash_after_s") is None else time.time() + float(acts["crash_after_s"])
    )
    while not stop.wait(0.25):
        if crash_at is not None and time.time() >= crash_at:
            log("HytaleServer", f"{version} crashed (test control versions.json)", "SEVERE")
            return failure_code
        if exit_file.exists():
            code = int(exit_file.read_text().strip() or 1)
            exit_file.unlink()
            log("HytaleServer", f"Exiting with code {code} (test control java-exit)", "WARN")
            return code
    log("HytaleServer", f"Shutting down... ({reason[0]})")
    save_world(universe, reason[0], version, log)
    if api is not None:
        api.stop()
        log("PluginManager", "Shut down plugin com.hytale:HytaleAPI")
    log("HytaleServer", "Shutdown complete")
    return 0 if reason[0] == "stop command" else 128 + signal.Signals[reason[0]]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
