"""Exit codes of ``python -m entrypoint`` and the error type that carries them.

=====  ==========================  ==================================================
code   name                        meaning
=====  ==========================  ==================================================
0      EXIT_OK                     prepared (and the command, if any, exited 0)
64     EXIT_USAGE                  bad command line
65     EXIT_UNKNOWN_USER           ``--user`` names no user in /etc/passwd
66     EXIT_ROOT_REFUSED           the command would run as root without --allow-root
67     EXIT_PREPARE_FAILED         a ``--prepare`` path could not be fixed
68     EXIT_NOT_WRITABLE           started non-root and a ``--prepare`` path is not
                                   writable
69     EXIT_GROUP_OF               the ``--group-of`` path cannot be stat'ed
70     EXIT_DROP_FAILED            setgroups/setgid/setuid/no_new_privs failed, or
                                   ``setuid(0)`` still worked afterwards
71     EXIT_MACHINE_ID             the machine-id file could not be written
72     EXIT_INIT_FAILED            PID 1 could not spawn or wait for the command
73     EXIT_SECRETS                a secret file could not be written, or the
                                   supplied secrets on stdin are not a JSON object
126    EXIT_CANNOT_EXEC            the command exists but cannot be executed
127    EXIT_NOT_FOUND              the command was not found
=====  ==========================  ==================================================

Otherwise the exit code is the command's own, or 128+N when it died of signal N.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 64
EXIT_UNKNOWN_USER = 65
EXIT_ROOT_REFUSED = 66
EXIT_PREPARE_FAILED = 67
EXIT_NOT_WRITABLE = 68
EXIT_GROUP_OF = 69
EXIT_DROP_FAILED = 70
EXIT_MACHINE_ID = 71
EXIT_INIT_FAILED = 72
EXIT_SECRETS = 73
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127


class EntrypointError(Exception):
    """A failure reported as one stderr line and a distinct exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
