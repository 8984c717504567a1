#!/usr/bin/env bash
# Builds the stand-in workload images from Debian's busybox-static (no registry needed).
#   hyos-test/server:1 and :2   (same image, two tags: changing the tag is drift)
#   hyos-test/server-rootdata:1 (its /data is root-owned: the prepare step must fix it)
#   hyos-test/manager:1
#   hyos-test/server:var-run-{link,dir,none}, hyos-test/manager:var-run-{link,dir,none}
#   (/var/run a link to /run, a directory, absent; the default tags link it like Alpine)
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/errors.sh"
here=$(cd "$(dirname "$0")" && pwd)
busybox=${BUSYBOX:-/bin/busybox}
if ! "$busybox" --help >/dev/null 2>&1 || ldd "$busybox" >/dev/null 2>&1; then
    echo "build.sh: $busybox is not a static busybox; apt-get install busybox-static" >&2
    exit 1
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$busybox" "$context/busybox"
cp "$here"/*.sh "$here"/*.Dockerfile "$context/"
export DOCKER_BUILDKIT=0
build() {
    local out
    out=$(docker build -q "$@" "$context" 2>&1) || {
        local status=$?
        echo "$out" >&2
        echo "build.sh: step \"$HYOS_STEP\" failed: docker build $* exited with status $status (its output above)" >&2
        exit 1
    }
}
# :1 has /var/run -> /run as HyOS's Alpine images do; :var-run-<layout> names each layout
# an image can have, for the tests of the supervisor's mounts.
HYOS_STEP="hyos-test/server"
build -f "$context/server.Dockerfile" -t hyos-test/server:1
docker tag hyos-test/server:1 hyos-test/server:2
HYOS_STEP="hyos-test/server-rootdata"
build -f "$context/server.Dockerfile" --build-arg DATA_OWNER=0:0 -t hyos-test/server-rootdata:1
HYOS_STEP="hyos-test/manager"
build -f "$context/manager.Dockerfile" -t hyos-test/manager:1
HYOS_STEP="the /var/run layouts"
for layout in link dir none; do
    build -f "$context/server.Dockerfile" --build-arg VAR_RUN=$layout -t hyos-test/server:var-run-$layout
    build -f "$context/manager.Dockerfile" --build-arg VAR_RUN=$layout -t hyos-test/manager:var-run-$layout
done
echo "built hyos-test/server:1 hyos-test/server:2 hyos-test/server-rootdata:1 hyos-test/manager:1" \
    "and :var-run-link, :var-run-dir, :var-run-none of both"
