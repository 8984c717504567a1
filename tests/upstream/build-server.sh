#!/usr/bin/env bash
# Builds hyos-upstream/server:local, a replica of HyOS's server image that runs HyOS's own
# scripts unmodified, with the parts of Hytale that cannot be had here (the JVM, the
# hytale-downloader, Hytale's OAuth and session servers) replaced at the process boundary
# by the small programs in server-fakes/ (tests/upstream/README.md says how and why).
#   1. base  hyos-upstream/server-base:bookworm: debootstrap --variant=minbase with exactly
#            the tools HyOS's scripts and the fakes use, then `docker import`. Rebuilt only
#            when its package list changes (label io.hyos.replica.base) or FORCE_BASE=1.
#   2. image server.Dockerfile on that base with the classic builder. Skipped when the
#            image's label io.hyos.replica.hash equals the sha256 over HyOS's scripts, the
#            fakes, the Dockerfile, this script and the base image id (FORCE=1 rebuilds).
# Runs as root on Debian with debootstrap and docker; compiles one tiny shared object with
# cc (gcc is installed from Debian when there is no cc). No registry is needed.
# Env: HYOS_UPSTREAM (HyOS sources; default ../shared/upstream/hyos next to the checkout),
#      IMAGE, BASE_IMAGE, DEBIAN_MIRROR or MIRROR (Debian mirror; default: the host's apt
#      sources, through apt's proxy: scripts/lib/debian-mirror.sh), FORCE, FORCE_BASE.
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/errors.sh"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/lib/debian-mirror.sh
. "$repo/scripts/lib/debian-mirror.sh"
IMAGE="${IMAGE:-hyos-upstream/server:local}"
BASE_IMAGE="${BASE_IMAGE:-hyos-upstream/server-base:bookworm}"
SUITE=bookworm
PACKAGES="bash coreutils findutils passwd procps curl ca-certificates jq zip unzip iproute2"
PACKAGES+=" apache2-utils tini gosu python3 openssl"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
if ! "$BUSYBOX" --help >/dev/null 2>&1 || ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "build-server: $BUSYBOX is not a static busybox; apt-get install busybox-static" >&2
    exit 1
fi
started=$(date +%s%N)
say() {
    local ms=$((($(date +%s%N) - started) / 1000000))
    printf 'build-server: %s (%d.%d s)\n' "$*" $((ms / 1000)) $((ms % 1000 / 100))
}
rootfs="" context=""
trap 'rm -rf "$rootfs" "$context"' EXIT

upstream="${HYOS_UPSTREAM:-}"
if [[ -z "$upstream" ]]; then
    for candidate in "$repo/../shared/upstream/hyos" "$repo/../../shared/upstream/hyos"; do
        [[ -d "$candidate/server/scripts" ]] && upstream=$(cd "$candidate" && pwd) && break
    done
fi
if [[ ! -f "${upstream:-/nonexistent}/server/scripts/entrypoint.sh" ]]; then
    echo "build-server: HyOS's server sources not found; set HYOS_UPSTREAM" >&2
    exit 1
fi

label() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
# The image a rebuild replaced, unless it still has a tag or a container uses it.
drop_replaced() {
    [[ -n "$1" && "$1" != "$(image_id "$2")" ]] || return 0
    [[ "$(docker image inspect -f '{{len .RepoTags}}' "$1" 2>/dev/null)" == 0 ]] || return 0
    docker image rm "$1" >/dev/null 2>&1 || true
}

build_base() {
    local mirror origin proxy
    HYOS_STEP="mirror"
    debian_mirror "$SUITE"
    mirror=$debian_mirror_uri origin=$debian_mirror_origin proxy=$debian_mirror_proxy
    [[ -z "$proxy" ]] || export http_proxy="$proxy"
    rootfs=$(mktemp -d /tmp/hyos-upstream-base.XXXXXX)
    say "debootstrap $SUITE from ${mirror:-the default mirror of debootstrap} ($origin)${proxy:+ through proxy $proxy}: ${PACKAGES// /,}"
    HYOS_STEP="debootstrap"
    # shellcheck disable=SC2086 # $mirror is one word or none (debootstrap's default)
    debootstrap --variant=minbase --include="${PACKAGES// /,}" "$SUITE" "$rootfs" $mirror >/dev/null
    HYOS_STEP="base import"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
           "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
           "$rootfs"/usr/share/locale/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL io.hyos.replica.base=\"$SUITE $PACKAGES\"" \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    say "built $BASE_IMAGE"
}

if [[ "${FORCE_BASE:-0}" == 1 || "$(label "$BASE_IMAGE" io.hyos.replica.base)" != "$SUITE $PACKAGES" ]]; then
    old_base=$(image_id "$BASE_IMAGE")
    build_base
else
    old_base=""
fi

HYOS_STEP="image"
# What the image is made of, hashed: a change to any of it rebuilds; nothing else does.
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
hash=$( {
    (cd "$upstream/server" && find scripts -type f -print0 | sort -z | xargs -0 sha256sum)
    (cd "$here" && find server-fakes server.Dockerfile build-server.sh -type f -print0 \
        | sort -z | xargs -0 sha256sum)
    sha256sum <"$BUSYBOX"
    echo "$base_id"
} | sha256sum | cut -d' ' -f1)
if [[ "${FORCE:-0}" != 1 && "$(label "$IMAGE" io.hyos.replica.hash)" == "$hash" ]]; then
    say "$IMAGE is up to date (${hash:0:12})"
    exit 0
fi

context=$(mktemp -d /tmp/hyos-upstream-context.XXXXXX)
cp -R "$upstream/server/scripts" "$context/scripts"
# Alpine's /bin/sh (busybox ash), from Debian's busybox-static.
cp "$BUSYBOX" "$context/busybox"
cp -R "$here/server-fakes" "$context/fakes"
mkdir -p "$context/stub" "$context/fakes/native"
if ! command -v cc >/dev/null; then
    say "no C compiler: installing gcc from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends gcc >/dev/null
fi
# No libc needed: the object loads on the base's glibc whatever the host's is.
cc -shared -fPIC -nostdlib -O2 -s -o "$context/fakes/native/libnetty_quiche_linux_x86_64.so" \
    "$here/server-fakes/native/quiche.c"
rm "$context/fakes/native/quiche.c"
say "building $IMAGE on $BASE_IMAGE"
old_image=$(image_id "$IMAGE")
if ! out=$(DOCKER_BUILDKIT=0 docker build -q -f "$here/server.Dockerfile" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --label "io.hyos.replica.hash=$hash" \
        -t "$IMAGE" "$context" 2>&1); then
    echo "$out" >&2
    exit 1
fi
drop_replaced "$old_image" "$IMAGE"
drop_replaced "$old_base" "$BASE_IMAGE"
say "built $IMAGE (${hash:0:12})"
