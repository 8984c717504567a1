#!/usr/bin/env bash
# Builds HyOS's real manager image, hyos-upstream/manager:local, from the unmodified upstream
# source (../shared/upstream/hyos/manager), with no container registry and no internet
# beyond the npm registry:
#   1. pnpm install --frozen-lockfile (npx -y pnpm@10.4.1; the host's npm config applies)
#   2. pnpm build inside a network namespace that has only loopback, so the build cannot
#      reach out; next/font/google is answered by NEXT_FONT_GOOGLE_MOCKED_RESPONSES and a
#      font server on 127.0.0.1 (HyOS's own cablefied.woff2 stands in for Inter and
#      JetBrains Mono)
#   3. a FROM scratch image with the filesystem facts of HyOS's node:22-alpine runner where
#      they can matter to a supervisor: /var/run a link to /run, /bin/sh busybox's ash (and
#      the wget of HyOS's HEALTHCHECK), Alpine's users and groups plus the two HyOS's
#      Dockerfile adds (`addgroup --system --gid 568 nodejs`, `adduser --system --uid 568
#      nextjs`, as busybox makes them), /home/nextjs; the host's node (>= 20.9) and the
#      shared libraries ldd names; the standalone output in /app; and the metadata of HyOS's
#      Dockerfile (USER nextjs, WORKDIR /app, EXPOSE 3000, HEALTHCHECK, `node server.js`).
#      tests/integration/test_replicas.py checks these facts against HyOS's Dockerfile.
# Cached in two parts. The Next.js build (steps 1-2) is kept in $CACHE_DIR as a tarball
# named by the sha256 of the source tree, the node and pnpm versions and BUILD_RECIPE;
# the image (step 3) by its io.hyos.upstream-hash label, which adds this script: a change
# to the image's layout rebuilds in seconds, not minutes. FORCE=1 rebuilds both. The npx
# and pnpm caches live in $CACHE_DIR too. Runs as root on Debian (unshare, ip,
# busybox-static, docker.io).
#
# Environment: MANAGER_SRC (the manager source), IMAGE, CACHE_DIR, FORCE=1, KEEP_BUILD_DIR=1.
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/errors.sh"

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
IMAGE=${IMAGE:-hyos-upstream/manager:local}
CACHE_DIR=${CACHE_DIR:-/var/cache/hyos-upstream}
PNPM=pnpm@10.4.1
NODE_MIN=20.9
HASH_LABEL=io.hyos.upstream-hash
APP_UID=568
APP_GID=568
BUSYBOX=${BUSYBOX:-/bin/busybox}
started=$SECONDS

say() { printf 'build-manager: %s\n' "$*"; }
die() { printf 'build-manager: error: %s\n' "$*" >&2; exit 1; }

HYOS_STEP="source"
# --- where the source is -------------------------------------------------------------------
find_source() {
    local candidate common
    if [ -n "${MANAGER_SRC:-}" ]; then
        [ -f "$MANAGER_SRC/package.json" ] || die "MANAGER_SRC=$MANAGER_SRC has no package.json"
        echo "$MANAGER_SRC"
        return
    fi
    # Beside the main checkout (DESIGN.md: ../shared), also when this is a git worktree.
    common=$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    for candidate in "$REPO/../shared/upstream/hyos/manager" \
                     ${common:+"$common/../../shared/upstream/hyos/manager"}; do
        if [ -f "$candidate/package.json" ]; then
            readlink -f "$candidate"
            return
        fi
    done
    die "HyOS manager source not found beside the repository; set MANAGER_SRC"
}

SRC=$(find_source)
command -v docker >/dev/null || die "docker CLI not found (apt-get install docker.io)"
NODE=$(command -v node) || die "node not found: install Node.js >= $NODE_MIN (Debian bookworm's nodejs 18 is too old)"
NODE=$(readlink -f "$NODE")
node_version=$("$NODE" --version)
if ! "$NODE" -e '
    const [maj, min] = process.versions.node.split(".").map(Number);
    const [wantMaj, wantMin] = process.argv[1].split(".").map(Number);
    process.exit(maj > wantMaj || (maj === wantMaj && min >= wantMin) ? 0 : 1);' "$NODE_MIN"; then
    die "$NODE is Node.js $node_version; Next.js 16 needs >= $NODE_MIN (Debian bookworm's nodejs is 18: install Node.js 20 or newer, e.g. from NodeSource)"
fi

HYOS_STEP="cache check"
# --- content hashes and the cache checks -----------------------------------------------------
# Bump when steps 1-2 (install, offline build) change: it names the cached build output.
BUILD_RECIPE=2
build_hash() {
    {
        (cd "$SRC" && find . \( -type f -o -type l \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        echo "node $node_version $PNPM recipe $BUILD_RECIPE"
    } | sha256sum | cut -d' ' -f1
}
BUILD_HASH=$(build_hash)
HASH=$( { echo "$BUILD_HASH"; sha256sum <"$SELF"; } | sha256sum | cut -d' ' -f1)
BUILT="$CACHE_DIR/next-build-${BUILD_HASH:0:24}.tar"

image_hash() {
    docker image inspect -f "{{index .Config.Labels \"$HASH_LABEL\"}}" "$IMAGE" 2>/dev/null || true
}

if [ "${FORCE:-0}" != 1 ] && [ "$(image_hash)" = "$HASH" ]; then
    say "cached: $IMAGE is up to date ($HASH_LABEL=${HASH:0:12}) ($((SECONDS - started)) s)"
    exit 0
fi

HYOS_STEP="prerequisites"
# --- prerequisites for a real build --------------------------------------------------------
[ "$(id -u)" = 0 ] || die "needs root (unshare --net, chown of the image's files)"
for tool in npx python3 unshare ip tar ldd flock; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
if ! "$BUSYBOX" --help >/dev/null 2>&1 || ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is not a static busybox; apt-get install busybox-static"
fi
docker version >/dev/null 2>&1 || die "no Docker engine answers"

mkdir -p "$CACHE_DIR"
# One build at a time per cache; the second one then finds the image cached.
exec 9>"$CACHE_DIR/.lock"
flock 9
if [ "${FORCE:-0}" != 1 ] && [ "$(image_hash)" = "$HASH" ]; then
    say "cached: $IMAGE was built meanwhile ($((SECONDS - started)) s)"
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hyos-manager-build.XXXXXX")
cleanup() {
    local pid
    # The font server normally stops with the build; this catches an interrupted build.
    if [ -s "$WORK/fonts.pid" ]; then
        pid=$(cat "$WORK/fonts.pid")
        if grep -qs serve.py "/proc/$pid/cmdline"; then kill "$pid" 2>/dev/null || true; fi
    fi
    if [ "${KEEP_BUILD_DIR:-0}" = 1 ]; then
        say "build dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a step with its output in a log; on failure shows the log's tail. The subshell is a
# plain command (not an `if` condition), so `set -e` still stops the step at its first error.
step() {
    local name=$1 t0=$SECONDS rc
    shift
    HYOS_STEP=$name
    set +e
    (set -e; "$@") >"$WORK/$name.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" != 0 ]; then
        tail -n 60 "$WORK/$name.log" >&2
        die "$name failed with status $rc (log above)"
    fi
    say "$name: $((SECONDS - t0)) s"
}

say "building $IMAGE from $SRC (node $node_version, $PNPM, hash ${HASH:0:12})"

# npx's copy of pnpm and pnpm's store and metadata cache live in CACHE_DIR; everything
# else (registry, CA file, proxy) is the host's npm configuration, which npx hands to pnpm.
export npm_config_cache="$CACHE_DIR/npm"
export NEXT_TELEMETRY_DISABLED=1

next_build() {
HYOS_STEP="install"
# --- 1. install --------------------------------------------------------------------------
# A writable copy: /work/shared stays untouched (next build writes next-env.d.ts, .next/).
cp -r "$SRC" "$WORK/src"
chmod -R u+w "$WORK/src"
install_deps() {
    cd "$WORK/src"
    npx -y "$PNPM" install --frozen-lockfile --reporter=append-only \
        --store-dir="$CACHE_DIR/pnpm-store" --cache-dir="$CACHE_DIR/pnpm-cache"
}
step install install_deps

HYOS_STEP="build"
# --- 2. build, offline, with Google Fonts answered locally -----------------------------------
mkdir -p "$WORK/fonts"
cp "$SRC/cablefied.woff2" "$WORK/fonts/inter.woff2"
cp "$SRC/cablefied.woff2" "$WORK/fonts/jetbrains-mono.woff2"
cat >"$WORK/fonts/serve.py" <<'PY'
"""Serves this directory on 127.0.0.1 (a free port, written to ./port), logging requests."""
import functools
import http.server
import os

here = os.path.dirname(os.path.abspath(__file__))
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=here)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
with open(os.path.join(here, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(here, "port.tmp"), os.path.join(here, "port"))
server.serve_forever()
PY
cat >"$WORK/build-offline.sh" <<'SH'
# Runs inside `unshare --net`: a network namespace whose only interface is loopback.
set -euo pipefail
ip link set lo up
python3 -u "$WORK/fonts/serve.py" 2>"$WORK/fonts.log" &
fonts_pid=$!
echo "$fonts_pid" >"$WORK/fonts.pid"
trap 'kill "$fonts_pid" 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -s "$WORK/fonts/port" ] && break; sleep 0.05; done
port=$(cat "$WORK/fonts/port")
# Both stylesheet URLs the layout asks for, answered with CSS whose font file is local.
cat >"$WORK/font-mocks.js" <<JS
const face = (family, weight, file) => \`/* latin */
@font-face {
  font-family: '\${family}';
  font-style: normal;
  font-weight: \${weight};
  font-display: swap;
  src: url(http://127.0.0.1:$port/\${file}) format('woff2');
  unicode-range: U+0000-00FF, U+0131, U+0152-0153, U+02BB-02BC, U+02C6, U+02DA, U+02DC, U+0304, U+0308, U+0329, U+2000-206F, U+20AC, U+2122, U+2191, U+2193, U+2212, U+2215, U+FEFF, U+FFFD;
}
\`;
module.exports = {
  "https://fonts.googleapis.com/css2?family=Inter:wght@100..900&display=swap":
    face("Inter", "100 900", "inter.woff2"),
  "https://fonts.googleapis.com/css2?family=JetBrains+Mono:wght@100..800&display=swap":
    face("JetBrains Mono", "100 800", "jetbrains-mono.woff2"),
};
JS
export NEXT_FONT_GOOGLE_MOCKED_RESPONSES="$WORK/font-mocks.js"
cd "$WORK/src"
# --offline: npx's pnpm is in the cache since the install; without it npx waits for the
# registry's timeouts.
npx --offline -y "$PNPM" build
SH
build_offline() { export WORK PNPM; unshare --net -- bash "$WORK/build-offline.sh"; }
step build build_offline
for font in inter.woff2 jetbrains-mono.woff2; do
    grep -q "\"GET /$font HTTP/1.1\" 200" "$WORK/fonts.log" \
        || die "the build never fetched $font from the local font server (fonts.log: $(cat "$WORK/fonts.log"))"
done
say "build ran with loopback only; both Google Fonts answered from 127.0.0.1"
[ -f "$WORK/src/.next/standalone/server.js" ] || die "no .next/standalone/server.js after the build"
    # The build's output, kept for the next image (step 3) of the same source.
    tar -C "$WORK/src" -cf "$BUILT.tmp" .next/standalone .next/static public
    mv "$BUILT.tmp" "$BUILT"
    say "kept the build in $BUILT"
}
if [ "${FORCE:-0}" != 1 ] && [ -f "$BUILT" ]; then
    say "the Next.js build of this source is cached: $BUILT"
else
    next_build
fi
mkdir -p "$WORK/out"
tar -C "$WORK/out" -xf "$BUILT"

# --- 3. the runtime image ------------------------------------------------------------------
make_rootfs() {
    local root=${WORK:?}/rootfs elf lib applet
    local -a elves
    mkdir -p "$root"/{bin,etc,tmp,run,var,app/.next,app/public,usr/local/bin,proc,sys,dev}
    # 1777 like node:alpine; the engine copies this mode onto a tmpfs mounted at /tmp.
    chmod 1777 "$root/tmp"
    # Alpine's layout (since 3.7): /var/run is a link to /run, which Docker follows when it
    # resolves a mount target.
    ln -s /run "$root/var/run"
    # HyOS's layout: the standalone server, its static assets and public/ in /app,
    # owned by the app user (its Dockerfile's COPY --chown=nextjs:nodejs).
    cp -a "$WORK/out/.next/standalone/." "$root/app/"
    cp -a "$WORK/out/.next/static" "$root/app/.next/static"
    cp -a "$WORK/out/public/." "$root/app/public/"
    install -m 0755 "$NODE" "$root/usr/local/bin/node"
    # The host's shared libraries that node and the app's native modules link (sharp's
    # libvips wants libresolv), at the same paths; ldd finds nothing for the musl builds.
    elves=("$NODE")
    while IFS= read -r -d '' elf; do elves+=("$elf"); done \
        < <(find "$root/app" -type f \( -name '*.node' -o -name '*.so' -o -name '*.so.*' \) -print0)
    for elf in "${elves[@]}"; do
        for lib in $(ldd "$elf" 2>/dev/null \
                     | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
            case $lib in "$root"/*) continue ;; esac
            [ -e "$root$lib" ] && continue
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    done
    # busybox: /bin/sh for HEALTHCHECK's shell form and its wget, like node:alpine.
    install -m 0755 "$BUSYBOX" "$root/bin/busybox"
    for applet in $("$BUSYBOX" --list-full); do
        case $applet in bin/busybox | linuxrc) continue ;; esac
        mkdir -p "$root/$(dirname "$applet")"
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done
    # Alpine's base users and groups, node:22-alpine's `node`, then what HyOS's Dockerfile
    # adds: `addgroup --system --gid 568 nodejs` (a group, no members) and `adduser --system
    # --uid 568 nextjs`, which busybox makes a member of nogroup (65533) with shell
    # /bin/false and home /home/nextjs (2755) when no --ingroup is given.
    cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin
sync:x:5:0:sync:/sbin:/bin/sync
shutdown:x:6:0:shutdown:/sbin:/sbin/shutdown
halt:x:7:0:halt:/sbin:/sbin/halt
mail:x:8:12:mail:/var/mail:/sbin/nologin
news:x:9:13:news:/usr/lib/news:/sbin/nologin
uucp:x:10:14:uucp:/var/spool/uucppublic:/sbin/nologin
cron:x:16:16:cron:/var/spool/cron:/sbin/nologin
ftp:x:21:21::/var/lib/ftp:/sbin/nologin
sshd:x:22:22:sshd:/dev/null:/sbin/nologin
games:x:35:35:games:/usr/games:/sbin/nologin
ntp:x:123:123:NTP:/var/empty:/sbin/nologin
guest:x:405:100:guest:/dev/null:/sbin/nologin
nobody:x:65534:65534:nobody:/:/sbin/nologin
node:x:1000:1000:Linux User,,,:/home/node:/bin/sh
nextjs:x:$APP_UID:65533:Linux User,,,:/home/nextjs:/bin/false
EOF
    cat >"$root/etc/group" <<EOF
root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
sys:x:3:root,bin
adm:x:4:root,daemon
tty:x:5:
disk:x:6:root
lp:x:7:lp
kmem:x:9:
wheel:x:10:root
floppy:x:11:root
mail:x:12:mail
news:x:13:news
uucp:x:14:uucp
cron:x:16:cron
console:x:17:
audio:x:18:
cdrom:x:19:
dialout:x:20:root
ftp:x:21:
sshd:x:22:
input:x:23:
tape:x:26:root
video:x:27:root
netdev:x:28:
kvm:x:34:kvm
games:x:35:
shadow:x:42:
www-data:x:82:
users:x:100:games
ntp:x:123:
abuild:x:300:
utmp:x:406:
ping:x:999:
nogroup:x:65533:nextjs
nobody:x:65534:
node:x:1000:node
nodejs:x:$APP_GID:
EOF
    printf '%s\n' /bin/sh /bin/ash >"$root/etc/shells"
    mkdir -p "$root/home/node" "$root/home/nextjs"
    echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
    chown -R 0:0 "$root"
    chown -R "$APP_UID:$APP_GID" "$root"/app/* "$root"/app/.next
    chown 1000:1000 "$root/home/node"
    chown "$APP_UID:65533" "$root/home/nextjs"
    chmod 2755 "$root/home/nextjs"
    tar -C "$root" --numeric-owner -cf "$WORK/context/rootfs.tar" .
}
mkdir -p "$WORK/context"
step rootfs make_rootfs

HYOS_STEP="image"
upstream_commit=$(grep -o 'commit [0-9a-f]\{40\}' "$SRC/../README.md" 2>/dev/null | cut -d' ' -f2 || true)
cat >"$WORK/context/Dockerfile" <<EOF
FROM scratch
# ADD unpacks the tar with its owners and modes (/app belongs to $APP_UID:$APP_GID).
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    NODE_ENV=production \\
    NEXT_TELEMETRY_DISABLED=1 \\
    PORT=3000 \\
    HOSTNAME=0.0.0.0
WORKDIR /app
USER nextjs
EXPOSE 3000
# HyOS's own health check, verbatim.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \\
    CMD wget --no-verbose --tries=1 --spider http://127.0.0.1:3000/api/health || exit 1
LABEL $HASH_LABEL="$HASH" \\
      io.hyos.replica.layout="alpine" \\
      io.hyos.upstream-commit="${upstream_commit:-unknown}" \\
      io.hyos.node-version="$node_version" \\
      org.opencontainers.image.source="https://github.com/EditMySave/HyOS" \\
      org.opencontainers.image.licenses="MIT"
CMD ["node", "server.js"]
EOF
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
docker_build() { DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$WORK/context"; }
step image docker_build
new_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    docker rmi "$old_id" >/dev/null 2>&1 || true
fi

HYOS_STEP="smoke"
# Smoke: node starts with the copied libraries, as the app user, on a read-only root.
smoke=$(docker run --rm --read-only --network none --cap-drop ALL "$IMAGE" \
    node -e 'console.log(process.version, process.getuid())') \
    || die "node does not start in $IMAGE"
[ "$smoke" = "$node_version $APP_UID" ] || die "unexpected smoke output: $smoke"

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE ${new_id:7:12}, $((size / 1000000)) MB, in $((SECONDS - started)) s"
