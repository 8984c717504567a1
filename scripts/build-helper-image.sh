#!/bin/sh
# Build the supervisor/helper image as hyos-supervisor:dev on the local Python base
# (no registry needed). Builds the base first when it is missing.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
BASE_IMAGE="${BASE_IMAGE:-hyos-python-base:bookworm}"
IMAGE="${IMAGE:-hyos-supervisor:dev}"

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    IMAGE="$BASE_IMAGE" "$here/build-python-base.sh"
fi
# Classic builder: works on docker.io 20.10 without buildx or a frontend image to pull.
DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" "$repo" >/dev/null
echo "build-helper-image: built $IMAGE (base $BASE_IMAGE)"
