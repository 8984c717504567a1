#!/usr/bin/env bash
# Build the supervisor image offline on the local Python base (no registry, no network
# inside containers): the base (debootstrap + docker import) and the wheelhouse (host pip)
# are made first when missing or stale, then the Dockerfile with the classic builder.
# Tags IMAGE (default hyos-supervisor:dev) and, when IMAGE is the default,
# hyos-supervisor:<package version>, the default `helper_image` of the prepare step (an
# IMAGE of your own leaves the version tag alone: VERSION_TAG=1 adds it anyway).
# restic (the backup helper's engine) is the host's Debian package, copied into build/restic/
# like the wheelhouse; without it the Dockerfile installs Debian's. Cached: a no-change run
# takes ~1 s.
# bash (`sh scripts/build-image.sh` runs it with bash too).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
BASE_IMAGE="${BASE_IMAGE:-hyos-python-base:bookworm}"
tags=(-t "${IMAGE:-hyos-supervisor:dev}")
if [ -z "${IMAGE:-}" ] || [ "${VERSION_TAG:-0}" = 1 ]; then
    version_tag=yes
else
    version_tag=
fi
IMAGE="${IMAGE:-hyos-supervisor:dev}"
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/supervisor/__init__.py")
if [ -z "$version" ]; then
    echo "build-image: no __version__ in supervisor/__init__.py" >&2
    exit 1
fi

HYOS_STEP="base image"
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    IMAGE="$BASE_IMAGE" bash "$here/build-python-base.sh"
fi
HYOS_STEP="wheelhouse"
BASE_IMAGE="$BASE_IMAGE" bash "$here/build-wheelhouse.sh"
HYOS_STEP="restic"
mkdir -p "$repo/build/restic"
if command -v restic >/dev/null; then
    cmp -s "$(command -v restic)" "$repo/build/restic/restic" \
        || install -m 0755 "$(command -v restic)" "$repo/build/restic/restic"
else
    rm -f "$repo/build/restic/restic"
fi
HYOS_STEP="docker build"
[ -z "$version_tag" ] || tags+=(-t "hyos-supervisor:$version")
previous=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
# Classic builder: works on docker.io 20.10 without buildx or a frontend image to pull.
out=$(DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "VERSION=$version" "${tags[@]}" "$repo" 2>&1) || {
    status=$?
    echo "$out" >&2
    echo "build-image.sh: step \"docker build\" failed: docker build -t $IMAGE $repo exited with status $status (its output above)" >&2
    exit 1
}
# The image this build replaced, once untagged and unused, is only disk: remove it.
current=$(docker image inspect -f '{{.Id}}' "$IMAGE")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
echo "build-image: built $IMAGE${version_tag:+ and hyos-supervisor:$version} (base $BASE_IMAGE)"
