#!/usr/bin/env bash
# Every benchmark at each given revision, one after the other on this machine, so their
# ratios can be compared in one sitting (the machine is noisy: compare ratios, not times).
#
#   bash scripts/bench_compare.sh OUTDIR REV [REV...]
#
# Each revision is checked out detached under $TMPDIR, its supervisor image rebuilt (the
# prepare step runs the image of the code under test), and each of its benchmarks run
# with moderate counts; the output goes to OUTDIR/<rev>/<bench>.txt. Benchmarks a
# revision does not have are skipped. The supervisor image is rebuilt from this checkout
# at the end. Needs root, the engine and the test images (bash tests/images/build.sh).
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"

if [ $# -lt 2 ]; then
    echo "usage: bash scripts/bench_compare.sh OUTDIR REV [REV...]" >&2
    exit 2
fi
out=$(realpath -m "$1")
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}

# name -> arguments (moderate counts: the whole comparison stays within ~30 min per rev)
declare -A ARGS=(
    [bench_restart]="--crashes 5"
    [bench_unhealthy]="--episodes 5"
    [bench_up]="--runs 3"
    [bench_perms]="--files 50000 --runs 3"
    [bench_guard]="--requests 300 --log-mb 20 --runs 3"
    [bench_guard_flood]="--runs 1"
    [bench_idle]="--seconds 30 --strace-seconds 10"
    [bench_login]="--runs 3"
    [bench_render]="--runs 5"
    [bench_manager_upload]="--mb 100"
)
ORDER=(bench_restart bench_unhealthy bench_up bench_perms bench_guard bench_guard_flood
    bench_idle bench_login bench_render bench_manager_upload)

for rev in "$@"; do
    HYOS_STEP="$rev"
    sha=$(git -C "$repo" rev-parse --short "$rev")
    tree="${TMPDIR:-/tmp}/bench-$sha"
    [ -d "$tree" ] || git -C "$repo" worktree add -q --detach "$tree" "$sha"
    mkdir -p "$out/$sha"
    (cd "$tree" && bash scripts/build-image.sh >/dev/null)
    for name in "${ORDER[@]}"; do
        [ -f "$tree/bench/$name.py" ] || continue
        if [ -f "$tree/bench/__init__.py" ]; then
            command=("$python" -m "bench.$name")
        else
            command=("$python" "bench/$name.py")  # before bench/ was a package
        fi
        echo "bench_compare: $sha $name" >&2
        # shellcheck disable=SC2086  # the arguments are words on purpose
        (cd "$tree" && timeout 1800 "${command[@]}" ${ARGS[$name]}) \
            >"$out/$sha/$name.txt" 2>&1 || echo "(exit $?)" >>"$out/$sha/$name.txt"
    done
done
(cd "$repo" && bash scripts/build-image.sh >/dev/null)
echo "bench_compare: results in $out" >&2
