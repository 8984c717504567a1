# shellcheck shell=sh
# The one way every script reads which Debian mirror and proxy to debootstrap from, as
# this machine's apt uses them. POSIX sh; sourced (by sh or bash scripts):
#   . scripts/lib/debian-mirror.sh
#   debian_mirror SUITE
# sets three variables, each possibly empty (no lines to parse, nothing to lose):
#   debian_mirror_uri     the mirror URI (empty: debootstrap's own default)
#   debian_mirror_origin  where it came from, to be said
#   debian_mirror_proxy   the HTTP proxy apt uses (empty: none)
# In order of preference:
#   1. DEBIAN_MIRROR (or MIRROR, its older name) from the environment;
#   2. apt's own sources, read by apt itself (`apt-get indextargets`: deb822 *.sources and
#      one-line *.list / sources.list, APT_CONFIG honoured): the Debian archive it
#      downloaded from (Release label "Debian"), else the most Debian-looking entry;
#   3. nothing: debootstrap's built-in default.
# The proxy is http_proxy when set, else apt's Acquire::http::Proxy ("DIRECT": none).
# scripts/debian-mirror.sh prints the three for people.

_debian_mirror_pick() {
    # stdin: "uri release component identifier target_of label" per index target.
    # Best first: a Debian archive for SUITE, any Debian archive, a .../debian/ entry for
    # SUITE, any .../debian/ entry, any entry for SUITE. Updates, security and backports
    # suites (a dash in the name) are never the base system's archive.
    awk -v suite="$1" '
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

# shellcheck disable=SC2034 # the three are its output, read by the script that sources this
debian_mirror() {
    debian_mirror_uri="${DEBIAN_MIRROR:-${MIRROR:-}}"
    debian_mirror_origin=""
    debian_mirror_proxy=""
    if [ -n "$debian_mirror_uri" ]; then
        if [ -n "${DEBIAN_MIRROR:-}" ]; then
            debian_mirror_origin="DEBIAN_MIRROR"
        else
            debian_mirror_origin="MIRROR"
        fi
    elif command -v apt-get >/dev/null 2>&1; then
        # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders, not the shell's
        _debian_mirror_format='$(REPO_URI) $(RELEASE) $(COMPONENT) $(IDENTIFIER) $(TARGET_OF) $(LABEL)'
        # With release info: only what `apt-get update` fetched, labelled. Without:
        # everything the sources name, unlabelled.
        debian_mirror_uri=$(
            { apt-get indextargets --format "$_debian_mirror_format" 2>/dev/null || true
              apt-get indextargets --no-release-info --format "$_debian_mirror_format" 2>/dev/null || true
            } | _debian_mirror_pick "$1")
        if [ -n "$debian_mirror_uri" ]; then
            _debian_mirror_etc=$(apt-config shell D Dir::Etc/f 2>/dev/null | sed -n "s/^D='\(.*\)'$/\1/p")
            debian_mirror_origin="apt's sources (${_debian_mirror_etc:-/etc/apt}/sources.list.d/*.sources, sources.list)"
        fi
    fi
    if [ -z "$debian_mirror_uri" ]; then
        debian_mirror_origin="debootstrap's default (no Debian mirror in DEBIAN_MIRROR or apt's sources)"
    fi

    debian_mirror_proxy="${http_proxy:-}"
    if [ -z "$debian_mirror_proxy" ] && command -v apt-config >/dev/null 2>&1; then
        debian_mirror_proxy=$(apt-config shell P Acquire::http::Proxy 2>/dev/null | sed -n "s/^P='\(.*\)'$/\1/p")
        [ "$debian_mirror_proxy" != "DIRECT" ] || debian_mirror_proxy=""
    fi
}
