"""Print the shape figures issue #12 tracks for supervisor/.

- largest class and longest function (by source lines, decorators excluded);
- Docker-JSON indexing sites outside engine.py: a subscript ``x["Key"]`` or a call
  ``x.get("Key", ...)`` whose string key is one of Docker's inspect/event keys below,
  in supervisor/*.py except engine.py (the one module allowed to read Docker JSON)
  and guard.py/guard_rules.py (the guard proxy parses HTTP request bodies and its own
  proxied answers, not the supervisor's inspect results). Keys used to *build* request
  bodies (dict literals) are not indexing and are not counted. Lowercase keys
  ("status", "id", "time") are left out: the control socket, the auth file and the
  state file use them too, so they would count HyOS's own JSON;
- import arrows from supervisor/ into entrypoint/.

Usage: python scripts/code_shape.py [package-dir]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DOCKER_KEYS = frozenset(
    {
        "State", "Config", "HostConfig", "NetworkSettings", "Health", "Status", "ExitCode",
        "StartedAt", "FinishedAt", "OOMKilled", "Labels", "Mounts", "Actor", "Attributes",
        "timeNano", "Id", "ID", "Running", "Pid", "Log", "Name", "Names",
        "Image", "Created", "Action", "Type", "Restarting", "FailingStreak",
        "Output", "Healthcheck", "Entrypoint", "Cmd", "StatusCode", "User", "SecurityOpt",
        "Binds", "Privileged", "RestartPolicy", "LogConfig", "Tmpfs", "PortBindings",
        "StartPeriod", "Mountpoint", "RestartCount", "ContainerID", "ProcessConfig",
    }
)  # fmt: skip
EXCLUDED = {"engine.py", "guard.py", "guard_rules.py"}


def _key(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def docker_json_sites(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _key(node.slice) in DOCKER_KEYS:
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and _key(node.args[0]) in DOCKER_KEYS
        ):
            lines.append(node.lineno)
    return sorted(lines)


def _span(node: ast.AST) -> int:
    return int(getattr(node, "end_lineno", 0)) - int(getattr(node, "lineno", 0)) + 1


def main(root: Path) -> None:
    classes: list[tuple[int, str]] = []
    functions: list[tuple[int, str]] = []
    sites: dict[str, list[int]] = {}
    arrows: list[str] = []
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.append((_span(node), f"{path.name}:{node.name}"))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((_span(node), f"{path.name}:{node.name}"))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("entrypoint"):
                arrows.append(f"{path.name} -> {node.module}")
            elif isinstance(node, ast.Import):
                arrows += [f"{path.name} -> {a.name}" for a in node.names
                           if a.name.startswith("entrypoint")]  # fmt: skip
        if path.name not in EXCLUDED:
            found = docker_json_sites(tree)
            if found:
                sites[path.name] = found
    size, name = max(classes)
    print(f"largest class: {name} ({size} lines)")
    size, name = max(functions)
    print(f"longest function: {name} ({size} lines)")
    print(f"docker-json indexing sites outside engine.py: {sum(map(len, sites.values()))}")
    for file, lines in sites.items():
        print(f"  {file}: {len(lines)} at {', '.join(map(str, lines))}")
    print(f"import arrows supervisor -> entrypoint: {len(arrows)}")
    for arrow in arrows:
        print(f"  {arrow}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "supervisor"))
