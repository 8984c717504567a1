#!/usr/bin/env bash
# The README's first command as a user runs it, checked: `bash scripts/demo.sh` end to end
# (setup, stand-in images, supervisor image, up --wait, status, audit) must exit 0 with the
# server and the manager running and healthy and the audit clean. The demo's stack is torn
# down afterwards (`hyos-supervisor down --volumes`, same settings: scripts/lib/demo-env.sh)
# whether it passed or not; a failure says what failed and shows the stack's status.
# Called from .ci/run; runs on its own too: bash .ci/demo-check.sh
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/errors.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/demo-env.sh
. scripts/lib/demo-env.sh
hs="$PWD/.venv/bin/hyos-supervisor"
t0=$(date +%s)

teardown() {
    local status=$? took=$(( $(date +%s) - t0 ))
    trap - EXIT
    if [[ $status != 0 ]]; then
        echo "demo-check: FAILED at step \"$HYOS_STEP\" (exit $status, after ${took} s); the stack $HYOS_STACK:" >&2
        "$hs" status >&2 || true
    fi
    if [[ -x $hs ]] && ! "$hs" down --volumes >/dev/null; then
        echo "demo-check: could not tear down the stack $HYOS_STACK ($hs down --volumes)" >&2
        status=1
    fi
    echo "demo-check: stack $HYOS_STACK torn down; demo and checks took ${took} s"
    exit "$status"
}
trap teardown EXIT

HYOS_STEP="bash scripts/demo.sh"
bash scripts/demo.sh

HYOS_STEP="both services healthy"
"$hs" status --json | "$PWD/.venv/bin/python" -c '
import json, sys
rows = {row["service"]: row for row in json.load(sys.stdin)["services"]}
bad = {
    name: (row.get("state"), row.get("health"))
    for name, row in rows.items()
    if (row.get("state"), row.get("health")) != ("running", "healthy")
}
if set(rows) != {"server", "manager"} or bad:
    sys.exit(f"demo-check: want server and manager running and healthy, got {bad or sorted(rows)}")
print("demo-check: server and manager running and healthy")
'

HYOS_STEP="audit clean"
"$hs" audit >/dev/null
echo "demo-check: audit clean (no FAIL)"
