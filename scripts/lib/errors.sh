# shellcheck shell=bash
# Sourced first by every setup and build script (bash): the script stops at the first
# command that fails, as with `set -e`, and says so on stderr in one line, e.g.
#   build-python-base.sh: step "debootstrap" failed at line 40: debootstrap --variant=... exited with status 1
# A failure inside a sourced helper names the helper and its function:
#   build-systemd.sh: step "mirror" failed in the helper scripts/lib/debian-mirror.sh line 12 (debian_mirror): ...
# A script names its steps by setting HYOS_STEP as it goes. Commands whose status the
# script tests itself (`if`, `||`, `&&`, a `set +e` region) are not failures; a failure in
# a subshell or command substitution is reported once, as the command that contains it.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"
set -eEuo pipefail
shopt -s inherit_errexit
HYOS_STEP=start

_hyos_failed() {
    local status=$1 statuses=$2 line=$3 file=$4 func=$5 command=$6 script where
    # Only where `set -e` would stop the script, and once: in the script's own shell.
    [[ $- == *e* && $BASH_SUBSHELL == 0 ]] || return 0
    script=${0##*/}
    if [[ -n $file && ! $file -ef $0 ]]; then
        local root
        root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
        file=$(realpath -m "$file")
        where="in the helper ${file#"$root"/} line $line"
    else
        where="at line $line"
    fi
    [[ -z $func || $func == main || $func == source ]] || where+=" ($func)"
    command=${command//$'\n'/ }
    [[ $statuses != *" "* ]] || command+=" (last command of a pipeline; statuses: $statuses)"
    printf '%s: step "%s" failed %s: %s exited with status %s\n' \
        "$script" "$HYOS_STEP" "$where" "$command" "$status" >&2
}
trap '_hyos_failed "$?" "${PIPESTATUS[*]}" "$LINENO" "${BASH_SOURCE[0]:-}" "${FUNCNAME[0]:-}" "$BASH_COMMAND"' ERR
