"""Integration fixtures: a real Docker engine, the stand-in images, unique stacks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from supervisor import control
from tests.enginelock import EngineLock, once_per_run
from tests.harness import REPO, Daemon, DaemonExited, docker, inspect, poll
from tests.harness import restart_dockerd as harness_restart_dockerd
from tests.standin import remove_stack_objects, standin_env

__all__ = ["REPO", "docker", "inspect"]  # the tests' Docker helpers, from tests.harness


def proc_status(container: str) -> dict[str, str]:
    """/proc/1/status inside the container, as a dict."""
    text = docker("exec", container, "cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture(scope="session", autouse=True)
def engine_shared() -> Iterator[EngineLock]:
    """This session uses the engine: a test that restarts it waits until the session ends
    (tests.enginelock)."""
    lock = EngineLock()
    lock.share()
    yield lock
    lock.close()


@pytest.fixture(autouse=True)
def engine_alone(request: pytest.FixtureRequest, engine_shared: EngineLock) -> Iterator[None]:
    """An `engine_restart` test has the engine to itself: no other session's containers on
    it while it restarts dockerd. (Autouse: set up before the test's stack and daemon.)"""
    if request.node.get_closest_marker("engine_restart") is None:
        yield
        return
    with engine_shared.alone():
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`engine_restart` tests last: dispatched when the other workers' queues are nearly
    empty, they wait the least for the engine to themselves."""
    items.sort(key=lambda item: item.get_closest_marker("engine_restart") is not None)


def build_test_images() -> None:
    subprocess.run(["bash", str(REPO / "tests/images/build.sh")], check=True, timeout=300)
    # The supervisor's own image doubles as the prepare helper (hyos-supervisor:<version>).
    subprocess.run(["sh", str(REPO / "scripts/build-helper-image.sh")], check=True, timeout=600)


@pytest.fixture(scope="session")
def test_images() -> None:
    ensure_test_images()


def ensure_test_images() -> None:
    if shutil.which("docker") is None or docker("version", check=False).returncode != 0:
        pytest.fail("integration tests need a running Docker engine (bash .ci/run starts one)")
    # Every xdist worker asks; the first builds, the others wait and reuse its images.
    once_per_run("test-images", build_test_images)


def own_supervisor_image(image: str) -> None:
    """The supervisor's image from this checkout under `image`, a tag of the module's own
    (the shared tags stay what CI built), once per run, and again if the tag went away
    meanwhile (the engine is shared); the stand-in images as `test_images` builds them."""

    def build() -> None:
        subprocess.run(
            ["bash", str(REPO / "scripts/build-image.sh")],
            check=True,
            timeout=900,
            env={**os.environ, "IMAGE": image},
        )

    ensure_test_images()
    once_per_run(f"image-{image}", build)
    if docker("image", "inspect", image, check=False).returncode != 0:
        build()


@dataclass
class Stack:
    """A uniquely named stack driven through the real CLI."""

    name: str
    env: dict[str, str]
    config: Path | None = None
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    def run(
        self,
        *args: str,
        timeout: float = 180,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
        **more_env: str,
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "supervisor", "--log-format", "json"]
        if self.config is not None:
            command += ["--config", str(self.config)]
        result = subprocess.run(
            [*command, *args],
            input=input_text,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {}), **more_env},
            timeout=timeout,
            cwd=REPO,
        )
        self.runs.append(result)
        return result

    def up(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = self.run("up", "--wait", "--timeout", "60", *args, env=env)
        assert result.returncode == 0, result.stderr
        return result

    def container(self, role: str) -> str:
        return f"{self.name}-{role}"

    def ids(self) -> dict[str, str]:
        """role -> id of every container carrying the stack's label, but the game-log
        helper's: the daemon runs one on its own (a crash report's reads, the daily prune),
        for about a second. (`leftovers` still finds one that stayed.)"""
        out = docker(
            "ps", "-a", "--no-trunc", "--filter", f"label=io.hyos.stack={self.name}",
            "--format", '{{.ID}} {{.Label "io.hyos.role"}}',
        ).stdout  # fmt: skip
        found: dict[str, str] = {}
        for line in out.splitlines():
            container_id, role = line.split()
            if role == "logs":
                continue
            assert role not in found, f"duplicate {role} containers"
            found[role] = container_id
        return found

    def orphans(self) -> list[str]:
        """Containers named like the stack's but without its labels."""
        named = set(
            docker("ps", "-aq", "--no-trunc", "--filter", f"name=^{self.name}-").stdout.split()
        )
        return sorted(named - set(self.ids().values()))

    def leftovers(self) -> list[str]:
        """Every object that carries the stack's label or name."""
        label = f"label=io.hyos.stack={self.name}"
        found = docker("ps", "-aq", "--filter", label).stdout.split()
        found += docker("ps", "-aq", "--filter", f"name=^{self.name}-").stdout.split()
        found += docker("network", "ls", "-q", "--filter", f"name=^{self.name}-net$").stdout.split()
        found += [
            v for v in docker("volume", "ls", "-q").stdout.split() if v.startswith(f"{self.name}-")
        ]
        return found


def base_env(stack: str, state_dir: Path | None = None) -> dict[str, str]:
    return standin_env(stack, state_dir)


@pytest.fixture
def stack(test_images: None) -> Iterator[Stack]:
    name = f"t{uuid.uuid4().hex[:10]}"
    # A short directory, not tmp_path: the guard's and the control socket's paths must fit
    # the 107 bytes of a Unix socket path, and xdist's tmp_path is deeper.
    state = Path(tempfile.mkdtemp(prefix="hs-"))
    yield Stack(name, base_env(name, state / "state"))
    remove_stack_objects(name)
    shutil.rmtree(state, ignore_errors=True)


# --- the supervisor daemon as a subprocess ---------------------------------------------


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    try:
        return poll(check, timeout, what, interval)
    except TimeoutError as err:
        pytest.fail(str(err))


@dataclass
class DaemonProc(Daemon):
    """One `hyos-supervisor run` of a test's stack; failures become pytest failures."""

    def events(self, message: str, **match: Any) -> list[dict[str, Any]]:
        return self.lines(message, **match)

    def wait_log(
        self, message: str, timeout: float = 15, count: int = 1, **match: Any
    ) -> list[dict[str, Any]]:
        """Until at least `count` lines with this message (and these fields) were logged."""
        try:
            return self.wait_lines(message, count, timeout, **match)
        except (TimeoutError, DaemonExited) as err:
            pytest.fail(str(err))

    def assert_alive(self) -> None:
        try:
            self.check_alive()
        except DaemonExited as err:
            pytest.fail(str(err))

    def service(self, role: str) -> dict[str, Any]:
        result: dict[str, Any] = self.service_view()["services"][role]
        return result

    def wait_healthy(
        self, timeout: float = 30, roles: tuple[str, ...] = ("server", "manager")
    ) -> None:
        def healthy() -> bool:
            self.assert_alive()
            return self.healthy(roles)

        try:
            poll(healthy, timeout, f"{roles} healthy in the daemon's view", interval=0.1)
        except TimeoutError as err:
            # What the daemon saw and did: a flake in CI must be explainable from its output.
            pytest.fail(f"{err}; the daemon's view: {self.view()}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The daemon's last log lines without DEBUG, one per line, for failure messages."""
        kept = [line for line in self.lines() if line.get("level") != "DEBUG"][-lines:]
        return "\n".join(json.dumps(line) for line in kept)

    def holds(self, check: Callable[[], None], passes: int = 2, timeout: float = 30) -> None:
        """A negative wait: `check` keeps passing while the daemon completes `passes` more
        reconcile passes (each one a chance to act: the proof that time passed for it).
        Start the daemon with a short HYOS_RECONCILE_INTERVAL_S."""
        seen = self.service_view()["reconciles"]

        def looked_again() -> bool:
            check()
            self.assert_alive()
            return bool(self.service_view()["reconciles"] >= seen + passes)

        wait_for(looked_again, timeout, f"{passes} more reconcile passes", interval=0.1)
        check()

    def service_view(self) -> dict[str, Any]:
        view = self.view()
        assert view is not None, "the daemon does not answer on its control socket"
        return view

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


class DaemonFactory:
    """Starts daemons for one stack; every one of them is stopped on teardown."""

    def __init__(self, stack: Stack, tmp_path: Path) -> None:
        self.stack = stack
        self.tmp_path = tmp_path
        self.started: list[DaemonProc] = []

    def __call__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
        timeout: float = 45,
        nofile: int | None = None,
        **more_env: str,
    ) -> DaemonProc:
        """A daemon with the stack's environment plus `env` and `more_env`. `nofile` caps
        its file descriptors (RLIMIT_NOFILE), as systemd does."""
        index = len(self.started)
        state_dir = Path(self.stack.env["HYOS_STATE_DIR"])
        launched = Daemon.launch(
            {**self.stack.env, **(env or {}), **more_env},
            self.tmp_path / f"daemon-{index}.log",
            state_dir / f"{self.stack.name}.{control.SOCKET_NAME}",
            nofile,
        )
        daemon = DaemonProc(launched.proc, launched.log_path, launched.socket_path)
        self.started.append(daemon)
        if wait:
            daemon.wait_healthy(timeout)
        return daemon

    def close(self) -> None:
        for daemon in self.started:
            daemon.stop(signal.SIGTERM, timeout=30)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report on the item, for fixtures that explain a failure at teardown."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@contextmanager
def daemons_for(
    stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[DaemonFactory]:
    """Daemons for `stack`, every one stopped at the end (SIGTERM, SIGKILL after 30 s); a
    failed test gets each daemon's last log lines (captured output of the teardown): a
    flake must explain itself."""
    factory = DaemonFactory(stack, tmp_path)
    try:
        yield factory
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            for index, started in enumerate(factory.started):
                print(f"--- daemon {index}: its last log lines ---\n{started.log_tail(80)}")
        factory.close()


@pytest.fixture
def daemon(stack: Stack, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    """`daemon(**env)` starts `hyos-supervisor run` for the stack and waits until both
    services are healthy; then the stack fixture removes every object of the stack."""
    with daemons_for(stack, tmp_path, request) as factory:
        yield factory


def started_at(container: str) -> str:
    return str(inspect(container)["State"]["StartedAt"])


def restart_dockerd(log_fallback: Path) -> None:
    """Restart THE engine (tests.harness.restart_dockerd); a timeout fails the test."""
    try:
        harness_restart_dockerd(log_fallback)
    except TimeoutError as err:
        pytest.fail(str(err))
