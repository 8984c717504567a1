"""One line per failure: what failed, what Docker said, the likely fix."""

from __future__ import annotations

from supervisor.dockertypes import DockerUnreachable, EngineError
from supervisor.failures import explain
from supervisor.settings import load_settings
from supervisor.updown import StackError

BIND = 'invalid mount config for type "bind": bind source path does not exist: {}'


def test_a_missing_guard_directory_names_the_engine_host_and_the_bind_mount() -> None:
    settings = load_settings()
    err = EngineError(BIND.format("/run/hyos-supervisor/hyos"), "create container hyos-manager")
    assert explain(err, settings) == (
        "could not create container hyos-manager: "
        + BIND.format("/run/hyos-supervisor/hyos")
        + "; the guard directory /run/hyos-supervisor must exist on the host where the Docker "
        "engine runs, at the same path (a supervisor in a container needs "
        "-v /run/hyos-supervisor:/run/hyos-supervisor)"
    )


def test_a_missing_data_directory_and_other_bind_sources() -> None:
    settings = load_settings(data="/srv/hytale")
    err = EngineError(BIND.format("/srv/hytale"), "create container hyos-server")
    assert explain(err, settings).endswith(
        "; the data directory /srv/hytale must exist on the host where the Docker engine runs"
    )
    err = EngineError(BIND.format("/elsewhere"), "create container hyos-server")
    assert explain(err, settings).endswith(
        "; /elsewhere must exist on the host where the Docker engine runs"
    )


def test_a_taken_port_names_the_settings() -> None:
    message = (
        "driver failed programming external connectivity on endpoint hyos-server: "
        "Bind for 0.0.0.0:5520 failed: port is already allocated"
    )
    line = explain(EngineError(message, "start the server container 0123456789ab"), load_settings())
    assert line.startswith("could not start the server container 0123456789ab: driver failed")
    assert line.endswith(
        "port is already allocated; another process or container holds that host port: "
        "stop it, or change HYOS_SERVER__PORTS / HYOS_MANAGER__PORTS"
    )


def test_without_a_known_fix_or_operation_the_message_stands_alone() -> None:
    settings = load_settings()
    assert explain(EngineError("something odd"), settings) == "something odd"
    assert (
        explain(EngineError("something odd", "pull x"), settings)
        == "could not pull x: something odd"
    )
    assert explain(
        StackError("prepare step failed (exit 3): boom; nothing was started"), settings
    ) == ("prepare step failed (exit 3): boom; nothing was started")
    unreachable = DockerUnreachable("cannot reach Docker at unix:///x after 5 attempts")
    assert explain(unreachable, settings) == "cannot reach Docker at unix:///x after 5 attempts"
