"""The engine's parsers: Docker's JSON -> frozen values, with real-looking samples."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from entrypoint.contract import LABEL_MANAGED, LABEL_ROLE, LABEL_SPEC_HASH, LABEL_STACK
from supervisor.dockertypes import (
    ContainerHardening,
    ContainerInfo,
    ContainerState,
    EngineEvent,
    ExecInfo,
    Health,
    MountFact,
    Observed,
    PortBinding,
    VolumeInfo,
    container_from_json,
    event_from_json,
    exec_from_json,
    hardening_from_json,
    observed_from_json,
    parse_time,
    readiness,
    volume_from_json,
)
from supervisor.plan import Desired, plan_service

LABELS = {
    LABEL_MANAGED: "true",
    LABEL_STACK: "hyos",
    LABEL_ROLE: "server",
    LABEL_SPEC_HASH: "f" * 64,
}

# Trimmed from a real `docker inspect` of an exited, health-checked container.
INSPECT: dict[str, Any] = {
    "Id": "4c1f0e5b9f0d" + "0" * 52,
    "Created": "2024-05-01T10:00:00.123456789Z",
    "Path": "/entrypoint.sh",
    "State": {
        "Status": "exited",
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": True,
        "Dead": False,
        "Pid": 0,
        "ExitCode": 137,
        "Error": "",
        "StartedAt": "2024-05-01T10:00:01.5Z",
        "FinishedAt": "2024-05-01T10:05:00.987654321Z",
        "Health": {
            "Status": "unhealthy",
            "FailingStreak": 3,
            "Log": [
                {"Start": "2024-05-01T10:04:00Z", "ExitCode": 1, "Output": "first"},
                {"Start": "2024-05-01T10:04:30Z", "ExitCode": 1, "Output": "no pong\n"},
            ],
        },
    },
    "Name": "/hyos-server",
    "RestartCount": 2,
    "Config": {
        "Image": "hyos/server:1",
        "Labels": LABELS,
        "Healthcheck": {"Test": ["CMD", "true"], "StartPeriod": 120_000_000_000},
    },
    "HostConfig": {"ReadonlyRootfs": True},
}


# --- timestamps ------------------------------------------------------------------------------


def test_parse_time_keeps_microseconds_of_nine_fraction_digits() -> None:
    assert parse_time("2024-05-01T10:05:00.987654321Z") == datetime(
        2024, 5, 1, 10, 5, 0, 987654, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:01Z", datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)),
        ("2024-05-01T10:00:01.5Z", datetime(2024, 5, 1, 10, 0, 1, 500000, tzinfo=UTC)),
        ("2024-05-01T12:00:01.000000001+02:00", datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)),
        ("2024-05-01T10:00:01", datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)),
    ],
)
def test_parse_time_forms(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000000Z", "", None, 17, "soon"]
)
def test_parse_time_never_is_none(text: object) -> None:
    assert parse_time(text) is None


# --- containers ------------------------------------------------------------------------------


def test_container_from_inspect() -> None:
    assert container_from_json(INSPECT) == ContainerInfo(
        id="4c1f0e5b9f0d" + "0" * 52,
        name="hyos-server",
        state=ContainerState(
            status="exited",
            running=False,
            restarting=False,
            exit_code=137,
            oom_killed=True,
            pid=0,
            started_at=datetime(2024, 5, 1, 10, 0, 1, 500000, tzinfo=UTC),
            finished_at=datetime(2024, 5, 1, 10, 5, 0, 987654, tzinfo=UTC),
            health=Health("unhealthy", failing_streak=3, last_output="no pong\n"),
        ),
        image="hyos/server:1",
        labels=LABELS,
        restart_count=2,
        health_start_period_s=120.0,
    )


def test_container_never_started_has_no_times_and_no_health() -> None:
    created = {
        "Id": "abc",
        "Name": "/hyos-manager",
        "State": {
            "Status": "created",
            "Running": False,
            "Pid": 0,
            "ExitCode": 0,
            "StartedAt": "0001-01-01T00:00:00Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        },
        "Config": {"Image": "m:1", "Labels": None},
    }
    info = container_from_json(created)
    assert info.state == ContainerState(status="created")
    assert info.state.health_status is None
    assert info.labels == {} and info.health_start_period_s == 0.0


def test_running_container() -> None:
    running = {
        "Id": "abc",
        "Name": "/hyos-server",
        "State": {
            "Status": "running",
            "Running": True,
            "Pid": 4242,
            "StartedAt": "2024-05-01T10:00:01.123456789Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            "Health": {"Status": "starting", "FailingStreak": 0, "Log": []},
        },
    }
    state = container_from_json(running).state
    assert (state.running, state.pid, state.finished_at) == (True, 4242, None)
    assert state.health == Health("starting")


def test_empty_inspect_is_safe() -> None:
    assert container_from_json({}) == ContainerInfo(id="", name="")


# --- readiness -------------------------------------------------------------------------------


def info(**state: Any) -> ContainerInfo:
    return ContainerInfo(id="x", name="x", state=ContainerState(**state))


def testreadiness() -> None:
    assert readiness(container_from_json(INSPECT)) == "exited with code 137 (OOM killed)"
    assert readiness(info(status="dead", exit_code=1)) == "exited with code 1"
    assert readiness(info(status="running", running=True)) == "ready"
    assert readiness(info(status="running", running=True, health=Health("healthy"))) == "ready"
    assert readiness(info(status="running", running=True, health=Health("starting"))) == ("waiting")
    assert readiness(info(status="running", health=Health("unhealthy"))) == "turned unhealthy"
    assert readiness(info(status="created")) == "waiting"


# --- events ----------------------------------------------------------------------------------

DIE: dict[str, Any] = {
    "status": "die",
    "id": "4c1f0e5b9f0d",
    "from": "hyos/server:1",
    "Type": "container",
    "Action": "die",
    "Actor": {
        "ID": "4c1f0e5b9f0d",
        "Attributes": {
            **LABELS,
            "exitCode": "137",
            "image": "hyos/server:1",
            "name": "hyos-server",
        },
    },
    "scope": "local",
    "time": 1714557900,
    "timeNano": 1714557900123456789,
}


def test_die_event() -> None:
    event = event_from_json(DIE)
    assert event == EngineEvent(
        action="die",
        container_id="4c1f0e5b9f0d",
        time_nano=1714557900123456789,
        name="hyos-server",
        labels=DIE["Actor"]["Attributes"],
        exit_code=137,
    )
    assert event.labels[LABEL_ROLE] == "server"
    assert event.time == datetime(2024, 5, 1, 10, 5, 0, 123456, tzinfo=UTC)


def test_health_event_and_legacy_fields() -> None:
    event = event_from_json(
        {"status": "health_status: healthy", "Actor": {"ID": "abc", "Attributes": LABELS}}
    )
    assert (event.action, event.container_id, event.exit_code) == (
        "health_status: healthy",
        "abc",
        None,
    )
    assert event.time_nano == 0


@pytest.mark.parametrize(("code", "expected"), [("-1", -1), ("0", 0), ("--1", None), ("", None)])
def test_event_exit_code(code: str, expected: int | None) -> None:
    event = event_from_json({"Action": "die", "Actor": {"Attributes": {"exitCode": code}}})
    assert event.exit_code == expected


def test_empty_event_is_safe() -> None:
    assert event_from_json({}) == EngineEvent(action="", container_id="")


# --- volumes ---------------------------------------------------------------------------------


def test_volume() -> None:
    found = volume_from_json(
        {
            "Name": "hyos-system",
            "Driver": "local",
            "Mountpoint": "/var/lib/docker/volumes/hyos-system/_data",
            "Labels": {LABEL_STACK: "hyos"},
            "Scope": "local",
        }
    )
    assert found == VolumeInfo(
        "hyos-system", "/var/lib/docker/volumes/hyos-system/_data", {LABEL_STACK: "hyos"}
    )


# --- list entries and inspect results for planning -------------------------------------------


def desired(role: str = "server", spec_hash: str = "h1") -> Desired:
    body = {"Image": "x:1", "Labels": {LABEL_SPEC_HASH: spec_hash}}
    return Desired(role, f"hyos-{role}", body, "x:1", spec_hash)


def test_from_inspect_result() -> None:
    inspect: dict[str, Any] = {
        "Id": "abc123",
        "Name": "/hyos-server",
        "Created": "2024-05-01T10:00:00.123456789Z",
        "Config": {"Image": "x:1", "Labels": LABELS},
        "State": {"Status": "running", "Running": True, "Health": {"Status": "healthy"}},
    }
    assert observed_from_json(inspect) == Observed(
        id="abc123",
        name="hyos-server",
        role="server",
        spec_hash="f" * 64,
        state="running",
        health="healthy",
        created=datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
    )


def test_from_inspect_without_health() -> None:
    inspect = {
        "Id": "abc",
        "Name": "/hyos-manager",
        "Config": {"Labels": {**LABELS, LABEL_ROLE: "manager"}},
        "State": {"Status": "exited", "ExitCode": 1},
    }
    found = observed_from_json(inspect)
    assert (found.role, found.state, found.health, found.running) == (
        "manager",
        "exited",
        None,
        False,
    )


def test_from_list_entry() -> None:
    entry = {
        "Id": "def456",
        "Names": ["/hyos-manager"],
        "Image": "x:1",
        "Labels": {**LABELS, LABEL_ROLE: "manager"},
        "State": "exited",
        "Status": "Exited (0) 5 seconds ago",
        "Created": 1714557600,
    }
    found = observed_from_json(entry)
    assert found == Observed(
        id="def456",
        name="hyos-manager",
        role="manager",
        spec_hash="f" * 64,
        state="exited",
        health=None,
        created=datetime.fromtimestamp(1714557600, UTC),
    )
    assert not found.running


def test_from_list_entry_running() -> None:
    entry = {"Id": "x", "Names": ["/hyos-server"], "Labels": LABELS, "State": "running"}
    found = observed_from_json(entry)
    assert found.running and found.name == "hyos-server" and found.role == "server"


def test_from_unlabelled_entry() -> None:
    found = observed_from_json({"Id": "x", "Names": ["/foreign"], "State": "running"})
    assert (found.role, found.spec_hash, found.name) == ("", "", "foreign")


def test_from_minimal_inspect() -> None:
    found = observed_from_json({})
    assert found == Observed(id="", name="", role="", spec_hash="", state="")


def test_inspect_then_plan() -> None:
    entry = {"Id": "x", "Names": ["/hyos-server"], "Labels": LABELS, "State": "running"}
    plan = plan_service(desired("server", "f" * 64), [observed_from_json(entry)])
    assert plan.changes_nothing
    drift = plan_service(desired("server", "e" * 64), [observed_from_json(entry)])
    assert drift.create and len(drift.remove) == 1


# --- hardening, for the audit ----------------------------------------------------------------


def test_hardening_from_inspect() -> None:
    found = hardening_from_json(
        {
            "Id": "0123456789abcdef",
            "Name": "/hyos-server",
            "Config": {
                "User": "568:568",
                "Labels": LABELS,
                "Healthcheck": {"Test": ["CMD", "true"]},
            },
            "Mounts": [{"Type": "volume", "Source": "/var/lib/docker/v/_data", "RW": True}],
            "HostConfig": {
                "CapDrop": ["ALL"],
                "CapAdd": None,
                "SecurityOpt": ["no-new-privileges:true", "seccomp=unconfined"],
                "Mounts": [{"Type": "bind", "Source": "/etc/machine-id", "ReadOnly": True}],
                "Binds": ["/srv/a:/a:ro", "/srv/b:/b"],
                "NetworkMode": "hyos-net",
                "PidMode": "host",
                "IpcMode": "private",
                "Memory": 4 << 30,
                "NanoCpus": 2_000_000_000,
                "PidsLimit": None,
                "ReadonlyRootfs": True,
                "PortBindings": {"5520/udp": [{"HostIp": "", "HostPort": "5520"}]},
                "Devices": [{"PathOnHost": "/dev/kvm", "PathInContainer": "/dev/kvm"}],
                "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
                "Init": True,
                "Tmpfs": {"/tmp": "rw,noexec"},
            },
        }
    )
    assert (found.id, found.name, found.user) == ("0123456789abcdef", "hyos-server", "568:568")
    assert found.health_test == ("CMD", "true") and found.labels == LABELS
    assert (found.cap_drop, found.cap_add, found.privileged) == (("ALL",), (), False)
    assert found.security_options == (("no-new-privileges", "true"), ("seccomp", "unconfined"))
    assert found.mounts == (
        MountFact("volume", "/var/lib/docker/v/_data", False),
        MountFact("bind", "/etc/machine-id", True),
        MountFact("bind", "/srv/a", True),
        MountFact("bind", "/srv/b", False),
    )
    assert found.network_mode == "hyos-net"
    assert found.namespaces == {
        "network": "hyos-net", "PID": "host", "IPC": "private", "UTS": "", "user": ""
    }  # fmt: skip
    assert (found.memory, found.nano_cpus, found.cpu_quota, found.pids_limit) == (
        4 << 30,
        2_000_000_000,
        0,
        0,
    )
    assert found.port_bindings == (PortBinding("5520/udp", ""),)
    assert found.devices == ("/dev/kvm",)
    assert (found.restart_policy, found.log_driver, found.log_max_size) == (
        "no",
        "json-file",
        "10m",
    )
    assert found.read_only_root and found.init and found.tmpfs == {"/tmp": "rw,noexec"}


def test_hardening_of_an_empty_inspect_is_the_unsafe_default() -> None:
    found = hardening_from_json({})
    assert found == ContainerHardening(
        namespaces={"network": "", "PID": "", "IPC": "", "UTS": "", "user": ""},
        network_mode="default",
    )
    assert found.log_driver is None and found.restart_policy == "no"


def test_exec_inspects_are_parsed_failing_closed() -> None:
    doc = {"ID": "e1", "ContainerID": "c1", "ProcessConfig": {"user": "568", "privileged": False}}
    assert exec_from_json(doc) == ExecInfo("e1", "c1", "568", False)
    # A missing privileged flag is treated as privileged: deny when unsure.
    unsure = exec_from_json({"ID": "e", "ContainerID": "c", "ProcessConfig": {}})
    assert unsure == ExecInfo("e", "c", "", True)
    odd_user = exec_from_json({"ID": "e", "ContainerID": "c", "ProcessConfig": {"user": 0}})
    assert odd_user is not None and odd_user.user == "<?>"


@pytest.mark.parametrize(
    "doc",
    [None, [], {"ID": "e"}, {"ID": 5, "ContainerID": "c", "ProcessConfig": {}},
     {"ID": "e", "ContainerID": "c", "ProcessConfig": []}],
)  # fmt: skip
def test_odd_exec_inspects_are_no_exec(doc: object) -> None:
    assert exec_from_json(doc) is None


def test_a_container_inspect_gives_the_guard_its_id_and_labels() -> None:
    info = container_from_json({"Id": "c" * 64, "Config": {"Labels": {"a": "b"}}})
    assert (info.id, dict(info.labels)) == ("c" * 64, {"a": "b"})
    assert container_from_json({"Id": "c", "Config": {"Labels": None}}).labels == {}
