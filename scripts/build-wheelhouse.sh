#!/usr/bin/env bash
# Prepare an offline wheelhouse for the image build: build/wheels/ gets pip, setuptools,
# wheel and every runtime dependency of pyproject.toml as binary wheels for the Python
# *inside* the base image (version and platform read from the image, not the host), plus
#   requirements.txt  the runtime dependencies (what the builder installs first)
#   PYTHON_VERSION    e.g. 3.11: the Dockerfile uses the wheelhouse only on that Python
#   .stamp            pyproject deps + base image id: unchanged -> nothing to do
# The host's pip does the downloading (its index or mirror config applies); containers
# never need the network. FORCE=1 rebuilds.
# shellcheck source=scripts/lib/errors.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/errors.sh"

repo=$(cd "$(dirname "$0")/.." && pwd)
BASE_IMAGE="${BASE_IMAGE:-hyos-python-base:bookworm}"
WHEELHOUSE="${WHEELHOUSE:-$repo/build/wheels}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi

HYOS_STEP="base image id"
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
# The runtime dependencies, straight from pyproject.toml (tomllib: Python >= 3.11).
requirements=$("$PYTHON" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as handle:
    print("\n".join(tomllib.load(handle)["project"]["dependencies"]))
PY
)
stamp=$(printf '%s\n%s\n' "$requirements" "$base_id" | sha256sum | cut -d' ' -f1)
if [[ "${FORCE:-0}" != 1 && -f "$WHEELHOUSE/.stamp" && "$(cat "$WHEELHOUSE/.stamp")" == "$stamp" ]]; then
    echo "build-wheelhouse: $WHEELHOUSE is current, skipping"
    exit 0
fi

HYOS_STEP="base image python"
# Python version and glibc of the base image decide which wheels fit.
read -r pyver glibc machine < <(docker run --rm --network none --entrypoint python3 "$BASE_IMAGE" -c \
    'import platform, sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.libc_ver()[1], platform.machine())')
abi="cp${pyver/./}"
platforms=()
glibc_minor=${glibc#*.}
for ((minor = 5; minor <= glibc_minor; minor++)); do
    platforms+=(--platform "manylinux_2_${minor}_${machine}")
done
platforms+=(--platform "manylinux2014_${machine}" --platform "manylinux2010_${machine}" --platform "manylinux1_${machine}" --platform "linux_${machine}")

HYOS_STEP="pip download"
rm -rf "$WHEELHOUSE"
mkdir -p "$WHEELHOUSE"
printf '%s\n' "$requirements" >"$WHEELHOUSE/requirements.txt"
echo "build-wheelhouse: wheels for Python $pyver ($abi, glibc $glibc, $machine) from $BASE_IMAGE"
# Say where pip will look (its config files and PIP_* variables), credentials masked.
sources=$("$PYTHON" -m pip config list 2>/dev/null \
          | grep -E '\.(index-url|extra-index-url|find-links|no-index)=' \
          | sed -E 's|//[^/@]*@|//***@|g' | tr '\n' ' ' || true)
echo "build-wheelhouse: package sources of pip: ${sources:-the default index (no index-url, extra-index-url or find-links configured)}"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --dest "$WHEELHOUSE" \
    --only-binary=:all: --implementation cp --python-version "$pyver" --abi "$abi" \
    "${platforms[@]}" \
    pip "setuptools>=68" wheel -r "$WHEELHOUSE/requirements.txt" 2>&1 \
    | grep -v '^WARNING: Location' || true
# pip download exits 0 only when everything resolved; grep above hides mirror noise, so check.
for name in pip setuptools pydantic_core aiohttp; do
    if ! compgen -G "$WHEELHOUSE/${name}-*.whl" >/dev/null; then
        echo "build-wheelhouse: no $name wheel in $WHEELHOUSE (download failed?)" >&2
        exit 1
    fi
done
echo "$pyver" >"$WHEELHOUSE/PYTHON_VERSION"
echo "$stamp" >"$WHEELHOUSE/.stamp"
echo "build-wheelhouse: $(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels in $WHEELHOUSE"
