"""Pure: the stack's roles, stated once: which containers the supervisor runs and what
each role means to the rest of the code (start order, what it waits for, which secrets it
reads, how the CLI and Kubernetes name it). Everything else asks a profile instead of
spelling a role out, so a new role is a new profile here (and its settings section).

A role is a *service* (long-running, supervised by a worker, restarted when it fails) or
a *job* (a one-shot helper container that runs to completion and is removed, as the
prepare step and the backup helper are). Job roles never get a worker, a
record in the state file, a CLI verb or a Kubernetes workload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal


class Role(StrEnum):
    """The `io.hyos.role` label's value, the settings' section, the container's suffix."""

    SERVER = "server"
    MANAGER = "manager"
    PREPARE = "prepare"
    BACKUP = "backup"
    LOGS = "logs"


class Kind(StrEnum):
    SERVICE = "service"  # runs until stopped; a worker keeps it running
    JOB = "job"  # runs once to completion; whoever started it removes it


@dataclass(frozen=True, slots=True)
class Profile:
    role: Role
    kind: Kind
    # Services start in ascending order and stop in the reverse (jobs: 0, unused).
    start_order: int = 0
    # Started (by `up` and by a stack pass) only once the server is healthy or held.
    # (Following a server the daemon restarted is the manager's alone: passes.py.)
    waits_for_server: bool = False
    # The secrets (secretspec names) its container reads, as X_FILE.
    secrets: tuple[str, ...] = ()
    # Runs the Hytale game: its exit codes, its login and HyOS's state files mean something.
    game: bool = False
    # HyOS's dashboard: told where the server is, reaches Docker only through the stack's
    # guard (whose stops of the server it asks for are counted as asked).
    dashboard: bool = False
    # Gets the stack's stable machine-id (Hytale keys its auth persistence on it).
    stable_machine_id: bool = False
    # What `render kubernetes` makes of it; None: nothing (a Docker-only helper: the
    # prepare step's work is the manifests' own there). A job role rendered for Kubernetes
    # adds "Job" here and its builder in kubernetes.py.
    kubernetes_kind: Literal["StatefulSet", "Deployment"] | None = None


_PROFILES = (
    Profile(
        Role.SERVER,
        Kind.SERVICE,
        start_order=0,
        secrets=(
            "api_client_id",
            "api_client_secret",
            "hytale_session_token",
            "hytale_identity_token",
            "server_password",
        ),
        game=True,
        stable_machine_id=True,
        kubernetes_kind="StatefulSet",
    ),
    Profile(
        Role.MANAGER,
        Kind.SERVICE,
        start_order=1,
        waits_for_server=True,
        secrets=("api_client_id", "api_client_secret", "session_secret"),
        dashboard=True,
        kubernetes_kind="Deployment",
    ),
    # The one-shot helper that owns /data's modes, the machine-id and the secret files.
    Profile(Role.PREPARE, Kind.JOB),
    # The one-shot restic helper (issue 25): backs up, checks, lists, restores.
    Profile(Role.BACKUP, Kind.JOB),
    # The one-shot game-log helper (issue 27): tails for crash reports, compresses, prunes.
    Profile(Role.LOGS, Kind.JOB),
)
PROFILES: Mapping[Role, Profile] = MappingProxyType({p.role: p for p in _PROFILES})
# The supervised services, in start order: the settings' sections, the workers, the CLI's
# service names (`restart`, `exec`, `logs`).
SERVICES: tuple[Role, ...] = tuple(
    p.role for p in sorted(_PROFILES, key=lambda p: p.start_order) if p.kind is Kind.SERVICE
)

# The same as plain strings: argparse's choices, the settings' section names.
NAMES: tuple[str, ...] = tuple(role.value for role in SERVICES)


def profile(role: str) -> Profile | None:
    """The profile of a role by its name (a label's value may name none)."""
    try:
        return PROFILES[Role(role)]
    except ValueError:
        return None


def waits_for_server(role: str) -> bool:
    found = profile(role)
    return found is not None and found.waits_for_server


def is_game(role: str) -> bool:
    found = profile(role)
    return found is not None and found.game


def spoken(names: tuple[str, ...] = NAMES) -> str:
    """`server or manager`: the services as the operator's messages list them."""
    return " or ".join(names)
