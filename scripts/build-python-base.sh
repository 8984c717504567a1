#!/bin/sh
# Build a local Python base image (no registry needed):
# debootstrap --variant=minbase bookworm with python3, trimmed, then `docker import`.
# Idempotent: does nothing when the tag already exists (FORCE=1 rebuilds).
# Needs root and the Debian packages debootstrap and docker.io.
set -eu

IMAGE="${IMAGE:-hyos-python-base:bookworm}"
SUITE="${SUITE:-bookworm}"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-python-base: $IMAGE already exists, skipping"
    exit 0
fi

# Use the host's configured Debian mirror (deb822 or one-line format), else the default.
mirror="${MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources \
                 /etc/apt/sources.list.d/*.list /etc/apt/sources.list 2>/dev/null \
             | grep -E '/debian/?( |$)' | grep -v security \
             | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' \
             | awk '{print $1; exit}')
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs=$(mktemp -d /tmp/hyos-python-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT INT TERM

echo "build-python-base: debootstrap $SUITE from $mirror"
debootstrap --variant=minbase --include=python3 "$SUITE" "$rootfs" "$mirror" >/dev/null

# Trim what a runtime image never needs; keeps the import small and fast.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/locale/* "$rootfs"/var/log/* "$rootfs"/tmp/*
# Images conventionally offer `python` as well as `python3`.
[ -e "$rootfs/usr/bin/python" ] || ln -s python3 "$rootfs/usr/bin/python"

tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
echo "build-python-base: built $IMAGE"
