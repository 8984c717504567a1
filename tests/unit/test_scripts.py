"""The setup and build scripts, run as their callers run them, with debootstrap and docker
stubbed first in PATH so that nothing is built: every script that reads the Debian mirror
facts reads them through scripts/lib/debian-mirror.sh and reaches debootstrap with the
right mirror and proxy (with and without apt's proxy, with DEBIAN_MIRROR, with the sources
in deb822 and in one-line form), and a failing script says so on stderr in one line.

The case that broke: apt without a proxy made build-python-base.sh (and so
`sh scripts/build-image.sh`, demo.sh and .ci/run) exit 1 without a word before debootstrap.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHELL_SCRIPTS = ("scripts/*.sh", "scripts/lib/*.sh", "tests/images/*.sh", "tests/upstream/*.sh")
DEBOOTSTRAP_STATUS = 7  # what the stub exits with: the script must stop there and say so

DEBOOTSTRAP = f"""#!/bin/sh
# Records its arguments and the proxy it was given, then fails: nothing gets built.
printf '%s\\n' "$@" > "$STUB_DIR/debootstrap.args"
printf '%s' "${{http_proxy:-}}" > "$STUB_DIR/debootstrap.proxy"
exit {DEBOOTSTRAP_STATUS}
"""

DOCKER = """#!/bin/sh
# `docker image inspect [-f FORMAT] NAME`: NAME exists unless it matches a pattern in
# STUB_MISSING; with -f it prints a made-up id. Anything else is unexpected.
echo "docker $*" >> "$STUB_DIR/docker.log"
set -f
for last; do :; done
for pattern in $STUB_MISSING; do
    case "$last" in $pattern) exit 1 ;; esac
done
if [ "$1 $2" = "image inspect" ]; then
    [ "$3" != "-f" ] || echo "sha256:stub"
    exit 0
fi
echo "docker stub: unexpected call: docker $*" >&2
exit 99
"""


@dataclass(frozen=True)
class Consumer:
    """A script that debootstraps from the mirror facts, and how it is run."""

    name: str
    command: tuple[str, ...]
    include: str  # debootstrap's --include=
    missing: str  # STUB_MISSING: the images docker must not find

    @property
    def script(self) -> str:
        return Path(self.command[-1]).name


CONSUMERS = [
    Consumer(
        "build-python-base",
        # As build-systemd.sh ran it, and as people do; it is bash now and re-execs.
        ("sh", "scripts/build-python-base.sh"),
        "python3",
        "hyos-ci-test/python-base:*",
    ),
    Consumer(
        "build-systemd",
        ("bash", "tests/images/build-systemd.sh"),
        "systemd,systemd-sysv,dbus,python3",
        "hyos-test/systemd:*",
    ),
    Consumer(
        "build-server",
        ("bash", "tests/upstream/build-server.sh"),
        "bash,coreutils,findutils,passwd,procps,curl,ca-certificates,jq,zip,unzip,iproute2,"
        "apache2-utils,tini,gosu,python3,openssl",
        "hyos-ci-test/server-base:* hyos-ci-test/server:*",
    ),
]

DEB822 = (
    "Types: deb\nURIs: http://mirror.lan/debian\nSuites: bookworm bookworm-updates\n"
    "Components: main\n\n"
    "Types: deb\nURIs: http://mirror.lan/debian-security\nSuites: bookworm-security\n"
    "Components: main\n"
)
ONE_LINE = (
    "deb http://mirror.lan/debian bookworm main\n"
    "deb http://mirror.lan/debian-security bookworm-security main\n"
)


@dataclass(frozen=True)
class Case:
    sources: str  # "deb822", "one-line" or "none"
    apt_proxy: str | None  # Acquire::http::Proxy in apt's configuration
    env: tuple[tuple[str, str], ...]
    mirror: str | None  # debootstrap's mirror argument (None: left to debootstrap)
    proxy: str  # the http_proxy debootstrap is given ("": none)


CASES = {
    "deb822, apt without a proxy": Case("deb822", None, (), "http://mirror.lan/debian/", ""),
    "one-line, apt without a proxy": Case("one-line", None, (), "http://mirror.lan/debian/", ""),
    "deb822, apt's proxy": Case(
        "deb822", "http://cache.lan:3142", (), "http://mirror.lan/debian/", "http://cache.lan:3142"
    ),
    "one-line, apt's proxy": Case(
        "one-line",
        "http://cache.lan:3142",
        (),
        "http://mirror.lan/debian/",
        "http://cache.lan:3142",
    ),
    "DEBIAN_MIRROR, no proxy": Case(
        "deb822", None, (("DEBIAN_MIRROR", "file:///srv/debian"),), "file:///srv/debian", ""
    ),
    "DEBIAN_MIRROR and http_proxy": Case(
        "one-line",
        "http://cache.lan:3142",
        (("DEBIAN_MIRROR", "http://other.lan/debian"), ("http_proxy", "http://squid.lan:3128")),
        "http://other.lan/debian",
        "http://squid.lan:3128",
    ),
    "no sources, no proxy": Case("none", None, (), None, ""),
}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """Stubs first in PATH, an apt tree of its own (APT_CONFIG), fake inputs the scripts
    read before debootstrap (HyOS's server sources, a current wheelhouse)."""
    if shutil.which("apt-get") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("apt-get is missing")
        pytest.skip("needs apt (Debian)")
    for part in ("bin", "etc/apt/sources.list.d", "etc/apt/apt.conf.d", "state/lists/partial"):
        (tmp_path / part).mkdir(parents=True)
    (tmp_path / "apt.conf").write_text(
        f'Dir::Etc "{tmp_path}/etc/apt";\nDir::State "{tmp_path}/state";\n'
    )
    for name, text in (("debootstrap", DEBOOTSTRAP), ("docker", DOCKER)):
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    # build-server.sh checks HyOS's sources before it builds the base.
    scripts = tmp_path / "hyos/server/scripts"
    scripts.mkdir(parents=True)
    (scripts / "entrypoint.sh").write_text("#!/bin/sh\n")
    # build-systemd.sh makes the wheelhouse current first: make it current already
    # (build-wheelhouse.sh's stamp: the runtime dependencies and the base image's id).
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with (ROOT / "pyproject.toml").open("rb") as handle:
        requirements = "\n".join(tomllib.load(handle)["project"]["dependencies"])
    (wheels / "requirements.txt").write_text(requirements + "\n")
    (wheels / "stub-0-py3-none-any.whl").write_text("")
    stamp = sha256(f"{requirements}\nsha256:stub\n".encode()).hexdigest()
    (wheels / ".stamp").write_text(stamp + "\n")
    return tmp_path


def run(
    sandbox: Path,
    command: tuple[str, ...],
    missing: str,
    extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DEBIAN_MIRROR", "MIRROR", "http_proxy", "FORCE", "FORCE_BASE"}
    }
    env.update(
        {
            "PATH": f"{sandbox / 'bin'}:{os.environ['PATH']}",
            "APT_CONFIG": str(sandbox / "apt.conf"),
            "STUB_DIR": str(sandbox),
            "STUB_MISSING": missing,
            # Tags nobody uses: whatever a script would do to them is not done to real images.
            "IMAGE": "hyos-ci-test/unused:1",
            "HYOS_UPSTREAM": str(sandbox / "hyos"),
            "WHEELHOUSE": str(sandbox / "wheels"),
            "TMPDIR": str(sandbox),
        }
    )
    env.update(extra or {})
    return subprocess.run(
        list(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def configure_apt(sandbox: Path, case: Case) -> None:
    if case.sources == "deb822":
        (sandbox / "etc/apt/sources.list.d/debian.sources").write_text(DEB822)
    elif case.sources == "one-line":
        (sandbox / "etc/apt/sources.list").write_text(ONE_LINE)
    if case.apt_proxy is not None:
        (sandbox / "etc/apt/apt.conf.d/30proxy").write_text(
            f'Acquire::http::Proxy "{case.apt_proxy}";\n'
        )


def failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.match(r"^\S+\.sh: step \"", line)]


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
@pytest.mark.parametrize("consumer", CONSUMERS, ids=[c.name for c in CONSUMERS])
def test_every_consumer_reaches_debootstrap_with_the_mirror_and_proxy(
    sandbox: Path, consumer: Consumer, case: Case
) -> None:
    configure_apt(sandbox, case)
    extra = {"BASE_IMAGE": "hyos-ci-test/server-base:1"} if consumer.name == "build-server" else {}
    if consumer.name == "build-python-base":
        extra = {"IMAGE": "hyos-ci-test/python-base:1", "FORCE": "1"}
    done = run(sandbox, consumer.command, consumer.missing, {**dict(case.env), **extra})
    reached = sandbox / "debootstrap.args"
    assert reached.exists(), (
        f"{consumer.script} never reached debootstrap (exit {done.returncode})\n"
        f"stdout: {done.stdout}\nstderr: {done.stderr}"
    )
    args = reached.read_text().splitlines()
    rootfs = args[3] if len(args) > 3 else ""
    assert args == [
        "--variant=minbase",
        f"--include={consumer.include}",
        "bookworm",
        rootfs,
        *([case.mirror] if case.mirror else []),
    ]
    assert rootfs.startswith(str(sandbox) + "/") or rootfs.startswith("/tmp/hyos-")
    assert (sandbox / "debootstrap.proxy").read_text() == case.proxy
    # debootstrap failed: the script stops there and says so, once, naming the step.
    assert done.returncode == DEBOOTSTRAP_STATUS
    lines = failure_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(
        rf'{re.escape(consumer.script)}: step "debootstrap" failed at line \d+( \(build_base\))?: '
        rf"debootstrap --variant=minbase .* exited with status {DEBOOTSTRAP_STATUS}",
        lines[0],
    ), lines[0]


def test_build_image_with_the_base_missing_reaches_debootstrap_and_says_where_it_failed(
    sandbox: Path,
) -> None:
    """The issue's reproduction: `sh scripts/build-image.sh` without the base image on a
    machine whose apt has no proxy (deb822 sources) exited 1 without a word."""
    configure_apt(sandbox, CASES["deb822, apt without a proxy"])
    done = run(
        sandbox,
        ("sh", "scripts/build-image.sh"),
        "hyos-ci-test/python-base:*",
        {"BASE_IMAGE": "hyos-ci-test/python-base:1"},
    )
    assert (sandbox / "debootstrap.args").read_text().splitlines()[-1] == (
        "http://mirror.lan/debian/"
    ), done.stderr
    assert done.returncode == DEBOOTSTRAP_STATUS
    lines = failure_lines(done.stderr)
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith('build-python-base.sh: step "debootstrap" failed at line ')
    assert re.fullmatch(
        r'build-image\.sh: step "base image" failed at line \d+: '
        r'IMAGE="\$BASE_IMAGE" bash "\$here/build-python-base\.sh" '
        rf"exited with status {DEBOOTSTRAP_STATUS}",
        lines[1],
    ), lines[1]
    # Never got as far as the wheelhouse or a docker build.
    calls = (sandbox / "docker.log").read_text().splitlines()
    assert calls and all(call.startswith("docker image inspect ") for call in calls), calls


def test_a_failure_inside_the_mirror_helper_names_the_helper(sandbox: Path) -> None:
    configure_apt(sandbox, CASES["deb822, apt without a proxy"])
    awk = sandbox / "bin/awk"  # the helper's pick of the mirror breaks
    awk.write_text("#!/bin/sh\ncat >/dev/null\nexit 2\n")
    awk.chmod(0o755)
    done = run(
        sandbox,
        ("sh", "scripts/build-python-base.sh"),
        "",
        {"IMAGE": "hyos-ci-test/python-base:1", "FORCE": "1"},
    )
    assert done.returncode == 2
    assert not (sandbox / "debootstrap.args").exists()
    lines = failure_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(
        r'build-python-base\.sh: step "mirror" failed in the helper '
        r"scripts/lib/debian-mirror\.sh line \d+ \(debian_mirror\): "
        r"debian_mirror_uri=\$\(.*\) exited with status 2",
        lines[0],
    ), lines[0]


def test_a_failing_pipeline_names_its_statuses(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.sh"
    script.write_text(
        f'. "{ROOT}/scripts/lib/errors.sh"\nHYOS_STEP="copy"\n'
        "echo ok\ntrue | false | cat >/dev/null\necho never\n"
    )
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (1, "ok\n")
    assert done.stderr == (
        'pipeline.sh: step "copy" failed at line 4: cat > /dev/null (last command of a '
        "pipeline; statuses: 0 1 0) exited with status 1\n"
    )


def test_a_status_the_script_tests_itself_is_no_failure(tmp_path: Path) -> None:
    script = tmp_path / "handled.sh"
    script.write_text(
        f'. "{ROOT}/scripts/lib/errors.sh"\n'
        "if ! false; then echo handled; fi\nfalse || echo or\nx=$(false) || echo subst\n"
        "set +e\nfalse\nset -e\necho done\n"
    )
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "handled\nor\nsubst\ndone\n",
        "",
    )


SETUP_AND_BUILD_SCRIPTS = [
    "scripts/setup.sh",
    "scripts/demo.sh",
    "scripts/build-python-base.sh",
    "scripts/build-image.sh",
    "scripts/build-wheelhouse.sh",
    "scripts/bench_compare.sh",
    "tests/images/build.sh",
    "tests/images/build-systemd.sh",
    "tests/upstream/build-server.sh",
    "tests/upstream/build-manager.sh",
    ".ci/run",
    ".ci/checks-packaging.sh",
    ".ci/demo-check.sh",
]


def test_every_setup_and_build_script_reports_its_failures() -> None:
    """Each one sources scripts/lib/errors.sh before anything that can fail."""
    for name in SETUP_AND_BUILD_SCRIPTS:
        lines = (ROOT / name).read_text().splitlines()
        code = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if code[0].startswith('[ -n "${BASH_VERSION:-}" ] || exec bash'):
            code = code[1:]
        assert re.fullmatch(
            r'\. "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)/.*lib/errors\.sh"', code[0]
        ), (
            name,
            code[0],
        )


def code_of(path: Path) -> str:
    return "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    )


def test_the_mirror_facts_are_read_one_way() -> None:
    """Only scripts/lib/debian-mirror.sh asks apt; whatever runs debootstrap calls it."""
    scripts = {
        str(path.relative_to(ROOT)): code_of(path)
        for pattern in (*SHELL_SCRIPTS, ".ci/*")
        for path in ROOT.glob(pattern)
    }
    asking_apt = {
        name
        for name, code in scripts.items()
        if re.search(r"indextargets|Acquire::http|sources\.list|/etc/apt", code)
    }
    assert asking_apt == {"scripts/lib/debian-mirror.sh"}
    calling = {
        name for name, code in scripts.items() if re.search(r"^\s*debian_mirror ", code, re.M)
    }
    debootstrapping = {
        name for name, code in scripts.items() if re.search(r"^\s*debootstrap ", code, re.M)
    }
    assert debootstrapping == {c.command[-1] for c in CONSUMERS}
    assert calling == debootstrapping | {"scripts/debian-mirror.sh"}


def test_shellcheck_is_clean() -> None:
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is missing (.ci/run installs it)")
        pytest.skip("needs shellcheck (apt-get install shellcheck)")
    paths = sorted(str(p.relative_to(ROOT)) for g in SHELL_SCRIPTS for p in ROOT.glob(g))
    paths += [".ci/run", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(".ci/*.sh"))]
    done = subprocess.run(
        ["shellcheck", "-x", *paths], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
