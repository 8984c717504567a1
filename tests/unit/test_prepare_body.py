"""The prepare helper's create body: root, but boxed in."""

from __future__ import annotations

import json

from supervisor.policy import PREPARE_CAPS, PrepareSpec, build_prepare_body
from supervisor.stack import Mount


def spec(**overrides: object) -> PrepareSpec:
    base = {
        "stack": "hyos",
        "image": "hyos-supervisor:0.1.0",
        "uid": 568,
        "gid": 568,
        "data": Mount("volume", "hyos-data", "/data"),
        "system_volume": "hyos-system",
        "secret_names": ("api_client_id", "api_client_secret"),
    }
    base.update(overrides)
    return PrepareSpec(**base)  # type: ignore[arg-type]


def test_the_helper_is_boxed_in() -> None:
    body = build_prepare_body(spec())
    host = body["HostConfig"]
    assert body["User"] == "0:0"
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == sorted(PREPARE_CAPS) == ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
    assert host["Privileged"] is False
    assert host["Memory"] > 0 and host["PidsLimit"] > 0
    assert {m["Target"] for m in host["Mounts"]} == {"/data", "/hyos-system"}
    assert body["Labels"]["io.hyos.role"] == "prepare"


def test_the_command_prepares_data_machine_id_and_secrets() -> None:
    body = build_prepare_body(spec(rotate=("api_client_secret",)))
    assert body["Entrypoint"] == ["python3", "-m", "entrypoint", "prepare"]
    cmd = body["Cmd"]
    assert cmd[:2] == ["--user", "568:568"]
    assert cmd[cmd.index("--machine-id") + 1] == "/hyos-system/machine-id"
    assert cmd[cmd.index("--secrets") + 1] == "/data/.hyos/secrets"
    assert cmd[cmd.index("--rotate") + 1] == "api_client_secret"
    assert cmd[-2:] == ["--prepare", "/data"]
    assert cmd[cmd.index("--manager-config") + 1] == "/data/.state/manager-config.json"
    assert "AttachStdin" not in body


def test_supplied_values_go_over_stdin_not_the_body() -> None:
    body = build_prepare_body(spec(secrets_on_stdin=True))
    assert body["OpenStdin"] is True and body["StdinOnce"] is True
    assert "--secrets-stdin" in body["Cmd"]
    # The body carries names and paths only: nothing a value could hide in.
    assert "Env" not in body
    assert "secret-value" not in json.dumps(body)
