"""scripts/debian-mirror.sh: debootstrap uses the Debian mirror and proxy this machine's
apt uses (read by apt itself, APT_CONFIG pointing at a made-up apt tree), or the override;
no build script names a package host of its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/debian-mirror.sh"


@pytest.fixture
def apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty apt configuration tree: sources go in <tree>/etc/apt."""
    if shutil.which("apt-get") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("apt-get is missing")
        pytest.skip("needs apt (Debian)")
    for part in ("etc/apt/sources.list.d", "etc/apt/apt.conf.d", "state/lists/partial"):
        (tmp_path / part).mkdir(parents=True)
    config = tmp_path / "apt.conf"
    config.write_text(f'Dir::Etc "{tmp_path}/etc/apt";\nDir::State "{tmp_path}/state";\n')
    monkeypatch.setenv("APT_CONFIG", str(config))
    for name in ("DEBIAN_MIRROR", "MIRROR", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def mirror(suite: str = "bookworm", **env: str) -> tuple[str, str, str]:
    done = subprocess.run(
        ["sh", str(SCRIPT), suite],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        timeout=60,
    )
    uri, origin, proxy = done.stdout.split("\n")[:3]
    return uri, origin, proxy


def test_a_local_mirror_in_deb822_sources(apt: Path) -> None:
    (apt / "etc/apt/sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.lan/apt/\nSuites: bookworm bookworm-updates\n"
        "Components: main contrib\n\n"
        "Types: deb\nURIs: http://mirror.lan/apt-security/\nSuites: bookworm-security\n"
        "Components: main\n"
    )
    uri, origin, proxy = mirror()
    assert uri == "http://mirror.lan/apt/"
    assert origin.startswith(f"apt's sources ({apt}/etc/apt/")
    assert proxy == ""


def test_an_air_gapped_copy_in_sources_list(apt: Path) -> None:
    (apt / "etc/apt/sources.list").write_text(
        "deb [trusted=yes] file:///srv/offline bookworm main\n"
    )
    assert mirror()[0] == "file:/srv/offline/"  # apt's spelling; debootstrap reads it


def test_the_archive_apt_downloaded_from_wins_over_a_vendor_repository(apt: Path) -> None:
    (apt / "etc/apt/sources.list.d/vendor.list").write_text(
        "deb https://vendor.example/apt bookworm main\n"
    )
    (apt / "etc/apt/sources.list.d/local.list").write_text(
        "deb http://cache.lan/archive bookworm main\n"
    )
    # Without release information the two look alike: the first one apt lists wins...
    # ...but once `apt-get update` fetched them, the Release label names Debian's archive.
    lists = apt / "state/lists"
    (lists / "cache.lan_archive_dists_bookworm_InRelease").write_text(
        "Origin: Debian\nLabel: Debian\nSuite: oldstable\nCodename: bookworm\n"
    )
    (lists / "cache.lan_archive_dists_bookworm_main_binary-amd64_Packages").write_text("")
    assert mirror()[0] == "http://cache.lan/archive/"


def test_a_debian_path_wins_over_a_vendor_repository(apt: Path) -> None:
    (apt / "etc/apt/sources.list").write_text(
        "deb https://vendor.example/apt bookworm main\n"
        "deb http://proxy.lan:3142/debian trixie main\n"
    )
    assert mirror()[0] == "http://proxy.lan:3142/debian/"


def test_the_override_wins_and_says_so(apt: Path) -> None:
    (apt / "etc/apt/sources.list").write_text("deb http://mirror.lan/debian bookworm main\n")
    assert mirror(DEBIAN_MIRROR="file:///media/debian")[:2] == (
        "file:///media/debian",
        "DEBIAN_MIRROR",
    )
    assert mirror(MIRROR="http://old.lan/debian")[:2] == ("http://old.lan/debian", "MIRROR")


def test_without_any_source_debootstrap_chooses_and_it_is_said(apt: Path) -> None:
    uri, origin, _ = mirror()
    assert uri == ""
    assert origin.startswith("debootstrap's default")


def test_apts_proxy_is_used_unless_http_proxy_is_set(apt: Path) -> None:
    (apt / "etc/apt/apt.conf.d/30proxy").write_text(
        'Acquire::http::Proxy "http://cache.lan:3142";\n'
    )
    assert mirror()[2] == "http://cache.lan:3142"
    assert mirror(http_proxy="http://other.lan:8080")[2] == "http://other.lan:8080"


def test_no_build_script_names_a_package_host() -> None:
    """Hosts come from the machine's apt, pip and npm configuration, never from us."""
    scripts = [*ROOT.joinpath("scripts").glob("*.sh"), ROOT / ".ci/run", ROOT / "Dockerfile"]
    scripts += ROOT.joinpath("tests/images").glob("*.sh")
    named = {
        str(path.relative_to(ROOT)): re.findall(r"\b(?:https?|ftp)://[^\s\"']+", path.read_text())
        for path in scripts
    }
    assert {path: urls for path, urls in named.items() if urls} == {
        # The image's source label, not a package host.
        "Dockerfile": ["https://github.com/editmysave/hyos"],
        # Inside the stand-in image: its own health endpoint, not a package host.
        "tests/images/healthcheck.sh": ["http://127.0.0.1:${HEALTH_PORT}${HEALTH_PATH}"],
    }


def test_build_python_base_debootstraps_from_apts_mirror_through_apts_proxy(
    apt: Path, tmp_path: Path
) -> None:
    (apt / "etc/apt/sources.list").write_text("deb http://mirror.lan/debian bookworm main\n")
    (apt / "etc/apt/apt.conf.d/30proxy").write_text(
        'Acquire::http::Proxy "http://cache.lan:3142";\n'
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "debootstrap.args"
    fake = bin_dir / "debootstrap"  # records what it was asked, then fails the build
    fake.write_text(f'#!/bin/sh\necho "$* proxy=$http_proxy" > {seen}\nexit 1\n')
    fake.chmod(0o755)
    done = subprocess.run(
        ["sh", str(ROOT / "scripts/build-python-base.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FORCE": "1"},
        timeout=60,
    )
    assert done.returncode != 0
    args = seen.read_text().split()
    assert args[:3] == ["--variant=minbase", "--include=python3", "bookworm"]
    assert args[4:] == ["http://mirror.lan/debian/", "proxy=http://cache.lan:3142"]
    assert (
        "debootstrap bookworm from http://mirror.lan/debian/ (apt's sources" in done.stdout
        and "through proxy http://cache.lan:3142" in done.stdout
    ), done.stdout
