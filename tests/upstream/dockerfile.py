"""What HyOS's own Dockerfiles say about their images, read from the upstream source, so the
replicas are checked against upstream rather than against a copy of it that can go stale.

Only the final stage counts (a multi-stage build ships its last FROM). Users and groups are
derived the way busybox's `addgroup` and `adduser` make them on Alpine, which is the base of
both of HyOS's images.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# busybox adduser: a --system user without --ingroup goes to this group, shell /bin/false.
ALPINE_NOGROUP = 65533
# Alpine's root shell, which busybox adduser gives a non-system user without --shell.
ALPINE_ROOT_SHELL = "/bin/sh"


def upstream_dir() -> Path:
    """HyOS's source beside the checkout (../shared/upstream/hyos), also from a worktree;
    HYOS_UPSTREAM overrides."""
    if os.environ.get("HYOS_UPSTREAM"):
        return Path(os.environ["HYOS_UPSTREAM"])
    candidates = [REPO.parent / "shared/upstream/hyos"]
    common = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if common:
        candidates.append(Path(common).parent.parent / "shared/upstream/hyos")
    for candidate in candidates:
        if (candidate / "manager/Dockerfile").is_file():
            return candidate
    raise FileNotFoundError("HyOS's source not found beside the checkout; set HYOS_UPSTREAM")


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]
    interval_s: float
    timeout_s: float
    start_period_s: float
    retries: int


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass
class ImageFacts:
    base: str = ""
    user: str = ""  # "" = root, as Docker reports no USER
    workdir: str = ""
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    healthcheck: Healthcheck | None = None
    exposed: set[str] = field(default_factory=set)
    env: dict[str, str] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)  # name -> gid
    accounts: dict[str, Account] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)  # group -> user names

    @property
    def base_family(self) -> str:
        return "alpine" if "alpine" in self.base.split(":")[-1] else self.base


def _logical_lines(text: str) -> list[str]:
    """Instructions with their continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), ""), value
    )


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = re.fullmatch(r"([\d.]+)(ms|s|m|h)", value).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


def _exec_form(value: str) -> tuple[str, ...]:
    parsed = json.loads(value)
    assert isinstance(parsed, list), value
    return tuple(str(part) for part in parsed)


def _healthcheck(args: str) -> Healthcheck:
    words = shlex.split(args, posix=False)
    options = {"interval": "30s", "timeout": "30s", "start-period": "0s", "retries": "3"}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        options[key] = value
    assert words and words[0] == "CMD", args
    rest = args[args.index("CMD") + 3 :].strip()
    test = ("CMD", *_exec_form(rest)) if rest.startswith("[") else ("CMD-SHELL", rest)
    return Healthcheck(
        test,
        _seconds(options["interval"]),
        _seconds(options["timeout"]),
        _seconds(options["start-period"]),
        int(options["retries"]),
    )


def _run(command: str, facts: ImageFacts, variables: dict[str, str]) -> None:
    """The addgroup/adduser calls of a RUN, as busybox carries them out."""
    for part in re.split(r"&&|;", _expand(command, variables)):
        if not part.strip().startswith(("addgroup ", "adduser ")):
            continue  # other commands need not even parse as words (`-exec ... \;`)
        words = shlex.split(part)
        if words[0] == "addgroup" and len(words) > 1:
            _addgroup(words[1:], facts)
        elif words[0] == "adduser" and len(words) > 1:
            _adduser(words[1:], facts)


def _options(words: list[str], takes_value: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """busybox's getopt with long names mapped to short ones (takes_value: long -> short)."""
    flags: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            name = word[2:]
            short = takes_value.get(name, name)
            if name in takes_value:
                i += 1
                flags[short] = words[i]
            else:
                flags[short] = ""
        elif word.startswith("-") and len(word) > 1:
            short = word[1]
            if short in takes_value.values():
                value = word[2:] or words[i + 1]
                i += 0 if word[2:] else 1
                flags[short] = value
            else:
                for letter in word[1:]:
                    flags[letter] = ""
        else:
            rest.append(word)
        i += 1
    return flags, rest


def _addgroup(words: list[str], facts: ImageFacts) -> None:
    flags, rest = _options(words, {"gid": "g"})
    facts.groups[rest[0]] = int(flags["g"])
    facts.members.setdefault(rest[0], set())


def _adduser(words: list[str], facts: ImageFacts) -> None:
    flags, rest = _options(
        words, {"home": "h", "gecos": "g", "shell": "s", "ingroup": "G", "uid": "u"}
    )
    name = rest[0]
    system = "S" in flags or "system" in flags
    group = flags.get("G") or ("nogroup" if system else None)
    gid = (
        ALPINE_NOGROUP if group == "nogroup" else facts.groups[group] if group else int(flags["u"])
    )
    shell = flags.get("s") or ("/bin/false" if system else ALPINE_ROOT_SHELL)
    facts.accounts[name] = Account(
        name, int(flags["u"]), gid, flags.get("h", f"/home/{name}"), shell
    )
    facts.members.setdefault(group or name, set()).add(name)


def image_facts(dockerfile: Path) -> ImageFacts:
    facts = ImageFacts()
    variables: dict[str, str] = {}
    for line in _logical_lines(dockerfile.read_text()):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            facts = ImageFacts(base=args.split()[0])  # only the last stage ships
            variables = {}
        elif keyword == "ARG":
            name, _, default = args.partition("=")
            variables.setdefault(name, default)
        elif keyword == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                value = _expand(value, variables)
                variables[key] = facts.env[key] = value
        elif keyword == "USER":
            facts.user = _expand(args, variables)
        elif keyword == "WORKDIR":
            facts.workdir = _expand(args, variables)
        elif keyword == "EXPOSE":
            for port in _expand(args, variables).split():
                facts.exposed.add(port if "/" in port else f"{port}/tcp")
        elif keyword == "HEALTHCHECK":
            facts.healthcheck = _healthcheck(args)
        elif keyword == "ENTRYPOINT":
            facts.entrypoint = _exec_form(args)
        elif keyword == "CMD":
            facts.cmd = _exec_form(args)
        elif keyword == "RUN":
            _run(args, facts, variables)
    return facts
