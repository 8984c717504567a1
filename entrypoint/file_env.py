"""The launcher shim every workload starts through (a read-only shell script).

Secrets: the supervisor delivers secrets as files (`X_FILE=/data/.hyos/secrets/x`). For an
image that only reads `X`, the shim exports `X` from `X_FILE` for each name listed in
`HYOS_FILE_ENV` (the `file_env` pattern of the official database images). The value lives
only in the process environment, never in `docker inspect`.

Graceful stop: it runs the image's entrypoint and command as its child and forwards stop
signals to it. HyOS's server entrypoint exits as soon as it has forwarded SIGTERM to Java,
which would end the container (and kill Java) in the middle of the world save; with
`HYOS_STOP_WAIT` the launcher outlives the matching processes (Java) after a stop signal.
Only the main program is waited for: a log pipe or a sleeping loop must not hold a stop
for the whole grace period, and signalling them could break Java's output mid-save.

The prepare step installs the shim, read-only and root-owned, in the stack's system volume.
"""

from __future__ import annotations

import os
import stat

from entrypoint.atomicfile import read_regular, replace_atomically
from entrypoint.errors import EXIT_SECRETS, EntrypointError
from entrypoint.safedir import open_parent

__all__ = ["SHIM", "install_shim"]

SHIM = r"""#!/bin/sh
# hyos-supervisor launcher.
# 1. Exports NAME from NAME_FILE for each NAME in HYOS_FILE_ENV (secrets as files).
# 2. Runs the image's own entrypoint and command as its child and forwards SIGTERM and
#    SIGINT to it, as an init does. If a stop signal came and HYOS_STOP_WAIT is set (a
#    basic regular expression that must not match itself, e.g. [H]ytaleServer\.jar),
#    it returns only once no process whose command line matches is left: HyOS's entrypoint
#    exits as soon as it has passed SIGTERM to Java, while Java still saves the world.
set -eu
for name in ${HYOS_FILE_ENV:-}; do
    case "$name" in
        ''|[0-9]*|*[!A-Za-z0-9_]*) echo "hyos-launcher: bad name '$name'" >&2; exit 78 ;;
    esac
    eval "path=\${${name}_FILE:-}"
    [ -n "$path" ] || continue
    if [ ! -r "$path" ]; then
        echo "hyos-launcher: cannot read ${name}_FILE=$path" >&2
        exit 78
    fi
    value=$(cat "$path")
    export "$name=$value"
done
unset HYOS_FILE_ENV
stop_wait=${HYOS_STOP_WAIT:-}
unset HYOS_STOP_WAIT
stopping=
child=
# A signal before `child` is set (a stop right at the start) is passed on just after.
trap 'stopping=TERM; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null || :' TERM
trap 'stopping=INT; [ -z "$child" ] || kill -INT "$child" 2>/dev/null || :' INT
"$@" &
child=$!
[ -z "$stopping" ] || kill -"$stopping" "$child" 2>/dev/null || :
while :; do
    status=0
    wait "$child" || status=$?
    kill -0 "$child" 2>/dev/null || break  # wait returns early when a trap runs
done
if [ -n "$stopping" ] && [ -n "$stop_wait" ]; then
    # The engine's stop timeout bounds this wait: it kills the container at the deadline.
    # Another process (not this shell, whose arguments may name the program) still runs.
    others() {
        grep -ls -e "$stop_wait" /proc/[0-9]*/cmdline | grep -qv "^/proc/$$/cmdline\$"
    }
    while others; do sleep 0.1; done
fi
exit "$status"
"""

_MODE = 0o555


def install_shim(path: str) -> bool:
    """Write the shim atomically unless `path` already holds it; True when written."""
    data = SHIM.encode()
    try:
        dfd, name = open_parent(path)
        try:
            if read_regular(dfd, name, len(data) + 1) == data:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if stat.S_IMODE(st.st_mode) == _MODE and st.st_uid == os.geteuid():
                    return False
            replace_atomically(dfd, name, data, _MODE)
            return True
        finally:
            os.close(dfd)
    except OSError as err:
        raise EntrypointError(EXIT_SECRETS, f"file_env shim {path}: {err}") from None
