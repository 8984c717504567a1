# shellcheck shell=bash
# The demo stack's settings, sourced by scripts/demo.sh and by .ci/run (which checks the
# demo's stack and tears it down with the same settings). Each one can be set beforehand.
# Expects the repository as the working directory.
export HYOS_STACK="${HYOS_STACK:-hyos-demo}"
export HYOS_SERVER__IMAGE="${HYOS_SERVER__IMAGE:-hyos-test/server:1}"
export HYOS_MANAGER__IMAGE="${HYOS_MANAGER__IMAGE:-hyos-test/manager:1}"
# The stand-ins are tiny; the real server wants its 6g default.
export HYOS_SERVER__MEMORY="${HYOS_SERVER__MEMORY:-256m}"
export HYOS_SERVER__CPUS="${HYOS_SERVER__CPUS:-1}"
export HYOS_MANAGER__CPUS="${HYOS_MANAGER__CPUS:-1}"
export HYOS_STATE_DIR="${HYOS_STATE_DIR:-$PWD/.state}"
export HYOS_GUARD_DIR="${HYOS_GUARD_DIR:-$PWD/.state/guard}"
