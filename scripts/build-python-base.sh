#!/usr/bin/env bash
# Build a local Python base image (no registry needed):
# debootstrap --variant=minbase bookworm with python3, trimmed, then `docker import`.
# Idempotent: does nothing when the tag already exists (FORCE=1 rebuilds).
# Needs root and the Debian packages debootstrap and docker.io.
# bash (`sh scripts/build-python-base.sh` runs it with bash too).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/debian-mirror.sh
. "$here/lib/debian-mirror.sh"

IMAGE="${IMAGE:-hyos-python-base:bookworm}"
SUITE="${SUITE:-bookworm}"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-python-base: $IMAGE already exists, skipping"
    exit 0
fi

# The Debian mirror and proxy this machine's apt uses (DEBIAN_MIRROR overrides): a local
# mirror, a caching proxy or an air-gapped copy work as they do for apt itself.
HYOS_STEP="mirror"
debian_mirror "$SUITE"
mirror=$debian_mirror_uri origin=$debian_mirror_origin proxy=$debian_mirror_proxy
if [ -n "$proxy" ]; then
    export http_proxy="$proxy"
fi

rootfs=$(mktemp -d /tmp/hyos-python-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT INT TERM

# Said as used, credentials (user:password@) masked.
mask() { printf '%s' "$1" | sed 's|//[^/@]*@|//***@|'; }
echo "build-python-base: debootstrap $SUITE from $(mask "${mirror:-the default mirror of debootstrap}") (${origin})${proxy:+ through proxy $(mask "$proxy")}"
HYOS_STEP="debootstrap"
# shellcheck disable=SC2086 # $mirror is one word or none (debootstrap's default)
debootstrap --variant=minbase --include=python3 "$SUITE" "$rootfs" $mirror >/dev/null

# Trim what a runtime image never needs; keeps the import small and fast.
HYOS_STEP="trim"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/locale/* "$rootfs"/var/log/* "$rootfs"/tmp/*
# Images conventionally offer `python` as well as `python3`.
[ -e "$rootfs/usr/bin/python" ] || ln -s python3 "$rootfs/usr/bin/python"

HYOS_STEP="docker import"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
echo "build-python-base: built $IMAGE"
