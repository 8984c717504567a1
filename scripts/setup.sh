#!/usr/bin/env bash
# Prepares a Debian machine (as root) to run and test hyos-supervisor:
#   Debian packages it needs, a dockerd that answers (started only if none does),
#   and a virtualenv in .venv with the package and its test extras.
# Idempotent and quiet when everything is already there.
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"
cd "$(dirname "$0")/.."

HYOS_STEP="Debian packages"
need=()
command -v dockerd >/dev/null || need+=(docker.io)
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-compose >/dev/null || need+=(docker-compose)
# The backup helper's engine goes into the supervisor image from the host's package
# (scripts/build-image.sh), so a fresh machine's demo builds without a network in the build.
command -v restic >/dev/null || need+=(restic)
# promtool checks the metrics page and the alerting rules in deploy/prometheus/.
command -v promtool >/dev/null || need+=(prometheus)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v unshare >/dev/null || need+=(util-linux)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv)
if ((${#need[@]})); then
    echo "setup: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

HYOS_STEP="dockerd"
# One dockerd per machine: reuse the one that answers.
if ! docker version >/dev/null 2>&1; then
    echo "setup: no dockerd answers; starting one (log: /var/log/hyos-dockerd.log)"
    nohup dockerd >/var/log/hyos-dockerd.log 2>&1 &
    deadline=$(( $(date +%s) + 60 ))
    until docker version >/dev/null 2>&1; do
        if (( $(date +%s) > deadline )); then
            echo "setup: dockerd did not answer within 60 s:" >&2
            tail -n 30 /var/log/hyos-dockerd.log >&2
            exit 1
        fi
        sleep 0.5
    done
fi

HYOS_STEP=".venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | { grep -v '^WARNING: Location' || true; }
.venv/bin/python -c 'import supervisor, entrypoint'
echo "setup: ready ($(docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}'))"
