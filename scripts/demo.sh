#!/usr/bin/env bash
# The main job on a machine without a registry: set up, build the stand-in HyOS images
# and the supervisor image locally, bring the hardened stack up, wait until healthy,
# show its status and audit it. Point HYOS_SERVER__IMAGE / HYOS_MANAGER__IMAGE at
# HyOS's published images to run the real stack where the registry is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash tests/images/build.sh
sh scripts/build-image.sh
export HYOS_STACK="${HYOS_STACK:-hyos-demo}"
export HYOS_SERVER__IMAGE="${HYOS_SERVER__IMAGE:-hyos-test/server:1}"
export HYOS_MANAGER__IMAGE="${HYOS_MANAGER__IMAGE:-hyos-test/manager:1}"
# The stand-ins are tiny; the real server wants its 6g default.
export HYOS_SERVER__MEMORY="${HYOS_SERVER__MEMORY:-256m}"
export HYOS_SERVER__CPUS="${HYOS_SERVER__CPUS:-1}"
export HYOS_MANAGER__CPUS="${HYOS_MANAGER__CPUS:-1}"
export HYOS_STATE_DIR="${HYOS_STATE_DIR:-$PWD/.state}"
export HYOS_GUARD_DIR="${HYOS_GUARD_DIR:-$PWD/.state/guard}"
hs=.venv/bin/hyos-supervisor
$hs --log-format text up --wait --timeout 300
$hs status
$hs audit
echo
echo "Stack $HYOS_STACK is up. Supervise it with: $hs run    Remove it with: $hs down --volumes"
