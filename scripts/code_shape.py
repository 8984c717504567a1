"""Print the shape figures issues #12 and #23 track for supervisor/ (and its siblings).

- largest class and longest function (by source lines, decorators excluded);
- Docker-JSON indexing sites outside engine.py: a subscript ``x["Key"]`` or a call
  ``x.get("Key", ...)`` whose string key is one of Docker's inspect/event keys below,
  in supervisor/*.py except engine.py and dockertypes.py (the modules allowed to read
  Docker JSON: the parsers live in dockertypes.py)
  and guard.py/guard_rules.py (the guard proxy parses HTTP request bodies and its own
  proxied answers, not the supervisor's inspect results). Keys used to *build* request
  bodies (dict literals) are not indexing and are not counted. Lowercase keys
  ("status", "id", "time") are left out: the control socket, the auth file and the
  state file use them too, so they would count HyOS's own JSON;
- import arrows from supervisor/ into entrypoint/;
- (#23) imports from the pure modules into I/O modules: a module is I/O when it imports
  an I/O library (aiodocker, aiohttp, anyio, asyncio, socket, subprocess, tenacity) or a
  supervisor module that is I/O; the pure ones are those the README marks *pure*;
- (#23) private aiodocker calls: attribute uses of aiodocker's underscored request API
  (`_query`, `_query_json`, `_do_query`, ...) and of a stream's `_resp`;
- (#23) references to the ownership labels (LABEL_MANAGED) outside the module that
  builds them (dockertypes.py) and the contract that names them;
- (#23) fake engines in the tests (classes named *Engine, or with two or more of
  EnginePort's async methods) and `type: ignore` on lines that pass or build an engine;
  the HYOS_* environment clearing loops in the unit tests (conftest.py's one fixture
  aside; tests/standin.py builds a subprocess's environment, not the test's);
- (#23) import cycles and imports of private names between entrypoint's modules;
- (#23) role literals: string constants that are a role's name (ROLE_WORDS) in
  supervisor/*.py outside the role module (roles.py), and the files they are in: the
  files that spell a role out, which a new role would have to be checked against. The
  settings' field names (`settings.server`) are attributes, not constants, and user-facing
  sentences are longer than a role's name, so neither is counted;
- (#23) writers of a service's record outside its worker: assignments to a field of
  store.Service (``service.restart = restarts.reset(...)``, ``server.stop_requested = ...``,
  tuple targets included) on any object but ``self``, in supervisor/*.py except worker.py
  and accounting.py (the worker's own exit accounting, called only from its turn). Each is
  listed by function and sorted into what OUTSIDE_THE_TURN names (the state file's load
  before any worker runs, the shutdown after the workers ended, a stack pass's share of a
  service that the pass runs in that worker's turn through ``worker.call``) and the rest,
  writers from another task: the figure that must be 0.

Usage: python scripts/code_shape.py [package-dir]   (its siblings tests/ and entrypoint/
are read from the same parent)
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
EXCLUDED = {"engine.py", "dockertypes.py", "guard.py", "guard_rules.py"}
PURE = frozenset(
    {
        "policy", "guard_rules", "plan", "restarts", "dockertypes", "ports", "stack", "hyos",
        "secretspec", "capabilities", "kubernetes", "podsecurity", "hostpaths", "roles",
    }
)  # fmt: skip
IO_LIBRARIES = frozenset(
    {"aiodocker", "aiohttp", "anyio", "asyncio", "socket", "subprocess", "tenacity"}
)
PRIVATE_AIODOCKER = frozenset(
    {"_query", "_query_json", "_do_query", "_query_chunked_post", "_websocket", "_resp",
     "_check_version", "_canonicalize_url"}
)  # fmt: skip
PORT_METHODS = frozenset(
    {"list_stack", "inspect", "create", "start", "stop", "kill", "remove", "events",
     "wait_ready", "run_once", "read_file", "write_file", "logs_tail", "ensure_volume",
     "ensure_network", "exec_session", "follow_logs", "image_exists"}
)  # fmt: skip


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
    print(
        f"docker-json indexing sites outside engine.py and dockertypes.py: {sum(map(len, sites.values()))}"
    )
    for file, lines in sites.items():
        print(f"  {file}: {len(lines)} at {', '.join(map(str, lines))}")
    print(f"import arrows supervisor -> entrypoint: {len(arrows)}")
    for arrow in arrows:
        print(f"  {arrow}")


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Top-level names imported: modules of `package` by their short name, others whole."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == package:
                found |= {f"{package}.{a.name}" for a in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def _graph(directory: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (lazy imports included)."""
    package = directory.name
    trees = {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(directory.glob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        imported = _imports(tree, package)
        graph[name] = {m.split(".")[1] for m in imported if m.startswith(f"{package}.")}
        graph[name] &= set(trees)
    return graph


def io_modules(directory: Path) -> set[str]:
    graph = _graph(directory)
    io = set()
    for path in sorted(directory.glob("*.py")):
        roots = {m.split(".")[0] for m in _imports(ast.parse(path.read_text()), directory.name)}
        if roots & IO_LIBRARIES:
            io.add(path.stem)
    changed = True
    while changed:
        changed = False
        for name, deps in graph.items():
            if name not in io and deps & io:
                io.add(name)
                changed = True
    return io


def pure_to_io(directory: Path) -> list[str]:
    graph, io = _graph(directory), io_modules(directory)
    return sorted(f"{m} -> {d}" for m in PURE & set(graph) for d in graph[m] & io)


def private_aiodocker(directory: Path) -> list[str]:
    sites = []
    for path in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_AIODOCKER:
                sites.append(f"{path.name}:{node.lineno} {node.attr}")
    return sites


def label_copies(directory: Path) -> list[str]:
    sites = []
    for path in sorted(directory.glob("*.py")):
        if path.name == "dockertypes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name) and node.id == "LABEL_MANAGED":
                sites.append(f"{path.name}:{node.lineno}")
    return sites


def fake_engines(tests: Path) -> tuple[list[str], list[str], list[str]]:
    """(fake engine classes, type: ignore lines on an engine, HYOS_* clearing loops)."""
    fakes, ignores, clearing = [], [], []
    for path in sorted(tests.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(tests.parent)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                methods = {
                    n.name for n in node.body if isinstance(n, ast.AsyncFunctionDef)
                } & PORT_METHODS
                if node.name.endswith("Engine") or len(methods) >= 2:
                    fakes.append(f"{where}:{node.name}")
        for number, line in enumerate(text.splitlines(), 1):
            if "type: ignore" in line and "engine" in line.lower():
                ignores.append(f"{where}:{number}")
            unit = where.parts[:2] == ("tests", "unit") and path.name != "conftest.py"
            if 'startswith("HYOS_")' in line and unit:
                clearing.append(f"{where}:{number}")
    return fakes, ignores, clearing


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles = set()
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.add(" -> ".join(sorted(trail)))
                elif nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
    return sorted(cycles)


def private_imports(directory: Path) -> list[str]:
    found = []
    for path in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(directory.name):
                found += [
                    f"{path.name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return found


ROLE_WORDS = frozenset({"server", "manager", "prepare"})
ROLE_MODULE = "roles.py"


def role_literals(directory: Path) -> list[str]:
    """file:line 'word' for each role name written as a string outside roles.py."""
    sites = []
    for path in sorted(directory.glob("*.py")):
        if path.name == ROLE_MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ROLE_WORDS:
                sites.append((path.name, node.lineno, node.value))
    return [f"{f}:{line} {word!r}" for f, line, word in sorted(sites)]


WORKER_MODULES = frozenset({"worker.py", "accounting.py"})
# (file, function) -> why its writes are not another task's. Functions, not lines: a new
# writer in any other function counts.
OUTSIDE_THE_TURN = {
    ("store.py", "load"): "before any worker runs",
    ("daemon.py", "_shutdown"): "after the workers ended",
    ("daemon.py", "_stop_for_shutdown"): "after the workers ended",
    ("passes.py", "run"): "_Adoption, run in the worker's turn (worker.call)",
    ("passes.py", "_apply"): "_Adoption, run in the worker's turn (worker.call)",
    # The update transaction runs in the server worker's turn (worker.call at startup,
    # worker.submit when a drain acts, the worker's own update_hook): supervisor/updates.py.
    ("updates.py", "_mark_stop"): "the update transaction, in the server worker's turn",
    ("updates.py", "settle"): "the update transaction, in the server worker's turn",
    ("updates.py", "__aenter__"): "the update transaction, in the server worker's turn",
    ("updates.py", "__aexit__"): "the update transaction, in the server worker's turn",
}


def service_fields(directory: Path) -> frozenset[str]:
    """The fields of store.Service, read from its class body."""
    tree = ast.parse((directory / "store.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Service":
            return frozenset(
                n.target.id
                for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            )
    return frozenset()


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        found = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        found = [node.target]
    else:
        return []
    flat: list[ast.expr] = []
    while found:
        target = found.pop()
        if isinstance(target, ast.Tuple | ast.List):
            found += target.elts
        else:
            flat.append(target)
    return flat


def record_writers(directory: Path) -> list[str]:
    """file:line function field, for each write of a service's record outside its worker."""
    fields = service_fields(directory)
    sites: dict[tuple[str, int, str], str] = {}  # the innermost function wins (walked last)
    for path in sorted(directory.glob("*.py")):
        if path.name in WORKER_MODULES:
            continue
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                for target in _targets(node):
                    if (
                        isinstance(target, ast.Attribute)
                        and target.attr in fields
                        and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                    ):
                        sites[(path.name, node.lineno, target.attr)] = function.name
    return [f"{f}:{line} {name} .{attr}" for (f, line, attr), name in sorted(sites.items())]


def _writer_key(site: str) -> tuple[str, str]:
    where, function, _ = site.split(" ")
    return where.split(":")[0], function


# Who judges an exit: the judgement (restarts) and the engine's values (dockertypes) may.
# (hyos.explain_exit only reads HyOS's state files: one of the judgement's inputs.)
EXIT_JUDGES = {"classify_exit", "describe_exit", "judge_exit"}
ENGINE_VALUES = {"ContainerInfo", "ContainerState"}


def exit_judgements(directory: Path) -> list[str]:
    """Calls that judge an exit, or build the engine's container values, outside the
    modules that own them (restarts.judge_exit; dockertypes and engine)."""
    sites = []
    for path in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            judging = name in EXIT_JUDGES and path.name != "restarts.py"
            building = name in ENGINE_VALUES and path.name not in ("dockertypes.py", "engine.py")
            if judging or building:
                sites.append(f"{path.name}:{node.lineno} {name}")
    return sites


def grace_period_reads(directory: Path) -> list[str]:
    """Where a grace period is read: a service's `stop_timeout` field (the desired spec's
    copy, made from it, aside), a `stop_timeout` helper, or a literal default for one."""
    sites = []
    for path in sorted(directory.glob("*.py")):
        tree = ast.parse(path.read_text())
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("stop_timeout"):
                sites.append(f"{path.name}:{node.lineno} def {node.name}")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == "stop_timeout"
                and id(node) not in called
                and not (isinstance(node.value, ast.Name) and node.value.id == "spec")
            ):
                sites.append(f"{path.name}:{node.lineno} .stop_timeout")
            elif isinstance(node, ast.Call) and any(
                isinstance(a, ast.Constant) and a.value == "--min-stop-timeout" for a in node.args
            ):
                default = next((k.value for k in node.keywords if k.arg == "default"), None)
                if isinstance(default, ast.Constant):
                    sites.append(f"{path.name}:{node.lineno} --min-stop-timeout={default.value}")
    return sites


def seams(root: Path) -> None:
    """The figures of issue #23."""
    parent = root.parent
    arrows = pure_to_io(root)
    print(f"imports from pure modules into I/O modules: {len(arrows)}")
    for arrow in arrows:
        print(f"  {arrow}")
    private = private_aiodocker(root)
    print(f"private aiodocker calls: {len(private)}")
    for site in private:
        print(f"  {site}")
    writers = record_writers(root)
    explained = [w for w in writers if _writer_key(w) in OUTSIDE_THE_TURN]
    others = [w for w in writers if _writer_key(w) not in OUTSIDE_THE_TURN]
    print(f"writers of a service's record outside worker.py/accounting.py: {len(writers)}")
    for site in explained:
        print(f"  {site}: {OUTSIDE_THE_TURN[_writer_key(site)]}")
    print(f"  from another task (outside the worker's turn): {len(others)}")
    for site in others:
        print(f"    {site}")
    judges = exit_judgements(root)
    print(f"exit judgements or engine values built outside their modules: {len(judges)}")
    for site in judges:
        print(f"  {site}")
    grace = grace_period_reads(root)
    print(f"grace period reads: {len(grace)}")
    for site in grace:
        print(f"  {site}")
    literals = role_literals(root)
    files = sorted({site.split(":")[0] for site in literals})
    print(f"role literals outside {ROLE_MODULE}: {len(literals)} in {len(files)} files")
    for file in files:
        lines = [site.split(":", 1)[1] for site in literals if site.startswith(f"{file}:")]
        print(f"  {file}: {len(lines)} ({', '.join(line.split()[0] for line in lines)})")
    labels = label_copies(root)
    print(f"ownership label references outside dockertypes.py: {len(labels)}")
    for site in labels:
        print(f"  {site}")
    if (parent / "tests").is_dir():
        fakes, ignores, clearing = fake_engines(parent / "tests")
        print(f"fake engines in tests: {len(fakes)} ({', '.join(fakes)})")
        print(f"type: ignore on an engine in tests: {len(ignores)}")
        for site in ignores:
            print(f"  {site}")
        print(f"HYOS_* clearing loops in unit tests outside conftest.py: {len(clearing)}")
    if (parent / "entrypoint").is_dir():
        cycles = _cycles(_graph(parent / "entrypoint"))
        print(f"import cycles in entrypoint: {len(cycles)} {cycles}")
        private_names = private_imports(parent / "entrypoint") + private_imports(root)
        print(f"imports of private names between modules: {len(private_names)}")
        for site in private_names:
            print(f"  {site}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "supervisor"))
    seams(Path(sys.argv[1] if len(sys.argv) > 1 else "supervisor"))
