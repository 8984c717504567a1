"""Settings: defaults, env/TOML sources, validation problems, secrets, size and port parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.settings import (
    DEFAULT_DOCKER_SOCKET,
    DEFAULT_STOP_TIMEOUT_S,
    EX_CONFIG,
    SERVER_STOP_TIMEOUT_S,
    ConfigError,
    PortBinding,
    PortSpec,
    Settings,
    UserSpec,
    image_warning,
    load_settings,
    parse_size,
    validate_image,
)
from supervisor.stack import desired_services

PINNED = "registry.example/hyos/server:1.2.3"


def write(tmp_path: Path, text: str, name: str = "hyos.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(**kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)
    return caught.value.problems


def problems_for(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return caught.value.problems


def only_problem(found: list[str], field: str) -> str:
    assert len(found) == 1, found
    assert found[0].startswith(f"{field}:"), found
    assert "\n" not in found[0]
    return found[0]


# --- defaults -------------------------------------------------------------------------------


def test_ex_config_is_sysexits_value() -> None:
    assert EX_CONFIG == 78


def test_defaults() -> None:
    s = load_settings()
    assert s.stack == "hyos"
    assert s.docker_host == DEFAULT_DOCKER_SOCKET
    assert s.server.port_bindings == [PortBinding("0.0.0.0", 5520, 5520, "udp")]
    assert s.manager.port_bindings == [PortBinding("127.0.0.1", 3000, 3000, "tcp")]
    published = [p.container_port for svc in s.services().values() for p in svc.port_bindings]
    published += [p.host_port for svc in s.services().values() for p in svc.port_bindings]
    assert 30381 not in published
    for service in (s.server, s.manager):
        assert str(service.user) == "568:568"
        assert service.user == UserSpec(568, 568)
        assert service.read_only is True
        assert service.cap_add == []
        assert service.allow_root is False
        assert service.healthcheck is None
    assert s.data is None
    assert s.data_source == "hyos-data"
    assert s.data_is_bind is False
    assert s.network_name == "hyos-net"
    assert s.container_name("server") == "hyos-server"
    assert list(s.services()) == ["server", "manager"]
    assert s.server.memory >= 4 * 1024**3  # Hytale needs at least 4 GB


def test_names_follow_the_stack() -> None:
    s = load_settings(stack="blue")
    assert s.data_source == "blue-data"
    assert s.network_name == "blue-net"
    assert s.container_name("manager") == "blue-manager"


def test_docker_host_falls_back_to_docker_host_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    assert load_settings().docker_host == "tcp://10.0.0.1:2375"
    monkeypatch.setenv("HYOS_DOCKER_HOST", "unix:///run/other.sock")
    assert load_settings().docker_host == "unix:///run/other.sock"


def test_bad_docker_host() -> None:
    only_problem(problems(docker_host="/var/run/docker.sock"), "docker_host")


# --- environment ------------------------------------------------------------------------------


def test_env_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_STACK", "game1")
    monkeypatch.setenv("HYOS_SERVER__IMAGE", PINNED)
    monkeypatch.setenv("HYOS_SERVER__MEMORY", "8g")
    monkeypatch.setenv("HYOS_MANAGER__CAP_ADD", '["net_bind_service"]')
    monkeypatch.setenv("HYOS_MANAGER__PORTS", '["8080:3000"]')
    monkeypatch.setenv("HYOS_RESTART__CRASH_LOOP_LIMIT", "9")
    s = load_settings()
    assert s.stack == "game1"
    assert s.server.image == PINNED
    assert s.server.memory == 8 * 1024**3
    assert s.manager.cap_add == ["NET_BIND_SERVICE"]
    assert s.manager.port_bindings == [PortBinding("127.0.0.1", 8080, 3000, "tcp")]
    assert s.restart.crash_loop_limit == 9
    # untouched nested fields keep their defaults
    assert s.server.user == UserSpec(568, 568)
    assert s.manager.memory == 5 * 1024**3


def test_unprefixed_env_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK", "nope")
    monkeypatch.setenv("SERVER__MEMORY", "1g")
    s = load_settings()
    assert s.stack == "hyos"
    assert s.server.memory == 6 * 1024**3


def test_env_problem_names_field_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_MANAGER__MEMORY", "lots")
    line = only_problem(problems(), "manager.memory")
    assert "HYOS_MANAGER__MEMORY" in line


# --- TOML -------------------------------------------------------------------------------------

TOML = """
stack = "fromfile"
data = "/srv/hyos"

[server]
image = "registry.example/hyos/server:2.0"
memory = "5g"
cap_add = ["NET_BIND_SERVICE"]
ports = ["5520:5520/udp", "127.0.0.1:30381:30381"]

[server.healthcheck]
interval = 5
retries = 2

[manager]
host_ip = "10.1.2.3"
"""


def test_toml_file(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, TOML))
    assert s.stack == "fromfile"
    assert s.data_source == "/srv/hyos"
    assert s.data_is_bind is True
    assert s.server.image == "registry.example/hyos/server:2.0"
    assert s.server.memory == 5 * 1024**3
    assert s.server.cap_add == ["NET_BIND_SERVICE"]
    assert s.server.port_bindings == [
        PortBinding("0.0.0.0", 5520, 5520, "udp"),
        PortBinding("127.0.0.1", 30381, 30381, "tcp"),
    ]
    assert s.server.healthcheck is not None
    assert s.server.healthcheck.interval == 5
    assert s.server.healthcheck.retries == 2
    assert s.manager.port_bindings == [PortBinding("10.1.2.3", 3000, 3000, "tcp")]
    assert s.manager.user == UserSpec(568, 568)


def test_toml_path_as_str(tmp_path: Path) -> None:
    assert load_settings(str(write(tmp_path, 'stack = "s2"'))).stack == "s2"


def test_toml_via_hyos_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_CONFIG", str(write(tmp_path, TOML)))
    s = load_settings()
    assert s.stack == "fromfile"
    assert s.server.memory == 5 * 1024**3


def test_explicit_path_beats_hyos_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_CONFIG", str(write(tmp_path, 'stack = "env"', "a.toml")))
    assert load_settings(write(tmp_path, 'stack = "arg"', "b.toml")).stack == "arg"


def test_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_STACK", "fromenv")
    monkeypatch.setenv("HYOS_SERVER__MEMORY", "7g")
    s = load_settings(write(tmp_path, TOML))
    assert s.stack == "fromenv"
    assert s.server.memory == 7 * 1024**3
    # the rest of [server] still comes from the file (deep merge)
    assert s.server.image == "registry.example/hyos/server:2.0"
    assert s.server.cap_add == ["NET_BIND_SERVICE"]


def test_overrides_beat_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_STACK", "fromenv")
    assert load_settings(write(tmp_path, TOML), stack="fromarg").stack == "fromarg"


def test_toml_state_does_not_leak(tmp_path: Path) -> None:
    loaded = load_settings(write(tmp_path, TOML))
    assert isinstance(loaded, Settings) and loaded.stack == "fromfile"
    assert Settings.model_config.get("toml_file") is None  # the file is never class state
    assert load_settings().stack == "hyos"
    with pytest.raises(ConfigError):
        load_settings(write(tmp_path, "[server]\nmemory = 'x'\n"))
    assert load_settings().stack == "hyos"


def test_missing_config_file(tmp_path: Path) -> None:
    line = only_problem(problems_for(tmp_path / "absent.toml"), "config")
    assert "absent.toml" in line


def test_missing_config_file_via_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_CONFIG", str(tmp_path / "gone.toml"))
    assert "gone.toml" in only_problem(problems(), "config")


def test_config_directory_is_not_a_file(tmp_path: Path) -> None:
    only_problem(problems_for(tmp_path), "config")


def test_invalid_toml(tmp_path: Path) -> None:
    line = only_problem(problems_for(write(tmp_path, "stack = \n[[")), "config")
    assert "TOML" in line


def test_unknown_top_level_key(tmp_path: Path) -> None:
    line = only_problem(problems_for(write(tmp_path, "stak = 'x'\n")), "stak")
    assert "unknown" in line


def test_unknown_nested_key(tmp_path: Path) -> None:
    line = only_problem(
        problems_for(write(tmp_path, "[manager]\nmemroy = '1g'\n")), "manager.memroy"
    )
    assert "unknown" in line


def test_unknown_healthcheck_key(tmp_path: Path) -> None:
    text = "[server.healthcheck]\nintervall = 3\n"
    only_problem(problems_for(write(tmp_path, text)), "server.healthcheck.intervall")


# --- invalid values ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["server", "manager"])
@pytest.mark.parametrize("memory", ["-1g", "-512m", "lots", "4x", "", "1.2.3g", "g"])
def test_bad_memory(role: str, memory: str) -> None:
    only_problem(problems(**{role: {"memory": memory}}), f"{role}.memory")


def test_memory_below_engine_minimum() -> None:
    only_problem(problems(manager={"memory": "1k"}), "manager.memory")


def test_manager_uid_zero_always_refused() -> None:
    line = only_problem(problems(manager={"user": "0:0"}), "manager.user")
    assert "root" in line
    only_problem(problems(manager={"user": "0:568", "allow_root": True}), "manager.user")


def test_server_uid_zero_refused_without_allow_root() -> None:
    line = only_problem(problems(server={"user": "0:0"}), "server.user")
    assert "allow_root" in line


def test_server_uid_zero_accepted_with_allow_root(tmp_path: Path) -> None:
    s = load_settings(server={"user": "0:0", "allow_root": True})
    assert s.server.user.uid == 0
    s = load_settings(write(tmp_path, "[server]\nallow_root = true\nuser = '0:0'\n"))
    assert s.server.user.uid == 0


def test_allow_root_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_SERVER__USER", "0:0")
    only_problem(problems(), "server.user")
    monkeypatch.setenv("HYOS_SERVER__ALLOW_ROOT", "true")
    assert load_settings().server.user.uid == 0


@pytest.mark.parametrize(
    "user", ["hytale", "568", "568:", ":568", "-1:5", "568:568:1", "root:root"]
)
def test_non_numeric_user(user: str) -> None:
    only_problem(problems(server={"user": user}), "server.user")


def test_nonzero_gid_zero_uid_nonzero_is_fine() -> None:
    assert load_settings(server={"user": "1000:0"}).server.user.uid == 1000


@pytest.mark.parametrize(
    "image",
    [
        "",
        "Upper:1",
        "x/UPPER:1",
        "has space:1",
        "name:",
        "name:tag:again",
        "name@sha256:short",
        "x:-tag",
        "a//b:1",
    ],
)
def test_bad_image(image: str) -> None:
    line = only_problem(problems(server={"image": image}), "server.image")
    assert "image reference" in line


def test_bad_helper_image() -> None:
    only_problem(problems(helper_image="Not Valid"), "helper_image")


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "busybox:1.36",
        "library/busybox:latest",
        "localhost:5000/a/b:c",
        "ghcr.io/editmysave/hyos/server:1.0.0",
        "a_b/c__d/e-f:x",
        "reg.example/x@sha256:" + "a" * 64,
        "reg.example/x:1@sha256:" + "b" * 64,
    ],
)
def test_good_images(image: str) -> None:
    assert validate_image(image) == image


@pytest.mark.parametrize(
    ("port", "side"),
    [
        ("70000:5520/udp", "host"),
        ("5520:70000/udp", "container"),
        ("1:0", "container"),
        ("99999:99999", "host"),
    ],
)
def test_port_out_of_range(port: str, side: str) -> None:
    line = only_problem(problems(server={"ports": [port]}), "server.ports")
    assert side in line


@pytest.mark.parametrize("port", ["abc", "5520", "5520:5520/sctp", "-1:80", "1:2:3:4", ""])
def test_port_unparsable(port: str) -> None:
    only_problem(problems(manager={"ports": [port]}), "manager.ports")


@pytest.mark.parametrize("stack", ["", "-x", ".x", "has space", "a/b", "x" * 64, "ünï"])
def test_bad_stack_name(stack: str) -> None:
    only_problem(problems(stack=stack), "stack")


@pytest.mark.parametrize("stack", ["a", "hyos", "Hy.os_2-x", "x" * 63])
def test_good_stack_name(stack: str) -> None:
    assert load_settings(stack=stack).stack == stack


@pytest.mark.parametrize(
    "data",
    [
        "/",
        "/etc",
        "/etc/",
        "/etc/hyos",
        "/var/run/docker.sock",
        "/var/run",
        "/proc",
        "/sys/fs",
        "/root",
        "/var/lib/docker",
        "/var/lib/docker/volumes/x",
        "/usr/../etc",
        "//etc",
        "///etc/x",
        "/dev",
        "/run/docker.sock",
        "/run/containerd",  # runtime state: refused like the audit refuses its bind
    ],
)
def test_sensitive_data_path(data: str) -> None:
    line = only_problem(problems(data=data), "data")
    assert "sensitive" in line


@pytest.mark.parametrize("data", ["/srv/hyos", "/home/me/hytale", "/var/lib/hyos", "/etcetera"])
def test_host_data_path(data: str) -> None:
    s = load_settings(data=data)
    assert s.data_is_bind and s.data_source == data


def test_named_volume_data() -> None:
    s = load_settings(data="worlds")
    assert not s.data_is_bind and s.data_source == "worlds"
    only_problem(problems(data="relative/path"), "data")


def test_unknown_capability() -> None:
    line = only_problem(
        problems(server={"cap_add": ["NET_BIND_SERVICE", "MAKE_COFFEE"]}), "server.cap_add"
    )
    assert "MAKE_COFFEE" in line


def test_capabilities_normalised() -> None:
    s = load_settings(server={"cap_add": ["cap_net_bind_service", "NET_BIND_SERVICE", "chown"]})
    assert s.server.cap_add == ["CHOWN", "NET_BIND_SERVICE"]


@pytest.mark.parametrize("path", ["tmp", "/a/../b", "relative/x"])
def test_bad_tmpfs(path: str) -> None:
    only_problem(problems(manager={"tmpfs": [path]}), "manager.tmpfs")


def test_bad_env_name() -> None:
    only_problem(problems(server={"env": {"1BAD": "x"}}), "server.env")


@pytest.mark.parametrize(
    ("service", "field"),
    [
        ({"cpus": 0}, "cpus"),
        ({"cpus": -1}, "cpus"),
        ({"pids_limit": 1}, "pids_limit"),
        ({"stop_timeout": -1}, "stop_timeout"),
    ],
)
def test_bad_limits(service: dict[str, Any], field: str) -> None:
    only_problem(problems(server=service), f"server.{field}")


def test_healthcheck_bounds() -> None:
    only_problem(problems(server={"healthcheck": {"interval": 0}}), "server.healthcheck.interval")
    only_problem(problems(server={"healthcheck": {"retries": 0}}), "server.healthcheck.retries")
    only_problem(
        problems(server={"healthcheck": {"start_period": 0.0001}}),
        "server.healthcheck.start_period",
    )
    ok = load_settings(server={"healthcheck": {"start_period": 0.001}})
    assert ok.server.healthcheck is not None


def test_bad_log_size() -> None:
    only_problem(problems(log_max_size="10 MB"), "log_max_size")


def test_several_problems_all_reported(tmp_path: Path) -> None:
    text = """
stack = "-bad"
data = "/etc"
unknown_thing = 1

[server]
memory = "-1g"
image = "Bad Image"
ports = ["70000:5520/udp"]
cap_add = ["NOPE"]

[manager]
user = "0:0"
"""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    found = caught.value.problems
    fields = sorted(line.split(":", 1)[0] for line in found)
    assert fields == sorted(
        [
            "stack",
            "data",
            "unknown_thing",
            "server.memory",
            "server.image",
            "server.ports",
            "server.cap_add",
            "manager.user",
        ]
    )
    assert str(caught.value) == "\n".join(found)
    assert len(str(caught.value).splitlines()) == len(found)


# --- image warnings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image", ["busybox", "busybox:latest", "reg.example:5000/x/y", "reg.example:5000/x/y:latest"]
)
def test_image_warning_unpinned(image: str) -> None:
    warning = image_warning(image)
    assert warning is not None and image in warning


@pytest.mark.parametrize(
    "image",
    [
        "busybox:1.36",
        "reg.example:5000/x/y:2",
        "x@sha256:" + "c" * 64,
        "x:latest@sha256:" + "c" * 64,
    ],
)
def test_image_warning_pinned(image: str) -> None:
    assert image_warning(image) is None


def test_settings_warnings_name_the_service() -> None:
    s = load_settings(server={"image": PINNED})
    assert [w.split(":", 1)[0] for w in s.warnings()] == ["manager.image"]
    pinned = load_settings(server={"image": PINNED}, manager={"image": "m@sha256:" + "d" * 64})
    assert pinned.warnings() == []
    default = load_settings()
    assert [w.split(":", 1)[0] for w in default.warnings()] == ["server.image", "manager.image"]


# --- secrets ----------------------------------------------------------------------------------

SECRETS = {
    "api_client_id": "client-id-7f3a9b",
    "api_client_secret": "s3cr3t-value-91c2e",
    "session_secret": "session-value-0d4e8-long-enough-for-iron",
    "hytale_session_token": "eyJhbGciOi.session.token-value",
    "hytale_identity_token": "eyJhbGciOi.identity.token-value",
    "server_password": "hunter2",
}


def test_secret_files_read_and_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        path = tmp_path / name
        path.write_text(value + "\n")
        monkeypatch.setenv(f"HYOS_{name.upper()}_FILE", str(path))
    s = load_settings()
    for name, value in SECRETS.items():
        secret = s.secret(name)
        assert secret is not None and secret.get_secret_value() == value
        assert value not in repr(s)
    masked = s.masked()
    dumped = json.dumps(masked)
    for name, value in SECRETS.items():
        assert value not in dumped
        assert masked[name] not in (None, value)
        assert masked[f"{name}_file"] == str(tmp_path / name)


def test_plain_secret_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_SESSION_SECRET", "plain-secret-ab12-and-more-to-reach-32")
    s = load_settings()
    assert s.session_secret is not None
    assert s.session_secret.get_secret_value() == "plain-secret-ab12-and-more-to-reach-32"
    assert "plain-secret-ab12" not in json.dumps(s.masked())
    assert s.masked()["api_client_id"] is None


def test_file_beats_plain_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret"
    path.write_text("from-file-0123456789")
    monkeypatch.setenv("HYOS_API_CLIENT_SECRET", "from-env-0123456789")
    monkeypatch.setenv("HYOS_API_CLIENT_SECRET_FILE", str(path))
    secret = load_settings().secret("api_client_secret")
    assert secret is not None and secret.get_secret_value() == "from-file-0123456789"


@pytest.mark.parametrize("name", list(SECRETS))
def test_missing_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(f"HYOS_{name.upper()}_FILE", str(tmp_path / "missing"))
    line = only_problem(problems(), f"{name}_file")
    assert "missing" in line
    assert f"HYOS_{name.upper()}_FILE" in line


def test_missing_secret_file_reported_with_other_problems(tmp_path: Path) -> None:
    found = problems(session_secret_file=tmp_path / "nope", stack="-bad")
    assert sorted(line.split(":", 1)[0] for line in found) == ["session_secret_file", "stack"]


def test_masked_is_json_and_complete() -> None:
    masked = load_settings().masked()
    json.dumps(masked)
    assert masked["server"]["ports"] == ["5520:5520/udp"]
    assert masked["manager"]["host_ip"] == "127.0.0.1"


# --- parse_size -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 * 1024**2),
        ("4g", 4 * 1024**3),
        ("4G", 4 * 1024**3),
        ("4GiB", 4 * 1024**3),
        ("4gb", 4 * 1024**3),
        ("1t", 1024**4),
        ("6m", 6 * 1024**2),
        ("6144k", 6 * 1024**2),
        (" 1g ", 1024**3),
        ("1.5g", 3 * 1024**3 // 2),
        ("0.5g", 512 * 1024**2),
        ("1073741824", 1024**3),
        (1073741824, 1024**3),
        ("10485760b", 10 * 1024**2),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "g",
        "-1g",
        "1x",
        "1 g b",
        "1..5g",
        "4gig",
        "5m",
        "0",
        0,
        -1,
        6 * 1024**2 - 1,
        True,
        "1e9",
    ],
)
def test_parse_size_rejects(bad: str | int) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@given(
    number=st.integers(min_value=1, max_value=10**15),
    unit=st.sampled_from(sorted(UNITS)),
    upper=st.booleans(),
    suffix=st.sampled_from(["", "b", "ib"]),
)
def test_parse_size_round_trips(number: int, unit: str, upper: bool, suffix: str) -> None:
    if not unit and suffix == "ib":
        suffix = "b"
    text = f"{number}{unit}{suffix}"
    text = text.upper() if upper else text
    expected = number * UNITS[unit]
    if expected < 6 * 1024**2:
        with pytest.raises(ValueError):
            parse_size(text)
    else:
        assert parse_size(text) == expected


@given(st.integers(min_value=6 * 1024**2, max_value=2**70))
def test_parse_size_int_exact(number: int) -> None:
    assert parse_size(number) == number
    assert parse_size(str(number)) == number


# --- ports: parsed once (PortSpec), bound to the service's host_ip -------------------------


def parse_port(text: str, default_ip: str) -> PortBinding:
    return PortSpec.parse(text).bind(default_ip)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5520:5520/udp", PortBinding("0.0.0.0", 5520, 5520, "udp")),
        ("8080:3000", PortBinding("0.0.0.0", 8080, 3000, "tcp")),
        ("8080:3000/tcp", PortBinding("0.0.0.0", 8080, 3000, "tcp")),
        ("127.0.0.1:3000:3000", PortBinding("127.0.0.1", 3000, 3000, "tcp")),
        ("[::1]:3000:3000/udp", PortBinding("::1", 3000, 3000, "udp")),
        ("0:3000", PortBinding("0.0.0.0", 0, 3000, "tcp")),
        ("65535:65535", PortBinding("0.0.0.0", 65535, 65535, "tcp")),
        (" 1:1 ", PortBinding("0.0.0.0", 1, 1, "tcp")),
    ],
)
def test_parse_port(text: str, expected: PortBinding) -> None:
    assert parse_port(text, "0.0.0.0") == expected


def test_parse_port_default_ip() -> None:
    assert parse_port("3000:3000", "127.0.0.1").host_ip == "127.0.0.1"
    assert parse_port("10.0.0.2:3000:3000", "127.0.0.1").host_ip == "10.0.0.2"
    assert str(parse_port("1:2/udp", "127.0.0.1")) == "127.0.0.1:1:2/udp"


@pytest.mark.parametrize(
    "bad",
    ["", "3000", "a:b", "65536:1", "1:65536", "1:0", "1:2/sctp", "1:2/", "::1:3000:3000", "-1:2"],
)
def test_parse_port_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_port(bad, "0.0.0.0")


@given(
    host=st.integers(0, 65535),
    container=st.integers(1, 65535),
    proto=st.sampled_from(["tcp", "udp"]),
)
def test_parse_port_round_trips(host: int, container: int, proto: str) -> None:
    binding = parse_port(f"{host}:{container}/{proto}", "192.0.2.1")
    assert binding == PortBinding("192.0.2.1", host, container, proto)  # type: ignore[arg-type]
    assert parse_port(str(binding), "0.0.0.0") == binding


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"HYOS_MANAGER__HOST_IP": ""}, "manager.host_ip"),
        ({"HYOS_SERVER__HOST_IP": "localhost"}, "server.host_ip"),
        ({"HYOS_MANAGER__PORTS": '["1:2:3"]'}, "manager.ports"),
        ({"HYOS_MANAGER__PORTS": '["999.1.1.1:3000:3000"]'}, "manager.ports"),
    ],
)
def test_interfaces_must_be_ip_addresses(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert "is not an IP address" in only_problem(problems(), field)


def test_ipv6_interfaces_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_MANAGER__PORTS", '["[::1]:3000:3000"]')
    assert load_settings().manager.port_bindings[0].host_ip == "::1"


@pytest.mark.parametrize("image", ["UPPER/case:1", "-lead/x:1", "x:", "/x"])
def test_references_docker_would_refuse_are_refused(
    monkeypatch: pytest.MonkeyPatch, image: str
) -> None:
    monkeypatch.setenv("HYOS_SERVER__IMAGE", image)
    assert "not an image reference" in only_problem(problems(), "server.image")


@pytest.mark.parametrize(
    "image", ["localhost:5000/a/b:c", "localhost/x", "registry.example.com/x/y", "busybox"]
)
def test_registry_hosts_and_plain_names_are_accepted(
    monkeypatch: pytest.MonkeyPatch, image: str
) -> None:
    monkeypatch.setenv("HYOS_SERVER__IMAGE", image)
    assert load_settings().server.image == image


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("session_secret", "x" * 31, "shorter than 32 characters"),  # iron-session's minimum
        ("api_client_secret", "changeme123", "known default"),
        ("api_client_secret", "short-secret", "shorter than 16 characters"),
        ("hytale_session_token", "abc", "use the whole value"),
        ("server_password", "   ", "empty"),
    ],
)
def test_supplied_secrets_that_would_not_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(f"HYOS_{name.upper()}", value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert len(err.value.problems) == 1
    line = err.value.problems[0]
    assert line.startswith(f"{name}: ") and problem in line and f"HYOS_{name.upper()}" in line


@pytest.mark.parametrize(
    ("name", "value"), [("api_client_id", "hyos-manager"), ("server_password", "a")]
)
def test_identifiers_and_join_passwords_are_a_persons_choice(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"HYOS_{name.upper()}", value)
    assert load_settings().supplied_secrets()[name] == value


# --- the restart policy: one set of defaults and limits -------------------------------------


def test_restart_defaults_are_the_policys_own() -> None:
    from supervisor.restarts import RestartPolicy

    assert Settings().restart.policy() == RestartPolicy()


def test_restart_settings_build_the_policy_they_describe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_RESTART__BACKOFF_BASE_S", "0.5")
    monkeypatch.setenv("HYOS_RESTART__BACKOFF_CAP_S", "7")
    monkeypatch.setenv("HYOS_RESTART__CRASH_LOOP_LIMIT", "3")
    policy = load_settings().restart.policy()
    assert (policy.backoff_base_s, policy.backoff_cap_s, policy.crash_loop_limit) == (0.5, 7, 3)


@pytest.mark.parametrize(
    ("env", "field"),
    [
        # Each was an "internal error" (exit 70) from RestartPolicy before.
        (
            {"HYOS_RESTART__BACKOFF_BASE_S": "5", "HYOS_RESTART__BACKOFF_CAP_S": "1"},
            "backoff_cap_s",
        ),
        ({"HYOS_RESTART__BACKOFF_CAP_S": "inf"}, "backoff_cap_s"),
        ({"HYOS_RESTART__RESET_AFTER_S": "nan"}, "reset_after_s"),
        ({"HYOS_RESTART__BACKOFF_FACTOR": "0.5"}, "backoff_factor"),
    ],
)
def test_an_incoherent_restart_policy_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    line = only_problem(problems(), f"restart.{field}")
    assert f"HYOS_RESTART__{field.upper()}" in line


def test_a_secret_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret"
    path.write_text("read-once-0123456789")
    opened: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    monkeypatch.setenv("HYOS_API_CLIENT_SECRET_FILE", str(path))
    loaded = load_settings()
    assert loaded.supplied_secrets()["api_client_secret"] == "read-once-0123456789"
    assert opened == [path]


def test_a_huge_or_binary_secret_file_is_a_config_error(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    line = only_problem(problems(api_client_secret_file=big), "api_client_secret_file")
    assert "larger than 64 KiB" in line
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" * 20)
    line = only_problem(problems(api_client_secret_file=binary), "api_client_secret_file")
    assert "UTF-8" in line


# --- typed values: parsed once, shown as written ---------------------------------------------


def test_sizes_users_and_ports_are_typed_values_parsed_once(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[server]\nmemory = "5GiB"\nuser = "1000:1001"\nports = ["127.0.0.1:30381:30381"]\n'
        "[manager]\nmemory = 1073741824\n",
    )
    s = load_settings(config)
    assert s.server.memory == 5 * 1024**3 and isinstance(s.server.memory, int)
    assert s.manager.memory == 1024**3  # an int of bytes is a size too
    assert s.server.user == UserSpec(1000, 1001)
    (port,) = s.server.ports
    assert (port.ip, port.host_port, port.container_port, port.protocol) == (
        "127.0.0.1", 30381, 30381, "tcp",
    )  # fmt: skip
    # `config` shows them as they were written
    shown = s.masked()
    assert shown["server"]["memory"] == "5GiB"
    assert shown["manager"]["memory"] == "1073741824"
    assert shown["server"]["user"] == "1000:1001"
    assert shown["server"]["ports"] == ["127.0.0.1:30381:30381"]


def test_a_bad_port_is_named_by_its_setting_not_its_index() -> None:
    line = only_problem(problems(server={"ports": ["5520:5520/udp", "1:2/sctp"]}), "server.ports")
    assert "'1:2/sctp' is not a port mapping" in line


def test_the_grace_period_is_read_one_way() -> None:
    """Settings.stop_timeout is the one reader: the specs' StopTimeout (and so
    Kubernetes' grace period), every stop and the guard's least stop timeout read it; a
    container of no service (a prepare step's) gets a service's default."""
    default = load_settings()
    assert default.stop_timeout("server") == SERVER_STOP_TIMEOUT_S == 60
    assert default.stop_timeout("manager") == DEFAULT_STOP_TIMEOUT_S == 10
    assert default.stop_timeout("prepare") == DEFAULT_STOP_TIMEOUT_S  # no such service
    tuned = load_settings(server={"stop_timeout": 90}, manager={"stop_timeout": 3})
    assert (tuned.stop_timeout("server"), tuned.stop_timeout("manager")) == (90, 3)
    specs = desired_services(tuned)
    assert {role: spec.stop_timeout for role, spec in specs.items()} == {
        "server": 90,
        "manager": 3,
    }


# --- socket paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "env", "socket"),
    [("guard_dir", "HYOS_GUARD_DIR", "docker.sock"), ("state_dir", "HYOS_STATE_DIR", "control")],
)
def test_a_socket_path_over_the_unix_limit_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, field: str, env: str, socket: str
) -> None:
    """Seen in the tests under pytest-xdist (deeper temp dirs): the daemon failed at bind
    with "internal error: OSError('AF_UNIX path too long'); this is a bug"."""
    monkeypatch.setenv(env, "/tmp/" + "d" * 90)
    line = only_problem(problems(), field)
    assert socket in line and "107" in line and f"(env {env})" in line
    monkeypatch.setenv(env, "/tmp/" + "d" * 40)
    assert load_settings().stack == "hyos"  # short enough: accepted


def test_cli_refuses_a_too_long_guard_dir_with_exit_78(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from supervisor.cli import main

    monkeypatch.setenv("HYOS_GUARD_DIR", "/tmp/" + "g" * 120)
    assert main(["status"]) == EX_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "guard_dir" in err[0], err
