"""List and table settings in the forms people type; every complex setting's bad value is
one line and exit 78 before any Docker call; no string in any setting makes a traceback."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from supervisor import cli
from supervisor.settings import (
    EX_CONFIG,
    ConfigError,
    RepeatedKey,
    Settings,
    decode_env_value,
    load_settings,
)

# --- the forms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "text", "expected"),
    [
        (list[str], "5520:5520/udp,30381:30381", ["5520:5520/udp", "30381:30381"]),
        (list[str], " NET_BIND_SERVICE , CHOWN ", ["NET_BIND_SERVICE", "CHOWN"]),
        (list[str], "NET_BIND_SERVICE", ["NET_BIND_SERVICE"]),
        (list[str], "", []),
        (list[str], '["a,b", "c"]', ["a,b", "c"]),  # JSON as before
        (list[str] | None, "a,b", ["a", "b"]),
        (dict[str, str], "TZ=Europe/Berlin", {"TZ": "Europe/Berlin"}),
        (dict[str, str], "TZ=Europe/Berlin,JAVA_XMX=4G", {"TZ": "Europe/Berlin", "JAVA_XMX": "4G"}),
        (dict[str, str], "A=1\nB=2\n", {"A": "1", "B": "2"}),
        (dict[str, str], "A==b", {"A": "=b"}),  # the first = splits
        (dict[str, str], "EMPTY=", {"EMPTY": ""}),
        (dict[str, str], '{"JAVA_OPTS": "-Da=1,2"}', {"JAVA_OPTS": "-Da=1,2"}),
    ],
)
def test_forms_people_type(annotation: Any, text: str, expected: Any) -> None:
    assert decode_env_value(annotation, text) == expected


@pytest.mark.parametrize(
    ("annotation", "text"),
    [
        (dict[str, str], "notapair"),
        (dict[str, str], "=nokey"),
        (dict[str, str], "A=1,oops"),
        (list[str], "[unclosed"),
        (dict[str, str], "{unclosed"),
        (dict[str, str], "A=1,A=2,oops"),  # the form is checked first
    ],
)
def test_what_fits_no_form_comes_back_unchanged_for_validation(annotation: Any, text: str) -> None:
    assert decode_env_value(annotation, text) == text


@pytest.mark.parametrize(
    ("text", "key"),
    [("A=1,A=2", "A"), ("TZ=UTC\nJAVA_XMX=4G\nTZ=Europe/Berlin", "TZ"), (" A =1, A=1", "A"),
     ("A=1,B=2,B=3,A=4", "B")],
)  # fmt: skip
def test_a_table_that_sets_a_key_twice_is_marked_not_last_wins(text: str, key: str) -> None:
    assert decode_env_value(dict[str, str], text) == RepeatedKey(key)


@pytest.mark.parametrize("role", ["server", "manager"])
def test_a_key_set_twice_is_one_line_naming_the_key_and_the_variable(
    monkeypatch: pytest.MonkeyPatch, role: str
) -> None:
    variable = f"HYOS_{role.upper()}__ENV"
    monkeypatch.setenv(variable, "JAVA_XMX=4G,TZ=UTC,JAVA_XMX=8G")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems == [
        f"{role}.env: 'JAVA_XMX' is set twice; set each variable once (env {variable})"
    ]
    # Once each, or as JSON, it loads.
    monkeypatch.setenv(variable, "JAVA_XMX=8G,TZ=UTC")
    assert getattr(load_settings(), role).env == {"JAVA_XMX": "8G", "TZ": "UTC"}
    monkeypatch.setenv(variable, '{"JAVA_XMX": "8G"}')
    assert getattr(load_settings(), role).env == {"JAVA_XMX": "8G"}


def test_the_issues_examples_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_SERVER__PORTS", "5520:5520/udp,30381:30381")
    monkeypatch.setenv("HYOS_SERVER__CAP_ADD", "NET_BIND_SERVICE,cap_chown")
    monkeypatch.setenv("HYOS_SERVER__ENV", "TZ=Europe/Berlin")
    monkeypatch.setenv("HYOS_MANAGER__TMPFS", "/app/.next/cache,/var/cache/x")
    loaded = load_settings()
    assert [str(p) for p in loaded.server.ports] == ["5520:5520/udp", "30381:30381"]
    assert loaded.server.cap_add == ["CHOWN", "NET_BIND_SERVICE"]
    assert loaded.server.env == {"TZ": "Europe/Berlin"}
    assert loaded.manager.tmpfs == ["/app/.next/cache", "/var/cache/x"]


# --- capabilities ------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", ["SYS_ADMIN", "sys_module", "CAP_NET_ADMIN", "ALL", "BPF"])
def test_root_equivalent_capabilities_need_the_switch(
    monkeypatch: pytest.MonkeyPatch, cap: str
) -> None:
    monkeypatch.setenv("HYOS_SERVER__CAP_ADD", cap)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    (line,) = caught.value.problems
    assert line.startswith("server.cap_add:") and "amounts to root" in line
    assert "HYOS_SERVER__ALLOW_DANGEROUS_CAPABILITIES" in line
    monkeypatch.setenv("HYOS_SERVER__ALLOW_DANGEROUS_CAPABILITIES", "true")
    allowed = load_settings()
    assert allowed.server.cap_add == [cap.upper().removeprefix("CAP_")]
    assert [w for w in allowed.warnings() if "allow_dangerous_capabilities" in w]


def test_the_switch_is_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYOS_SERVER__ALLOW_DANGEROUS_CAPABILITIES", "true")
    monkeypatch.setenv("HYOS_MANAGER__CAP_ADD", "SYS_PTRACE")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith("manager.cap_add:")


def test_net_bind_service_stays_allowed_and_unknown_names_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HYOS_SERVER__CAP_ADD", "NET_BIND_SERVICE")
    assert load_settings().warnings() == [w for w in load_settings().warnings() if "image" in w]
    monkeypatch.setenv("HYOS_SERVER__CAP_ADD", "NET_BIND_SERVICE,WARP_DRIVE")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "unknown capabilities WARP_DRIVE" in caught.value.problems[0]


# --- every complex setting, malformed: one line, exit 78, no Docker call ---------------------


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(annotation) not in (Union, UnionType):
        return annotation
    options = [a for a in get_args(annotation) if a is not type(None)]
    return options[0] if len(options) == 1 else annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def complex_settings(
    model: type[BaseModel] = Settings, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], str]]:
    """Every list, table and object setting, found from the model (a new one can't be missed)."""
    found: list[tuple[tuple[str, ...], str]] = []
    for name, field in model.model_fields.items():
        annotation = _unwrap(field.annotation)
        origin = get_origin(annotation)
        here = (*path, name)
        if _is_model(annotation):
            found.append((here, "object"))
            found += complex_settings(annotation, here)
        elif origin is list:
            found.append((here, "list"))
        elif origin is dict:
            found.append((here, "table"))
    return found


COMPLEX = complex_settings()
# What each kind gets: a value that fits none of its forms.
MALFORMED_ENV = {"list": '{"a": 1}', "table": "no-equals-sign", "object": "not json"}
MALFORMED_TOML = {"list": "42", "table": '"TZ"', "object": '"x"'}


def test_the_table_covers_every_complex_setting() -> None:
    names = {".".join(path) for path, _ in COMPLEX}
    # The ones people set most are among them, found from the model itself.
    assert {"server.ports", "server.cap_add", "server.env", "manager.tmpfs"} <= names
    assert {"server.healthcheck", "server.healthcheck.test", "restart", "kubernetes"} <= names
    # 29 today: server and manager (cap_add, tmpfs, env, ports, healthcheck, healthcheck.test,
    # the object itself), restart, kubernetes and its two commands, drain and its warn_at,
    # schedule, backup and its credentials; notify and its urls; metrics; crashes; logs;
    # update (issue 26).
    assert len(COMPLEX) == 29, sorted(names)


class CountingSocket:
    """A unix socket standing in for Docker: it counts connections, answers nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections = 0
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(str(path))
        self._server.listen(16)
        self._server.settimeout(0.2)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._count, daemon=True)
        self._thread.start()

    def _count(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._server.close()


@pytest.fixture
def docker_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingSocket]:
    counting = CountingSocket(tmp_path / "docker.sock")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{counting.path}")
    monkeypatch.setenv("HYOS_STATE_DIR", str(tmp_path / "state"))
    yield counting
    counting.close()


def _run_up(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = cli.main([*args, "up"])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def assert_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
    docker_socket: CountingSocket,
    field: str,
    words: str,
    variable: str | None,
) -> str:
    """`up` with the environment as set: exit 78, one line naming `field` (and `variable`,
    the env to fix, unless None) with `words`, and no connection to Docker."""
    code, lines = _run_up(capsys)
    assert code == EX_CONFIG, lines
    assert len(lines) == 1, lines
    assert f"{field}:" in lines[0] and words in lines[0], lines
    if variable is not None:
        assert f"(env {variable})" in lines[0], lines
    assert docker_socket.connections == 0
    return lines[0]


@pytest.mark.parametrize(("path", "kind"), COMPLEX, ids=[".".join(p) for p, _ in COMPLEX])
def test_a_malformed_value_in_the_environment_is_one_line_and_exit_78(
    path: tuple[str, ...],
    kind: str,
    docker_socket: CountingSocket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    variable = "HYOS_" + "__".join(part.upper() for part in path)
    monkeypatch.setenv(variable, MALFORMED_ENV[kind])
    code, lines = _run_up(capsys)
    assert code == EX_CONFIG, lines
    assert len(lines) == 1, lines
    assert "config error" in lines[0] and ".".join(path[:2]) in lines[0], lines
    assert "Traceback" not in lines[0]
    assert docker_socket.connections == 0


@pytest.mark.parametrize(("path", "kind"), COMPLEX, ids=[".".join(p) for p, _ in COMPLEX])
def test_a_malformed_value_in_the_toml_file_is_one_line_and_exit_78(
    path: tuple[str, ...],
    kind: str,
    docker_socket: CountingSocket,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table, key = path[:-1], path[-1]
    header = f"[{'.'.join(table)}]\n" if table else ""
    config = tmp_path / "hyos.toml"
    config.write_text(f"{header}{key} = {MALFORMED_TOML[kind]}\n")
    code, lines = _run_up(capsys, "--config", str(config))
    assert code == EX_CONFIG, lines
    assert len(lines) == 1, lines
    assert "config error" in lines[0] and ".".join(path[:2]) in lines[0], lines
    assert docker_socket.connections == 0


# --- no string in any setting reaches the user as a traceback ---------------------------------


def all_variables(model: type[BaseModel] = Settings, path: tuple[str, ...] = ()) -> list[str]:
    found = []
    for name, field in model.model_fields.items():
        here = (*path, name)
        found.append("HYOS_" + "__".join(part.upper() for part in here))
        annotation = _unwrap(field.annotation)
        if _is_model(annotation):
            found += all_variables(annotation, here)
    return found


VARIABLES = all_variables()
# What the environment can hold: any text without NUL (and without lone surrogates).
ENV_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variable=st.sampled_from(VARIABLES), value=ENV_TEXT)
def test_any_string_in_any_setting_loads_or_is_one_line_per_problem(
    variable: str, value: str
) -> None:
    # The environment is clean (conftest's clean_env); each example sets one variable.
    os.environ[variable] = value
    try:
        load_settings()
    except ConfigError as err:
        assert err.problems
        assert all(problem and "\n" not in problem for problem in err.problems), err.problems
    finally:
        del os.environ[variable]


def test_every_setting_is_fed_to_the_property() -> None:
    assert len(VARIABLES) == len(set(VARIABLES)) and len(VARIABLES) > 60
    assert "HYOS_SERVER__HEALTHCHECK__START_PERIOD" in VARIABLES


def test_the_installed_command_says_one_line_too(docker_socket: CountingSocket) -> None:
    """The same through `python -m supervisor`, as a user runs it."""
    import subprocess
    import sys

    env = {**os.environ, "HYOS_SERVER__ENV": "TZ", "HYOS_SERVER__PORTS": "5520:5520/udp"}
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "up"], env=env, capture_output=True, text=True
    )
    assert done.returncode == EX_CONFIG
    assert done.stderr.count("\n") == 1 and "server.env: expected KEY=VALUE" in done.stderr
    assert docker_socket.connections == 0


def test_a_key_set_twice_exits_78_before_any_docker_call(
    docker_socket: CountingSocket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HYOS_SERVER__ENV", "A=1,A=2")
    code, lines = _run_up(capsys)
    assert code == EX_CONFIG
    assert len(lines) == 1 and "server.env: 'A' is set twice" in lines[0], lines
    assert "HYOS_SERVER__ENV" in lines[0]
    assert docker_socket.connections == 0
