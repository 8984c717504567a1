#!/bin/sh
# Which Debian mirror and proxy to debootstrap SUITE from, as this machine's apt uses them.
#   usage: sh scripts/debian-mirror.sh [SUITE]      (SUITE defaults to bookworm)
# Prints three lines: the mirror URI (empty: debootstrap's own default), where it came
# from, and the HTTP proxy apt uses (empty: none). For people: scripts source
# scripts/lib/debian-mirror.sh (which says how they are chosen) and call debian_mirror.
set -eu
# shellcheck source=scripts/lib/debian-mirror.sh
. "$(dirname "$0")/lib/debian-mirror.sh"
debian_mirror "${1:-bookworm}"
printf '%s\n%s\n%s\n' "$debian_mirror_uri" "$debian_mirror_origin" "$debian_mirror_proxy"
