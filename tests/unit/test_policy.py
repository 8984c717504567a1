"""Policy: the create body follows every rule, and the audit catches each rule broken."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from entrypoint.contract import LABEL_MANAGED, LABEL_ROLE, LABEL_SPEC_HASH, LABEL_STACK
from supervisor import policy
from supervisor.dockertypes import hardening_from_json
from supervisor.policy import (
    NO_NEW_PRIVILEGES,
    RULES,
    Expectation,
    Finding,
    build_create_body,
    spec_hash,
)
from supervisor.settings import Settings, load_settings
from supervisor.stack import desired_services, secret_env

IMAGE_HEALTHCHECK = {"Test": ["CMD-SHELL", "wget -qO- http://127.0.0.1:30381/health"]}


def bodies(settings: Settings) -> dict[str, dict[str, Any]]:
    return {role: build_create_body(spec) for role, spec in desired_services(settings).items()}


def custom_settings() -> Settings:
    return load_settings(
        stack="blue",
        server={
            "image": "reg.example/hyos/server:1.2",
            "user": "1000:1001",
            "memory": "8g",
            "cpus": 3.5,
            "pids_limit": 4096,
            "cap_add": ["NET_BIND_SERVICE", "CHOWN"],
            "ports": ["5520:5520/udp", "127.0.0.1:30381:30381"],
            "host_ip": "192.0.2.10",
            "env": {"JAVA_OPTS": "-Xms1g", "A": "b"},
            "tmpfs": ["/home/hytale", "/var/cache/x"],
            "stop_timeout": 120,
        },
        manager={"host_ip": "10.0.0.5", "memory": "1g", "cpus": 0.5, "pids_limit": 256},
        log_max_size="20m",
        log_max_file=5,
    )


def as_inspect(
    body: dict[str, Any], name: str = "c", image_healthcheck: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Shape a create body like the engine's inspect result for the container it creates.

    `image_healthcheck` stands in for the image's HEALTHCHECK, merged the way the engine
    merges it (the body's override wins, a missing Test comes from the image).
    """
    body = copy.deepcopy(body)
    host = body.pop("HostConfig")
    body.pop("NetworkingConfig", None)
    config = body
    health = config.get("Healthcheck")
    if image_healthcheck is not None:
        config["Healthcheck"] = {**image_healthcheck, **(health or {})}
        if not config["Healthcheck"].get("Test"):
            config["Healthcheck"]["Test"] = image_healthcheck["Test"]
    mounts = [
        {"Type": m["Type"], "Source": m["Source"], "Destination": m["Target"]}
        for m in host.get("Mounts") or []
    ]
    return {"Id": "0123456789abcdef", "Name": f"/{name}", "Config": config,
            "HostConfig": host, "Mounts": mounts}  # fmt: skip


def audit(inspect: dict[str, Any], expect: Expectation) -> list[Finding]:
    """The audit of an inspect result, parsed the way the engine parses a live one."""
    return policy.audit(hardening_from_json(inspect), expect)


def failing(inspect: dict[str, Any], expect: Expectation) -> set[str]:
    return {f.rule.id for f in audit(inspect, expect) if not f.passed}


def expectation(settings: Settings, role: str) -> Expectation:
    service = settings.services()[role]
    return Expectation(
        stack=settings.stack,
        network=settings.network_name,
        cap_add=frozenset(service.cap_add),
        host_ips=frozenset(p.host_ip for p in service.port_bindings),
    )


# --- build_create_body ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["server", "manager"])
def test_default_body(role: str) -> None:
    settings = load_settings()
    body = bodies(settings)[role]
    host = body["HostConfig"]
    assert body["User"] == "568:568"
    assert body["Image"] == settings.services()[role].image
    assert host["SecurityOpt"] == [NO_NEW_PRIVILEGES] == ["no-new-privileges:true"]
    assert host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] == []
    assert host["ReadonlyRootfs"] is True
    assert "uid=568,gid=568,mode=0700" in host["Tmpfs"]["/tmp"]
    assert host["Memory"] == settings.services()[role].memory > 0
    assert host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] == round(settings.services()[role].cpus * 1e9) > 0
    assert host["PidsLimit"] == settings.services()[role].pids_limit > 0
    assert host["Privileged"] is False
    for key in ("PidMode", "UTSMode", "UsernsMode", "CgroupParent", "Binds"):
        assert not host.get(key), key
    assert host.get("IpcMode") in (None, "", "private")
    assert not host.get("Devices")
    assert host["NetworkMode"] == "hyos-net"
    assert list(body["NetworkingConfig"]["EndpointsConfig"]) == ["hyos-net"]
    assert host["RestartPolicy"] == {"Name": "no"}
    assert host["LogConfig"]["Type"] == "json-file"
    assert host["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}
    assert host["Init"] is True
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "hyos-data", "Target": "/data", "ReadOnly": False}
    ]
    assert set(body["Labels"]) == {LABEL_MANAGED, LABEL_STACK, LABEL_ROLE, LABEL_SPEC_HASH}
    assert body["Labels"][LABEL_MANAGED] == "true"
    assert body["Labels"][LABEL_STACK] == "hyos"
    assert body["Labels"][LABEL_ROLE] == role
    assert len(body["Labels"][LABEL_SPEC_HASH]) == 64
    assert "Healthcheck" not in body  # the image's own HEALTHCHECK applies
    # Secrets arrive as file paths, never values.
    secrets = [line for line in body["Env"] if line.split("=", 1)[0].endswith("_FILE")]
    assert secrets == [f"{k}={v}" for k, v in secret_env(role)]
    assert all(line.split("=", 1)[1].startswith("/data/.hyos/secrets/") for line in secrets)
    wiring = sorted(set(body["Env"]) - set(secrets))
    if role == "manager":
        # HyOS's manager is told where the server and the shared state are, as HyOS's
        # compose does, and the game port players use.
        assert wiring == [
            "HYTALE_CONTAINER_NAME=hyos-server",
            "HYTALE_GAME_PORT=5520",
            "HYTALE_SERVER_HOST=hyos-server",
            "HYTALE_SERVER_PORT=30381",
            "HYTALE_STATE_DIR=/data/.state",
        ]
    else:
        # The REST API plugin's hash follows a rotated secret (HyOS's compose sets it too).
        assert wiring == ["API_REGENERATE_CONFIG=true"]
    assert body["StopSignal"] == "SIGTERM"


def test_default_ports() -> None:
    server, manager = bodies(load_settings()).values()
    assert server["HostConfig"]["PortBindings"] == {
        "5520/udp": [{"HostIp": "0.0.0.0", "HostPort": "5520"}]
    }
    assert server["ExposedPorts"] == {"5520/udp": {}}
    assert manager["HostConfig"]["PortBindings"] == {
        "3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "3000"}]
    }
    assert "30381/tcp" not in server["HostConfig"]["PortBindings"]
    assert server["StopTimeout"] == 60


def test_default_tmpfs_per_service() -> None:
    server, manager = bodies(load_settings()).values()
    assert set(server["HostConfig"]["Tmpfs"]) == {"/tmp", "/home/hytale"}
    assert set(manager["HostConfig"]["Tmpfs"]) == {"/tmp", "/app/.next/cache"}
    for body in (server, manager):
        for options in body["HostConfig"]["Tmpfs"].values():
            assert "uid=568,gid=568,mode=0700" in options


def test_custom_body() -> None:
    settings = custom_settings()
    server, manager = bodies(settings).values()
    host = server["HostConfig"]
    assert server["User"] == "1000:1001"
    assert server["Image"] == "reg.example/hyos/server:1.2"
    assert sorted(host["CapAdd"]) == ["CHOWN", "NET_BIND_SERVICE"]
    assert host["CapDrop"] == ["ALL"]
    assert manager["HostConfig"]["CapAdd"] == []
    assert set(host["Tmpfs"]) == {"/tmp", "/home/hytale", "/var/cache/x"}
    for options in host["Tmpfs"].values():
        assert "uid=1000,gid=1001,mode=0700" in options
    assert host["Memory"] == 8 * 1024**3
    assert host["NanoCpus"] == 3_500_000_000
    assert host["PidsLimit"] == 4096
    assert manager["HostConfig"]["NanoCpus"] == 500_000_000
    assert manager["HostConfig"]["Memory"] == 1024**3
    assert host["NetworkMode"] == manager["HostConfig"]["NetworkMode"] == "blue-net"
    assert host["PortBindings"] == {
        "5520/udp": [{"HostIp": "192.0.2.10", "HostPort": "5520"}],
        "30381/tcp": [{"HostIp": "127.0.0.1", "HostPort": "30381"}],
    }
    assert manager["HostConfig"]["PortBindings"] == {
        "3000/tcp": [{"HostIp": "10.0.0.5", "HostPort": "3000"}]
    }
    assert host["LogConfig"]["Config"] == {"max-size": "20m", "max-file": "5"}
    assert server["Env"] == sorted(
        [
            "A=b",
            "API_REGENERATE_CONFIG=true",
            "JAVA_OPTS=-Xms1g",
            *(f"{k}={v}" for k, v in secret_env("server")),
        ]
    )
    assert server["StopTimeout"] == 120
    assert server["Labels"][LABEL_STACK] == "blue"
    assert host["Mounts"][0]["Source"] == "blue-data"


def test_host_path_data_is_a_bind() -> None:
    server = bodies(load_settings(data="/srv/hyos"))["server"]
    assert server["HostConfig"]["Mounts"] == [
        {"Type": "bind", "Source": "/srv/hyos", "Target": "/data", "ReadOnly": False}
    ]


def test_host_port_zero_lets_engine_choose() -> None:
    manager = bodies(load_settings(manager={"ports": ["0:3000"]}))["manager"]
    assert manager["HostConfig"]["PortBindings"]["3000/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": ""}
    ]


def test_healthcheck_override_in_nanoseconds() -> None:
    settings = load_settings(
        server={
            "healthcheck": {
                "interval": 2.5,
                "timeout": 1,
                "retries": 4,
                "start_period": 0.001,
                "test": ["/bin/check", "--quick"],
            }
        }
    )
    server, manager = bodies(settings).values()
    assert server["Healthcheck"] == {
        "Interval": 2_500_000_000,
        "Timeout": 1_000_000_000,
        "Retries": 4,
        "StartPeriod": 1_000_000,
        "Test": ["CMD", "/bin/check", "--quick"],
    }
    assert "Healthcheck" not in manager


def test_healthcheck_override_without_test_keeps_image_test() -> None:
    settings = load_settings(manager={"healthcheck": {"interval": 1}})
    health = bodies(settings)["manager"]["Healthcheck"]
    assert "Test" not in health
    assert health["Interval"] == 1_000_000_000
    assert health["StartPeriod"] == 0


# --- spec hash --------------------------------------------------------------------------------


def test_spec_hash_stable() -> None:
    first = bodies(load_settings())
    second = bodies(load_settings())
    for role in first:
        assert first[role]["Labels"][LABEL_SPEC_HASH] == second[role]["Labels"][LABEL_SPEC_HASH]
        assert spec_hash(first[role]) == first[role]["Labels"][LABEL_SPEC_HASH]


def test_the_body_holds_plain_values() -> None:
    """Sizes are parsed once into ByteSize, but the body carries plain ints: it is what the
    engine gets, what the hash covers, and what a YAML dump (safe_dump refuses an int
    subclass) or any other encoder must take as it is."""
    for body in bodies(custom_settings()).values():
        assert type(body["HostConfig"]["Memory"]) is int
        assert type(body["HostConfig"]["MemorySwap"]) is int
        yaml.safe_dump(body)


def test_spec_hash_ignores_key_order() -> None:
    body = bodies(load_settings())["server"]
    reordered = dict(reversed(list(body.items())))
    reordered["HostConfig"] = dict(reversed(list(body["HostConfig"].items())))
    reordered["Labels"] = dict(reversed(list(body["Labels"].items())))
    assert spec_hash(reordered) == spec_hash(body)


def test_spec_hash_excludes_itself() -> None:
    body = bodies(load_settings())["server"]
    stripped = copy.deepcopy(body)
    del stripped["Labels"][LABEL_SPEC_HASH]
    assert spec_hash(stripped) == spec_hash(body)
    body["Labels"][LABEL_SPEC_HASH] = "0" * 64
    assert spec_hash(body) == spec_hash(stripped)


@pytest.mark.parametrize(
    "change",
    [{"server": {"image": "reg.example/hyos/server:9"}}, {"server": {"memory": "7g"}},
     {"server": {"cpus": 3}}, {"server": {"cap_add": ["CHOWN"]}}, {"stack": "other"},
     {"server": {"env": {"X": "1"}}}, {"server": {"healthcheck": {"interval": 5}}},
     {"server": {"ports": ["5521:5520/udp"]}}],
)  # fmt: skip
def test_spec_hash_changes_with_the_spec(change: dict[str, Any]) -> None:
    before = bodies(load_settings())
    after = bodies(load_settings(**change))
    assert before["server"]["Labels"][LABEL_SPEC_HASH] != after["server"]["Labels"][LABEL_SPEC_HASH]


def test_spec_hash_of_other_service_unchanged() -> None:
    before = bodies(load_settings())
    after = bodies(load_settings(server={"memory": "7g", "image": "reg.example/s:2"}))
    assert (
        before["manager"]["Labels"][LABEL_SPEC_HASH] == after["manager"]["Labels"][LABEL_SPEC_HASH]
    )


def test_spec_hash_differs_between_roles() -> None:
    settings = load_settings(server={"image": "x:1"}, manager={"image": "x:1"})
    server, manager = bodies(settings).values()
    assert server["Labels"][LABEL_SPEC_HASH] != manager["Labels"][LABEL_SPEC_HASH]


# --- audit ------------------------------------------------------------------------------------


def test_rule_ids_unique() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    assert all(rule.fix and rule.title for rule in RULES)


@pytest.mark.parametrize("factory", [load_settings, custom_settings])
@pytest.mark.parametrize("role", ["server", "manager"])
def test_built_body_passes_every_rule(factory: Callable[[], Settings], role: str) -> None:
    settings = factory()
    inspect = as_inspect(bodies(settings)[role], image_healthcheck=IMAGE_HEALTHCHECK)
    findings = audit(inspect, expectation(settings, role))
    assert [f.rule.id for f in findings] == [rule.id for rule in RULES]
    assert failing(inspect, expectation(settings, role)) == set()
    assert all(f.container == "c" for f in findings)
    notes = {f.rule.id: f.detail for f in findings if f.detail != "ok"}
    # A passing read-only root names what stays writable, and whether it is executable.
    tmp = "exec" if role == "server" else "noexec"
    assert list(notes) == ["read-only-root"]
    assert f"/tmp ({tmp})" in notes["read-only-root"]


def test_body_with_healthcheck_override_passes_without_image_check() -> None:
    settings = load_settings(manager={"healthcheck": {"test": ["/bin/true"]}})
    inspect = as_inspect(bodies(settings)["manager"])
    assert failing(inspect, expectation(settings, "manager")) == set()


def _host(i: dict[str, Any]) -> dict[str, Any]:
    host: dict[str, Any] = i["HostConfig"]
    return host


def _bind(source: str, target: str = "/x") -> Callable[[dict[str, Any]], None]:
    def mutate(i: dict[str, Any]) -> None:
        _host(i)["Mounts"].append({"Type": "bind", "Source": source, "Target": target})
        i["Mounts"].append({"Type": "bind", "Source": source, "Destination": target})

    return mutate


def _set(key: str, value: Any, section: str = "HostConfig") -> Callable[[dict[str, Any]], None]:
    def mutate(i: dict[str, Any]) -> None:
        i[section][key] = value

    return mutate


def _delete(key: str, section: str = "HostConfig") -> Callable[[dict[str, Any]], None]:
    def mutate(i: dict[str, Any]) -> None:
        del i[section][key]

    return mutate


def _security_opt(options: list[str]) -> Callable[[dict[str, Any]], None]:
    return _set("SecurityOpt", options)


def _port_ip(ip: str) -> Callable[[dict[str, Any]], None]:
    def mutate(i: dict[str, Any]) -> None:
        for bindings in _host(i)["PortBindings"].values():
            for binding in bindings:
                binding["HostIp"] = ip

    return mutate


def _labels_without(*keys: str) -> Callable[[dict[str, Any]], None]:
    def mutate(i: dict[str, Any]) -> None:
        for key in keys:
            del i["Config"]["Labels"][key]

    return mutate


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], set[str]]] = {
    # Privileged also means every capability, every device and no seccomp filter.
    "privileged": (
        _set("Privileged", True),
        {"not-privileged", "capabilities", "no-devices", "seccomp"},
    ),
    "capdrop-missing-all": (_set("CapDrop", ["NET_RAW"]), {"capabilities"}),
    "capdrop-empty": (_delete("CapDrop"), {"capabilities"}),
    "extra-capadd": (_set("CapAdd", ["SYS_ADMIN"]), {"capabilities"}),
    "extra-capadd-prefixed": (_set("CapAdd", ["CAP_NET_ADMIN"]), {"capabilities"}),
    "uid-0": (_set("User", "0:0", "Config"), {"non-root-user"}),
    "uid-0-no-gid": (_set("User", "0", "Config"), {"non-root-user"}),
    "user-name": (_set("User", "hytale", "Config"), {"non-root-user"}),
    "user-empty": (_set("User", "", "Config"), {"non-root-user"}),
    "no-no-new-privileges": (_security_opt([]), {"no-new-privileges"}),
    "no-new-privileges-false": (_security_opt(["no-new-privileges:false"]),
                                {"no-new-privileges"}),
    "no-new-privileges-equals-false": (_security_opt(["no-new-privileges=false"]),
                                       {"no-new-privileges"}),
    "seccomp-unconfined": (_security_opt([NO_NEW_PRIVILEGES, "seccomp=unconfined"]),
                           {"seccomp"}),
    "seccomp-unconfined-colon": (_security_opt([NO_NEW_PRIVILEGES, "seccomp:unconfined"]),
                                 {"seccomp"}),
    "host-network": (_set("NetworkMode", "host"), {"no-host-network", "dedicated-network"}),
    "host-pid": (_set("PidMode", "host"), {"no-host-pid"}),
    "host-ipc": (_set("IpcMode", "host"), {"no-host-ipc"}),
    "host-uts": (_set("UTSMode", "host"), {"no-host-uts"}),
    "host-userns": (_set("UsernsMode", "host"), {"no-host-userns"}),
    "docker-sock-mount": (_bind("/var/run/docker.sock"),
                          {"no-sensitive-mounts", "no-docker-socket"}),
    "run-docker-sock-mount": (_bind("/run/docker.sock"),
                              {"no-sensitive-mounts", "no-docker-socket"}),
    "docker-sock-bind": (_set("Binds", ["/var/run/docker.sock:/var/run/docker.sock:ro"]),
                         {"no-sensitive-mounts", "no-docker-socket"}),
    "custom-docker-sock": (_bind("/srv/mine/docker.sock"), {"no-docker-socket"}),
    "etc-mount": (_bind("/etc"), {"no-sensitive-mounts"}),
    "etc-subdir-mount": (_bind("/etc/ssl/"), {"no-sensitive-mounts"}),
    "root-mount": (_bind("/"), {"no-sensitive-mounts"}),
    "etc-bind": (_set("Binds", ["/etc:/host/etc"]), {"no-sensitive-mounts"}),
    "devices": (_set("Devices", [{"PathOnHost": "/dev/kvm", "PathInContainer": "/dev/kvm",
                                  "CgroupPermissions": "rwm"}]), {"no-devices"}),
    "no-memory": (_set("Memory", 0), {"memory-limit"}),
    "memory-missing": (_delete("Memory"), {"memory-limit"}),
    "no-cpu": (_set("NanoCpus", 0), {"cpu-limit"}),
    "no-pids": (_set("PidsLimit", 0), {"pids-limit"}),
    "pids-unlimited": (_set("PidsLimit", -1), {"pids-limit"}),
    "pids-null": (_set("PidsLimit", None), {"pids-limit"}),
    "writable-root": (_set("ReadonlyRootfs", False), {"read-only-root"}),
    "host-ip-empty": (_port_ip(""), {"bound-interface"}),
    "host-ip-unexpected": (_port_ip("203.0.113.9"), {"bound-interface"}),
    "default-bridge": (_set("NetworkMode", "bridge"), {"dedicated-network"}),
    "default-network": (_set("NetworkMode", "default"), {"dedicated-network"}),
    "other-network": (_set("NetworkMode", "someone-elses-net"), {"dedicated-network"}),
    "cgroup-parent": (_set("CgroupParent", "/custom"), {"cgroup-parent"}),
    "restart-always": (_set("RestartPolicy", {"Name": "always"}), {"restart-policy"}),
    "restart-unless-stopped": (_set("RestartPolicy", {"Name": "unless-stopped"}),
                               {"restart-policy"}),
    "log-syslog": (_set("LogConfig", {"Type": "syslog", "Config": {}}), {"log-caps"}),
    "log-uncapped": (_set("LogConfig", {"Type": "json-file", "Config": {}}), {"log-caps"}),
    "no-init": (_set("Init", False), {"init"}),
    "init-missing": (_delete("Init"), {"init"}),
    "no-labels": (_set("Labels", {}, "Config"), {"labels"}),
    "missing-managed": (_labels_without(LABEL_MANAGED), {"labels"}),
    "missing-role": (_labels_without(LABEL_ROLE), {"labels"}),
    "missing-hash": (_labels_without(LABEL_SPEC_HASH), {"labels"}),
    "other-stack": (_set("Labels", {LABEL_MANAGED: "true", LABEL_STACK: "other",
                                    LABEL_ROLE: "server", LABEL_SPEC_HASH: "x"}, "Config"),
                    {"labels"}),
    "no-healthcheck": (_delete("Healthcheck", "Config"), {"health-check"}),
    "healthcheck-none": (_set("Healthcheck", {"Test": ["NONE"]}, "Config"), {"health-check"}),
}  # fmt: skip


def test_mutations_cover_every_rule() -> None:
    covered = set().union(*(expected for _, expected in MUTATIONS.values()))
    assert covered == {rule.id for rule in RULES}


@pytest.mark.parametrize("role", ["server", "manager"])
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_each_mutation_fails_exactly_its_rules(role: str, mutation: str) -> None:
    settings = load_settings()
    inspect = as_inspect(bodies(settings)[role], image_healthcheck=IMAGE_HEALTHCHECK)
    mutate, expected = MUTATIONS[mutation]
    mutate(inspect)
    assert failing(inspect, expectation(settings, role)) == expected
    for finding in audit(inspect, expectation(settings, role)):
        if not finding.passed:
            assert finding.detail and finding.detail != "ok"


def test_configured_capability_passes_audit() -> None:
    settings = custom_settings()
    inspect = as_inspect(bodies(settings)["server"], image_healthcheck=IMAGE_HEALTHCHECK)
    assert failing(inspect, expectation(settings, "server")) == set()
    # the manager is not configured with CHOWN, so the same CapAdd fails there
    manager = as_inspect(bodies(settings)["manager"], image_healthcheck=IMAGE_HEALTHCHECK)
    manager["HostConfig"]["CapAdd"] = ["CHOWN"]
    assert failing(manager, expectation(settings, "manager")) == {"capabilities"}


def test_root_equivalent_capability_fails_audit_even_when_allowed() -> None:
    settings = load_settings(
        server={"allow_dangerous_capabilities": True, "cap_add": ["SYS_ADMIN"]}
    )
    assert settings.server.cap_add == ["SYS_ADMIN"]
    inspect = as_inspect(bodies(settings)["server"], image_healthcheck=IMAGE_HEALTHCHECK)
    assert inspect["HostConfig"]["CapAdd"] == ["SYS_ADMIN"]  # created as the operator asked
    found = failing(inspect, expectation(settings, "server"))
    assert found == {"capabilities"}
    # and every start says so
    assert any("SYS_ADMIN" in w and "amounts to root" in w for w in settings.warnings())


def test_no_new_privileges_spellings() -> None:
    settings = load_settings()
    for option in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
        inspect = as_inspect(bodies(settings)["server"], image_healthcheck=IMAGE_HEALTHCHECK)
        inspect["HostConfig"]["SecurityOpt"] = [option]
        assert failing(inspect, expectation(settings, "server")) == set(), option


def test_named_volume_is_not_a_sensitive_bind() -> None:
    settings = load_settings()
    inspect = as_inspect(bodies(settings)["server"], image_healthcheck=IMAGE_HEALTHCHECK)
    # the engine reports a volume's host directory, under /var/lib/docker
    inspect["Mounts"][0]["Source"] = "/var/lib/docker/volumes/hyos-data/_data"
    assert failing(inspect, expectation(settings, "server")) == set()


def test_empty_inspect_fails_safely() -> None:
    expect = Expectation(stack="hyos", network="hyos-net")
    findings = audit({}, expect)
    assert len(findings) == len(RULES)
    assert {"non-root-user", "capabilities", "no-new-privileges", "memory-limit",
            "read-only-root", "labels", "health-check"} <= failing({}, expect)  # fmt: skip


def test_audit_names_the_container() -> None:
    settings = load_settings()
    inspect = as_inspect(bodies(settings)["server"], name="hyos-server")
    assert {f.container for f in audit(inspect, expectation(settings, "server"))} == {"hyos-server"}
    del inspect["Name"]
    assert {f.container for f in audit(inspect, expectation(settings, "server"))} == {
        "0123456789ab"
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"stack": "mine", "server": {"ports": ["0.0.0.0:27015:5520/udp"]}},
            {"HYTALE_CONTAINER_NAME": "mine-server", "HYTALE_SERVER_HOST": "mine-server",
             "HYTALE_SERVER_PORT": "30381", "HYTALE_GAME_PORT": "27015"},
        ),
        (
            # A port the engine picks is unknown before start: the manager keeps its default.
            {"server": {"ports": ["127.0.0.1:0:5520/udp"]}},
            {"HYTALE_GAME_PORT": None},
        ),
        (
            {"server": {"env": {"API_PORT": "31000", "SERVER_PORT": "5600"},
                        "ports": ["5601:5600/udp", "5520:5520/udp"]}},
            {"HYTALE_SERVER_PORT": "31000", "HYTALE_GAME_PORT": "5601"},
        ),
    ],
)  # fmt: skip
def test_the_manager_is_told_where_the_server_is(
    overrides: dict[str, Any], expected: dict[str, str | None]
) -> None:
    manager = bodies(load_settings(**overrides))["manager"]
    env = dict(line.split("=", 1) for line in manager["Env"])
    assert env["HYTALE_STATE_DIR"] == "/data/.state"
    for key, value in expected.items():
        assert env.get(key) == value, key
