# syntax=docker/dockerfile:1
# hyos-supervisor: the daemon that runs the HyOS stack hardened, and the one-shot
# "prepare" helper it starts (which overrides Entrypoint/Cmd with `python3 -m entrypoint prepare`).
#
# Two ways to build (docs/deployment.md):
#   online:  docker build -t hyos-supervisor:0.1.0 .                (python:3.12-slim, PyPI)
#   offline: scripts/build-image.sh  = scripts/build-wheelhouse.sh (host pip fills
#            build/wheels/ for the base image's Python) + docker build --build-arg
#            BASE_IMAGE=hyos-python-base:bookworm (a debootstrap import, no registry).
# The builder uses build/wheels/ with --no-index only when build/wheels/PYTHON_VERSION
# equals its own Python; otherwise it installs from the index (a cp311 wheelhouse never
# leaks into a 3.12 image).
ARG BASE_IMAGE=python:3.12-slim

# ---------------------------------------------------------------------------- builder
FROM ${BASE_IMAGE} AS builder
# The online path's package index: pass the host's pip settings when it uses a mirror,
# e.g. --build-arg PIP_INDEX_URL="$(pip config get global.index-url)". Unset ARGs stay
# unset, so pip's defaults apply.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/sh", "-eu", "-c"]
WORKDIR /src
# `pyproject.toml` makes the glob match even without a wheelhouse (online build).
COPY pyproject.toml build/wheel[s] /wheels/
# pip: from the wheelhouse when it fits (runs straight from its wheel, so neither the
# base nor the venv needs pip), else the base image's own pip. Dependencies first, in
# their own layer: a source change rebuilds only the small layer below.
RUN python3 -m venv --without-pip /opt/venv; \
    here=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
    if [ "$(cat /wheels/PYTHON_VERSION 2>/dev/null || true)" = "$here" ]; then \
        echo "builder: offline, wheelhouse for Python $here"; \
        set -- /wheels/pip-*.whl; \
        printf '%s\n' "/opt/venv/bin/python $1/pip" > /tmp/pip; \
        printf '%s\n' "--no-index --find-links /wheels" > /tmp/pip-source; \
        /opt/venv/bin/python "$1/pip" install --no-index --find-links /wheels \
            --requirement /wheels/requirements.txt; \
    else \
        echo "builder: no wheelhouse for Python $here, installing from the index"; \
        printf '%s\n' "python3 -m pip --python /opt/venv/bin/python" > /tmp/pip; \
        : > /tmp/pip-source; \
    fi
# README.m[d]: the package's long description; the build tolerates its absence.
COPY pyproject.toml README.m[d] ./
COPY supervisor/ supervisor/
COPY entrypoint/ entrypoint/
# Build the wheel (isolated build env: setuptools from the same source), install it and
# its dependencies into the venv, byte-compiled (the root filesystem is read-only later).
# $pip and $source are word lists on purpose.
# hadolint ignore=SC2086
RUN pip=$(cat /tmp/pip); source=$(cat /tmp/pip-source); \
    [ -f README.md ] || : > README.md; \
    $pip wheel --no-deps $source --wheel-dir /dist .; \
    $pip install $source /dist/*.whl; \
    /opt/venv/bin/python -c 'import supervisor.cli, entrypoint.cli'

# ------------------------------------------------------------------------------ final
FROM ${BASE_IMAGE}
ARG HYOS_UID=568
ARG HYOS_GID=568
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="hyos-supervisor" \
      org.opencontainers.image.description="Hardened, self-healing supervisor for the HyOS game server stack on Docker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/editmysave/hyos" \
      org.opencontainers.image.vendor="HyOS"
SHELL ["/bin/sh", "-eu", "-c"]
# A fixed uid/gid (HyOS convention 568); the state dir is private to it. No VOLUME here:
# the same image is the one-shot prepare helper, which must not leave anonymous volumes
# behind (compose.yaml declares the state volume).
RUN groupadd --system --gid "${HYOS_GID}" hyos; \
    useradd --system --uid "${HYOS_UID}" --gid "${HYOS_GID}" --no-create-home \
        --home-dir /var/lib/hyos-supervisor --shell /usr/sbin/nologin hyos; \
    install -d -o "${HYOS_UID}" -g "${HYOS_GID}" -m 0700 /var/lib/hyos-supervisor
# restic, the backup helper's engine (issue 25): the build context's build/restic/restic
# (scripts/build-image.sh copies the host's Debian package: no network in the build), else
# Debian's package. /repo is where a backup volume is mounted: a new volume copies its
# owner (the workload's uid) from the image, so the unprivileged helper can write it.
COPY pyproject.toml build/resti[c] /tmp/restic/
# hadolint ignore=DL3008
RUN if [ -x /tmp/restic/restic ]; then \
        install -m 0755 /tmp/restic/restic /usr/local/bin/restic; \
    else \
        apt-get update; apt-get install -y --no-install-recommends restic; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    rm -rf /tmp/restic; restic version; \
    install -d -o "${HYOS_UID}" -g "${HYOS_GID}" -m 0700 /repo
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HYOS_STATE_DIR=/var/lib/hyos-supervisor
WORKDIR /var/lib/hyos-supervisor
# Starts as root on purpose (no USER): the entrypoint joins the group owning the docker
# socket (its gid differs per host), drops to hyos with no_new_privs and verifies the drop,
# then runs CMD as PID 1's child (signals forwarded, zombies reaped). It refuses to run
# anything as root. Needs only CAP_SETUID and CAP_SETGID (compose.yaml drops the rest).
ENTRYPOINT ["/opt/venv/bin/python", "-m", "entrypoint", "init", "--user", "hyos", "--group-of", "/var/run/docker.sock", "--"]
CMD ["hyos-supervisor", "run"]
# Health checks run as the container's user (root here, without capabilities under
# compose), so they drop to hyos too: the control socket lives in the 0700 state dir.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-m", "entrypoint", "init", "--user", "hyos", "--", "hyos-supervisor", "health"]
