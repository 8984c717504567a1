"""`hyos-supervisor render kubernetes`: the shell around `supervisor.kubernetes`.

Renders, checks every pod against Pod Security "restricted" (the checker in
`supervisor.podsecurity`) and refuses to write anything that would not be admitted, then
writes YAML: one file per object plus kustomization.yaml, or one stream on stdout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from entrypoint.contract import generate_secret
from supervisor import kubernetes, podsecurity
from supervisor.logs import error_line
from supervisor.settings import EX_CONFIG, Settings

EX_OK = 0
EX_CANTCREAT = 73  # sysexits.h: the output cannot be written


class _Dumper(yaml.SafeDumper):
    """Block style, no anchors, multi-line strings (the launcher script) as literals."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
# A str subclass (a roles.Role) is written as the string it is.
_Dumper.add_multi_representer(str, _str)


def to_yaml(obj: Mapping[str, Any]) -> str:
    return yaml.dump(dict(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def secret_values(settings: Settings) -> dict[str, str]:
    """Operator-supplied values, else fresh ones (as the prepare step makes them)."""
    supplied = settings.supplied_secrets()
    values = {}
    for spec in kubernetes.needed_secrets(settings):
        if spec.name in supplied:
            values[spec.name] = supplied[spec.name]
        elif spec.name == "api_client_id":
            values[spec.name] = "hyos-manager"  # an identifier, HyOS's own default
        else:
            values[spec.name] = generate_secret()
    return values


def _write(path: Path, text: str, mode: int) -> None:
    # Created with its final mode: a Secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(mode)  # O_CREAT's mode passes through the umask


def render_kubernetes(
    settings: Settings, namespace: str | None, output: str, with_secrets: bool
) -> int:
    if namespace is not None:
        try:
            from supervisor.settings import validate_namespace

            validate_namespace(namespace)
        except ValueError as err:
            error_line(f"hyos-supervisor: config error: --namespace: {err}")
            return EX_CONFIG
    values = secret_values(settings) if with_secrets else None
    objects = kubernetes.render(settings, namespace, values)
    problems = [f"{obj['kind']} {obj['metadata']['name']}: {v}"
                for obj in objects for v in podsecurity.check(obj)]  # fmt: skip
    if problems:
        for problem in problems:
            error_line(f"hyos-supervisor: render: not admitted by Pod Security restricted: "
                       f"{problem}; change the settings (e.g. cap_add, user, read_only)")  # fmt: skip
        return EX_CONFIG
    if output == "-":
        sys.stdout.write("---\n".join(to_yaml(obj) for obj in objects))
    else:
        directory = Path(output)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for obj in objects:
                mode = 0o600 if obj["kind"] == "Secret" else 0o644
                _write(directory / kubernetes.file_name(obj), to_yaml(obj), mode)
            _write(directory / "kustomization.yaml", to_yaml(kubernetes.kustomization(objects)),
                   0o644)  # fmt: skip
        except OSError as err:
            error_line(f"hyos-supervisor: render: cannot write {output}: {err.strerror or err}; "
                       "pass a writable directory or - for stdout")  # fmt: skip
            return EX_CANTCREAT
        print(f"wrote {len(objects)} objects and kustomization.yaml to {directory}; "
              f"apply with: kubectl apply -k {directory}", file=sys.stderr)  # fmt: skip
    if not with_secrets and kubernetes.needed_secrets(settings):
        print("the pods wait for their secrets: create the Secret once (after `kubectl apply`, "
              "which creates the namespace):\n"
              + kubernetes.secret_command(settings, namespace), file=sys.stderr)  # fmt: skip
    return EX_OK
