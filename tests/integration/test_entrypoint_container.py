"""The entrypoint inside the helper image on the real engine: PID 1, signals, user drop."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.enginelock import once_per_run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
IMAGE = "hyos-supervisor:dev"
BASE_IMAGE = "hyos-python-base:bookworm"

EXIT_UNKNOWN_USER = 65  # entrypoint.errors; literal so the test reads on its own


def docker(
    *args: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=check
    )


@pytest.fixture(scope="session")
def helper_image() -> str:
    if shutil.which("docker") is None or docker("version").returncode != 0:
        pytest.skip("no Docker engine answering")

    def build() -> None:
        for script in ("build-python-base.sh", "build-helper-image.sh"):
            out = subprocess.run(
                [str(REPO / "scripts" / script)],
                capture_output=True,
                text=True,
                timeout=900,
                env={
                    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "BASE_IMAGE": BASE_IMAGE,
                    "IMAGE": BASE_IMAGE if "base" in script else IMAGE,
                },
            )
            assert out.returncode == 0, f"{script} failed: {out.stderr[-2000:]}"

    once_per_run("entrypoint-images", build)  # every xdist worker asks; one builds
    return IMAGE


@pytest.fixture
def container_name() -> Iterator[Callable[[], str]]:
    """Unique names; every container made with one is removed, even on failure."""
    names: list[str] = []

    def make() -> str:
        names.append(f"hyos-ep-test-{secrets.token_hex(6)}")
        return names[-1]

    yield make
    for name in names:
        docker("rm", "-f", "-v", name, timeout=60)


def run(
    image: str, name: str, *args: str, docker_opts: tuple[str, ...] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    # The image's own ENTRYPOINT already names a user; these tests drive the bare init
    # (with a command) or the prepare step (without), each through its own subcommand.
    form = "init" if "--" in args else "prepare"
    return docker(
        "run", "--name", name, "--entrypoint", "python3", *docker_opts, image, "-m", "entrypoint",
        form, *args, timeout=timeout,
    )  # fmt: skip


def test_pid1_reaps_orphaned_zombies(helper_image: str, container_name: Callable[[], str]) -> None:
    script = textwrap.dedent(
        """
        import os, sys, time
        assert os.getppid() == 1, "the command must be PID 1's child"
        orphans = []
        for _ in range(100):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:                      # child: fork a grandchild, report it, exit
                gc = os.fork()
                if gc == 0:
                    os._exit(0)               # grandchild exits once orphaned
                os.write(w, str(gc).encode())
                os._exit(0)
            os.close(w)
            orphans.append(int(os.read(r, 32)))
            os.close(r)
            os.waitpid(pid, 0)
        def zombies():
            found = []
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        stat = open(f"/proc/{entry}/stat").read()
                    except OSError:
                        continue
                    if stat.rsplit(")", 1)[1].split()[0] == "Z":
                        found.append(int(entry))
            return found
        def still_there():
            return [p for p in orphans if os.path.exists(f"/proc/{p}")]
        # Until no zombie is left and no orphan still runs: a grandchild may not have
        # reached its exit yet (CI, loaded: alive=1 with no zombie, after no wait at all).
        deadline = time.monotonic() + 20
        while (zombies() or still_there()) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = zombies()
        alive = still_there()
        print(f"orphans={len(orphans)} zombies={len(left)} alive={len(alive)}")
        sys.exit(1 if left or alive else 0)
        """
    )
    out = run(helper_image, container_name(), "--user", "568:568", "--", "python3", "-c", script)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "orphans=100 zombies=0 alive=0" in out.stdout


def test_sigterm_reaches_child_and_code_propagates(
    helper_image: str, container_name: Callable[[], str]
) -> None:
    name = container_name()
    started = docker(
        "run",
        "-d",
        "--name",
        name,
        "--entrypoint",
        "python3",
        helper_image,
        "-m",
        "entrypoint",
        "--user",
        "568:568",
        "--",
        "sh",
        "-c",
        "trap 'echo got-term; exit 43' TERM; echo ready; while :; do sleep 0.1; done",
    )
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 30
    while "ready" not in docker("logs", name).stdout:
        assert time.monotonic() < deadline, "child never became ready"
        time.sleep(0.05)
    docker("kill", "--signal", "TERM", name, check=True)
    code = docker("wait", name, timeout=60).stdout.strip()
    assert code == "43"
    assert "got-term" in docker("logs", name).stdout


def test_signal_death_is_128_plus_signal(
    helper_image: str, container_name: Callable[[], str]
) -> None:
    out = run(
        helper_image, container_name(), "--user", "568:568", "--", "sh", "-c", "kill -USR1 $$"
    )
    assert out.returncode == 128 + 10


def test_root_start_drops_to_user(helper_image: str, container_name: Callable[[], str]) -> None:
    out = run(
        helper_image,
        container_name(),
        "--user",
        "568:568",
        "--",
        "grep",
        "-E",
        "^(Uid|Gid|Groups|CapEff|NoNewPrivs):",
        "/proc/self/status",
    )
    assert out.returncode == 0, out.stderr
    status = dict(line.split(":", 1) for line in out.stdout.splitlines())
    assert status["Uid"].split() == ["568"] * 4
    assert status["Gid"].split() == ["568"] * 4
    assert status["Groups"].split() == ["568"]
    assert status["CapEff"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"


def test_docker_user_passes_through(helper_image: str, container_name: Callable[[], str]) -> None:
    out = run(
        helper_image,
        container_name(),
        "--user",
        "568:568",
        "--prepare",
        "/tmp",
        "--",
        "sh",
        "-c",
        "id -u; id -g",
        docker_opts=("--user", "568:568"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["568", "568"]


def test_unknown_user_never_runs_command(
    helper_image: str, container_name: Callable[[], str]
) -> None:
    with tempfile.TemporaryDirectory(prefix="hyos-ep-test-") as d:
        out = run(
            helper_image,
            container_name(),
            "--user",
            "no-such-user",
            "--",
            "touch",
            "/mnt/ran",
            docker_opts=("-v", f"{d}:/mnt"),
        )
        assert out.returncode == EXIT_UNKNOWN_USER
        assert "unknown user" in out.stderr
        assert not (Path(d) / "ran").exists()


def test_prepare_step_on_a_root_owned_volume(
    helper_image: str, container_name: Callable[[], str]
) -> None:
    """What the supervisor's prepare step does: hardened one-shot container, JSON out."""
    with tempfile.TemporaryDirectory(prefix="hyos-ep-test-") as d:
        data = Path(d)
        (data / ".auth").mkdir()
        (data / ".auth" / "tokens.json").write_text("{}")
        (data / "Server").mkdir()
        opts = (
            "--network",
            "none",
            "--read-only",
            "--security-opt",
            "no-new-privileges",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
            "--cap-add",
            "FOWNER",
            "--cap-add",
            "DAC_OVERRIDE",
            "-v",
            f"{d}:/data",
        )
        args = ("--user", "568:568", "--machine-id", "/data/.hyos/machine-id", "--prepare", "/data")
        out = run(helper_image, container_name(), *args, docker_opts=opts)
        assert out.returncode == 0, out.stderr
        assert '"event":"prepared"' in out.stdout and '"failed":0' in out.stdout
        assert (data / "Server").stat().st_uid == 568
        assert oct((data / ".auth" / "tokens.json").stat().st_mode & 0o777) == "0o600"
        assert oct((data / ".hyos" / "machine-id").stat().st_mode & 0o777) == "0o444"
        again = run(helper_image, container_name(), *args, docker_opts=opts)
        assert '"changed":0' in again.stdout and '"created":false' in again.stdout
        # Owned by 568 now: let the temp dir cleanup (as root) proceed regardless.
