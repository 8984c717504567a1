"""The `file_env` shim: for images that read a secret only from a plain variable.

The supervisor delivers secrets as files (`X_FILE=/data/.hyos/secrets/x`). For an image
that only reads `X`, its container runs this shim first: it exports `X` from `X_FILE` for
each name listed in `HYOS_FILE_ENV`, then execs the image's own entrypoint and command.
The value lives only in the process environment, never in `docker inspect`. The prepare
step installs the shim, read-only and root-owned, in the stack's system volume.
"""

from __future__ import annotations

import os
import stat

from entrypoint.atomicfile import read_regular, replace_atomically
from entrypoint.errors import EXIT_SECRETS, EntrypointError
from entrypoint.safedir import open_parent

__all__ = ["SHIM", "install_shim"]

SHIM = r"""#!/bin/sh
# hyos-supervisor file_env shim: export NAME from NAME_FILE for each NAME in
# HYOS_FILE_ENV, then exec the image's own entrypoint and command.
set -eu
for name in ${HYOS_FILE_ENV:-}; do
    case "$name" in
        ''|[0-9]*|*[!A-Za-z0-9_]*) echo "hyos-file-env: bad name '$name'" >&2; exit 78 ;;
    esac
    eval "path=\${${name}_FILE:-}"
    [ -n "$path" ] || continue
    if [ ! -r "$path" ]; then
        echo "hyos-file-env: cannot read ${name}_FILE=$path" >&2
        exit 78
    fi
    value=$(cat "$path")
    export "$name=$value"
done
unset HYOS_FILE_ENV
exec "$@"
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
