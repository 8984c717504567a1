# hyos-supervisor image. Minimal for now: the entrypoint is stdlib-only, so copying the
# packages is enough. Tests and offline builds pass a locally imported Python base:
#   docker build --build-arg BASE_IMAGE=hyos-python-base:bookworm .
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV PYTHONPATH=/opt/hyos \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY entrypoint/ /opt/hyos/entrypoint/
COPY supervisor/ /opt/hyos/supervisor/

# Starts as root on purpose: the entrypoint fixes volume ownership, then drops to --user
# and refuses to run a command as root unless told to (--allow-root).
ENTRYPOINT ["python3", "-m", "entrypoint"]
