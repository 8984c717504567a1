"""Pure: the stack's secrets, stated once: how each is named, whether the supervisor
generates it, and what a value supplied by an operator must meet. Which workload reads
which is its role's profile (`roles.Profile.secrets`)."""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.roles import profile

SECRETS_DIR = "/data/.hyos/secrets"
# Defaults that ship in examples and tutorials: as good as no secret at all.
KNOWN_WEAK = frozenset(
    {"changeme", "changeme123", "changeit", "password", "password123", "secret", "admin",
     "hytale", "hyos", "default", "letmein", "0123456789abcdef"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SecretSpec:
    name: str  # the setting, the file in SECRETS_DIR, the prepare step's name
    env: str  # the plain variable HyOS's images read (the launcher exports it)
    generated: bool  # made by the supervisor when missing; else only an operator supplies it
    min_length: int  # of a supplied value
    guessable: bool  # a supplied value must not be a known default

    @property
    def path(self) -> str:
        return f"{SECRETS_DIR}/{self.name}"

    def problem(self, value: str) -> str | None:
        """What is wrong with a supplied value, or None."""
        text = value.strip()
        if not text:
            return "the value is empty; leave the setting unset instead"
        if self.guessable:
            lowered = text.lower()
            if lowered in KNOWN_WEAK or lowered.startswith("changeme"):
                return (
                    "the value is a known default; leave it unset so the supervisor generates "
                    "one, or use e.g. `openssl rand -base64 32`"
                )
        if len(text) < self.min_length:
            fix = (
                "leave it unset so the supervisor generates one, or use e.g. "
                "`openssl rand -base64 32`"
                if self.generated
                else "use the whole value"
            )
            return f"the value is shorter than {self.min_length} characters; {fix}"
        return None


SECRETS: tuple[SecretSpec, ...] = (
    # An identifier, not a secret: HyOS's own default `hyos-manager` is fine.
    SecretSpec("api_client_id", "API_CLIENT_ID", True, 1, False),
    SecretSpec("api_client_secret", "API_CLIENT_SECRET", True, 16, True),
    # iron-session refuses a password shorter than 32 characters.
    SecretSpec("session_secret", "SESSION_SECRET", True, 32, True),
    # Hytale's game-session tokens (HyOS's lib/auth.sh skips the login when both are set).
    SecretSpec("hytale_session_token", "HYTALE_SERVER_SESSION_TOKEN", False, 16, False),
    SecretSpec("hytale_identity_token", "HYTALE_SERVER_IDENTITY_TOKEN", False, 16, False),
    # The join password players type: a person's choice, any length.
    SecretSpec("server_password", "SERVER_PASSWORD", False, 1, False),
)
BY_NAME = {spec.name: spec for spec in SECRETS}
GENERATED = tuple(spec.name for spec in SECRETS if spec.generated)
OPTIONAL = tuple(spec.name for spec in SECRETS if not spec.generated)


def for_role(role: str, supplied: frozenset[str] | set[str]) -> tuple[SecretSpec, ...]:
    """The secrets a workload gets: every generated one of its role, and the optional
    ones an operator supplied."""
    found = profile(role)
    reads = found.secrets if found is not None else ()
    return tuple(
        spec for spec in SECRETS if spec.name in reads and (spec.generated or spec.name in supplied)
    )


# The backup repository's password (`[backup] password`, HYOS_BACKUP__PASSWORD[_FILE]): not
# a workload's secret (no container but the backup helper reads it, on stdin), so not in
# SECRETS; generated when unset and kept in the supervisor's state dir, which
# `down --volumes` does not reach (supervisor/backupkey.py).
BACKUP_PASSWORD = SecretSpec("backup_password", "RESTIC_PASSWORD", True, 16, True)
