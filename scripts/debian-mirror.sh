#!/bin/sh
# Which Debian mirror and proxy to debootstrap SUITE from, as this machine's apt uses them.
#   usage: sh scripts/debian-mirror.sh [SUITE]      (SUITE defaults to bookworm)
# Prints three lines: the mirror URI (empty: debootstrap's own default), where it came
# from, and the HTTP proxy apt uses (empty: none). In order of preference:
#   1. DEBIAN_MIRROR (or MIRROR, its older name) from the environment;
#   2. apt's own sources, read by apt itself (`apt-get indextargets`: deb822 *.sources and
#      one-line *.list / sources.list, APT_CONFIG honoured): the Debian archive it
#      downloaded from (Release label "Debian"), else the most Debian-looking entry;
#   3. nothing: debootstrap's built-in default.
# The proxy is http_proxy when set, else apt's Acquire::http::Proxy.
set -eu

SUITE="${1:-bookworm}"

pick() {
    # stdin: "uri release component identifier target_of label" per index target.
    # Best first: a Debian archive for SUITE, any Debian archive, a .../debian/ entry for
    # SUITE, any .../debian/ entry, any entry for SUITE. Updates, security and backports
    # suites (a dash in the name) are never the base system's archive.
    awk -v suite="$SUITE" '
        $4 != "Packages" || $5 != "deb" || $3 != "main" || $2 ~ /-/ { next }
        {
            score = 9
            debian_path = ($1 ~ /\/debian\/?$/)
            if ($6 == "Debian" && $2 == suite) score = 0
            else if ($6 == "Debian") score = 1
            else if (debian_path && $2 == suite) score = 2
            else if (debian_path) score = 3
            else if ($2 == suite) score = 4
            if (score < best || best == "") { best = score; uri = $1 }
        }
        END { if (uri != "" && best < 9) print uri }'
}

mirror="${DEBIAN_MIRROR:-${MIRROR:-}}"
origin=""
if [ -n "$mirror" ]; then
    if [ -n "${DEBIAN_MIRROR:-}" ]; then origin="DEBIAN_MIRROR"; else origin="MIRROR"; fi
elif command -v apt-get >/dev/null 2>&1; then
    format='$(REPO_URI) $(RELEASE) $(COMPONENT) $(IDENTIFIER) $(TARGET_OF) $(LABEL)'
    # With release info: only what `apt-get update` fetched, labelled. Without: everything
    # the sources name, unlabelled.
    mirror=$( { apt-get indextargets --format "$format" 2>/dev/null || true
                apt-get indextargets --no-release-info --format "$format" 2>/dev/null || true
              } | pick)
    if [ -n "$mirror" ]; then
        etc=$(apt-config shell D Dir::Etc/f 2>/dev/null | sed -n "s/^D='\(.*\)'$/\1/p")
        origin="apt's sources (${etc:-/etc/apt}/sources.list.d/*.sources, sources.list)"
    fi
fi
if [ -z "$mirror" ]; then
    origin="debootstrap's default (no Debian mirror in DEBIAN_MIRROR or apt's sources)"
fi

proxy="${http_proxy:-}"
if [ -z "$proxy" ] && command -v apt-config >/dev/null 2>&1; then
    proxy=$(apt-config shell P Acquire::http::Proxy 2>/dev/null | sed -n "s/^P='\(.*\)'$/\1/p")
    [ "$proxy" != "DIRECT" ] || proxy=""
fi

printf '%s\n%s\n%s\n' "$mirror" "$origin" "$proxy"
