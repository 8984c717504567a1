#!/usr/bin/env bash
# A Debian image with systemd as PID 1 for testing deploy/systemd/hyos-supervisor.service
# under a real systemd (tests/integration/test_systemd.py). No registry: debootstrap
# --variant=minbase bookworm with systemd, systemd-sysv, dbus and python3 from the
# machine's own Debian mirror (scripts/lib/debian-mirror.sh), the supervisor's dependencies
# from the offline wheelhouse (scripts/build-wheelhouse.sh) in /opt/hyos-supervisor, then
# `docker import`.
#
# The supervisor's own code is NOT in the image: /opt/hyos-src is put on the venv's path,
# and the test bind-mounts the checkout there, so a code change needs no rebuild.
# /usr/local/bin/hyos-supervisor is the entry point the shipped unit's ExecStart names;
# the user hyos (568) is the unit's User=. The docker group is the test's to add (its gid
# is the host socket's).
#
# Cached: the tag is hyos-test/systemd:<hash of this script, the package list and the
# wheelhouse's wheels>; an existing tag is reused, older tags are removed when a new one
# is built. Prints the tag on its last line. Needs root, debootstrap, chroot and docker.
# Env: BASE_IMAGE, WHEELHOUSE (default build/wheels), DEBIAN_MIRROR (scripts/lib/debian-mirror.sh).
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/errors.sh"

repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/lib/debian-mirror.sh
. "$repo/scripts/lib/debian-mirror.sh"
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,python3
BASE_IMAGE="${BASE_IMAGE:-hyos-python-base:bookworm}"
WHEELHOUSE="${WHEELHOUSE:-$repo/build/wheels}"

say() { echo "build-systemd: $*" >&2; }

# The wheelhouse is for the Python of $BASE_IMAGE, Debian bookworm's like the one here.
HYOS_STEP="base image"
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    IMAGE="$BASE_IMAGE" bash "$repo/scripts/build-python-base.sh" >&2
fi
HYOS_STEP="wheelhouse"
BASE_IMAGE="$BASE_IMAGE" WHEELHOUSE="$WHEELHOUSE" bash "$repo/scripts/build-wheelhouse.sh" >&2

hash=$( { cat "$0"; echo "$SUITE $PACKAGES"; cat "$WHEELHOUSE/requirements.txt"
          (cd "$WHEELHOUSE" && ls -1 ./*.whl); } | sha256sum | cut -c1-12)
tag="hyos-test/systemd:$hash"
if docker image inspect "$tag" >/dev/null 2>&1; then
    say "$tag is current"
    echo "$tag"
    exit 0
fi

HYOS_STEP="mirror"
debian_mirror "$SUITE"
mirror=$debian_mirror_uri origin=$debian_mirror_origin proxy=$debian_mirror_proxy
[[ -z "$proxy" ]] || export http_proxy="$proxy"
rootfs=$(mktemp -d /tmp/hyos-systemd.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT INT TERM
say "debootstrap $SUITE (+$PACKAGES) from ${mirror:-the default mirror of debootstrap} ($origin)${proxy:+ through proxy $proxy}"
HYOS_STEP="debootstrap"
# shellcheck disable=SC2086 # $mirror is one word or none
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" $mirror >/dev/null

HYOS_STEP="venv in the chroot"
mkdir -p "$rootfs/tmp/wheels"
cp "$WHEELHOUSE"/*.whl "$WHEELHOUSE/requirements.txt" "$rootfs/tmp/wheels/"
# A clean environment: the host's PIP_* settings must not reach the chroot's pip.
# shellcheck disable=SC2016 # the script is the chroot's: it expands there
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    chroot "$rootfs" /bin/sh -eu -c '
    python3 -m venv --without-pip /opt/hyos-supervisor
    set -- /tmp/wheels/pip-*.whl
    /opt/hyos-supervisor/bin/python "$1/pip" install --quiet --no-index \
        --find-links /tmp/wheels --requirement /tmp/wheels/requirements.txt
    site=$(/opt/hyos-supervisor/bin/python -c "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])")
    echo /opt/hyos-src > "$site/hyos-src.pth"
    mkdir -p /opt/hyos-src
    printf "%s\n" "#!/opt/hyos-supervisor/bin/python" "import sys" \
        "from supervisor.cli import main" "sys.exit(main())" > /usr/local/bin/hyos-supervisor
    chmod 0755 /usr/local/bin/hyos-supervisor
    groupadd --system --gid 568 hyos
    useradd --system --uid 568 --gid 568 --home-dir /var/lib/hyos-supervisor \
        --shell /usr/sbin/nologin hyos
    # A container: nothing to do with consoles, udev or the clock.
    systemctl mask getty@tty1.service console-getty.service systemd-udevd.service \
        systemd-udev-trigger.service systemd-timesyncd.service systemd-networkd.service \
        systemd-resolved.service >/dev/null 2>&1 || true
    systemctl set-default multi-user.target >/dev/null
'
rm -rf "$rootfs/tmp/wheels" "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
: > "$rootfs/etc/machine-id"  # systemd makes one up at boot

HYOS_STEP="docker import"
for old in $(docker images --format '{{.Repository}}:{{.Tag}}' hyos-test/systemd); do
    [[ "$old" == "$tag" ]] || docker rmi "$old" >/dev/null || true
done
tar -C "$rootfs" -c . | docker import \
    --change 'ENV container=docker' \
    --change 'CMD ["/lib/systemd/systemd"]' \
    - "$tag" >/dev/null
say "built $tag"
echo "$tag"
