"""Pure: Linux capabilities, and which of them amount to root.

Names are without the ``CAP_`` prefix, as Docker and Kubernetes take them.
"""

from __future__ import annotations

# capabilities(7), Linux 6.x.
LINUX = frozenset(
    """AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN
    DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE
    LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST
    NET_RAW PERFMON SETFCAP SETGID SETPCAP SETUID SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT
    SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO SYS_RESOURCE SYS_TIME
    SYS_TTY_CONFIG WAKE_ALARM""".split()
)
# Each undoes the hardening on its own: mounts and namespaces (SYS_ADMIN), kernel code
# (SYS_MODULE, BPF), other processes' memory (SYS_PTRACE, PERFMON), raw devices (SYS_RAWIO,
# MKNOD), any file (DAC_*), any identity (SETUID, SETGID, SETPCAP, SETFCAP), the host's
# clock and power, the network stack, and the security modules. ALL is every one of them.
ROOT_EQUIVALENT = frozenset(
    """SYS_ADMIN SYS_MODULE SYS_PTRACE SYS_RAWIO SYS_BOOT SYS_TIME NET_ADMIN DAC_READ_SEARCH
    DAC_OVERRIDE SETUID SETGID SETPCAP SETFCAP MKNOD BPF PERFMON LINUX_IMMUTABLE MAC_ADMIN
    MAC_OVERRIDE ALL""".split()
)
# Kubernetes' Pod Security "restricted" profile allows adding back this one only.
PSS_ALLOWED = frozenset({"NET_BIND_SERVICE"})


def normalize(name: str) -> str:
    """`cap_net_bind_service` -> `NET_BIND_SERVICE`."""
    return name.strip().upper().removeprefix("CAP_")


def unknown(names: frozenset[str] | set[str]) -> list[str]:
    return sorted(set(names) - LINUX - {"ALL"})


def root_equivalent(names: frozenset[str] | set[str]) -> list[str]:
    return sorted(set(names) & ROOT_EQUIVALENT)
