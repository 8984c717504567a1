# Replica of HyOS's server image (hytale-docker-server/config-truenas/Dockerfile at
# 2b6bf10): same paths, user, environment, health check, entrypoint and HyOS's scripts
# copied unmodified. What cannot be had here is replaced at the process boundary by the
# programs in /opt/hyos-fakes (tests/upstream/server-fakes, see tests/upstream/README.md):
# `java`, `hytale-downloader`, Hytale's cloud (OAuth device flow, profiles, sessions).
# Built by tests/upstream/build-server.sh on a debootstrap base (no registry needed).
ARG BASE_IMAGE=hyos-upstream/server-base:bookworm
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="Hytale Server (TrueNAS Enterprise)" \
      org.opencontainers.image.description="Enterprise Hytale server for TrueNAS SCALE with Web UI support" \
      org.opencontainers.image.authors="HyOS Project" \
      io.hyos.replica.of="github.com/EditMySave/HyOS hytale-docker-server/config-truenas @ 2b6bf10431389023b7c5c16e1e771bdc38fa473c"

# Default UID/GID - TrueNAS typically uses 568 for apps
ARG PUID=568
ARG PGID=568

# Core environment
ENV PUID=${PUID} \
    PGID=${PGID} \
    HOME=/home/hytale \
    DATA_DIR=/data \
    SCRIPTS_DIR=/opt/scripts \
    UMASK=002

# Server defaults
ENV SERVER_PORT=5520 \
    ENABLE_AOT=true \
    DISABLE_SENTRY=false \
    PATCHLINE=release

# GC defaults
ENV USE_ZGC=false \
    G1_MAX_PAUSE=200

# Config generation defaults
ENV SKIP_CONFIG_GENERATION=false \
    SERVER_NAME="Hytale Server" \
    MAX_PLAYERS=100 \
    MAX_VIEW_RADIUS=32 \
    DEFAULT_WORLD=default \
    DEFAULT_GAMEMODE=Adventure

# API Plugin environment variables
# hadolint ignore=DL3064
ENV API_ENABLED=true \
    API_PORT=30381 \
    API_CLIENT_ID=hyos-manager \
    API_CLIENT_SECRET="" \
    API_WEBSOCKET_ENABLED=true

# Mod diagnostics
ENV DEBUG_CLASSLOADING=false \
    SKIP_BROKEN_MODS=false

# Auto-update configuration
ENV AUTO_UPDATE=false \
    AUTO_UPDATE_INTERVAL=3600 \
    AUTO_UPDATE_TIME="" \
    AUTO_UPDATE_RESTART=true \
    AUTO_UPDATE_BACKUP=true

# Replica only: curl reads /opt/hyos-fakes/curl/.curlrc, which connects Hytale's three
# cloud host names to the fake cloud on 127.0.0.1 (TLS still checked, against our CA).
ENV CURL_HOME=/opt/hyos-fakes/curl

# The runtime tools are in the base image (debootstrap --include, see build-server.sh):
# tini, gosu (as su-exec), curl, jq, zip, unzip, bash, coreutils, passwd, iproute2,
# apache2-utils, procps; plus python3 and openssl for the fakes. HyOS's Alpine paths:
RUN ln -s /usr/bin/tini /sbin/tini && ln -s /usr/sbin/gosu /usr/local/bin/su-exec

# Create app user with configurable UID/GID
# Replica: as busybox's `addgroup -g` and `adduser -D -h -u -G -s` make them on Alpine
# (gecos "Linux User,,,", a member of its group, home 2755).
RUN groupadd -g ${PGID} hytale && \
    useradd -l -m -d /home/hytale -u ${PUID} -g hytale -s /bin/bash -c 'Linux User,,,' hytale && \
    usermod -a -G hytale hytale && chmod 2755 /home/hytale

# Create directories
RUN mkdir -p /data /opt/scripts && \
    chown -R hytale:hytale /data

# The fakes: java and hytale-downloader on PATH, the fake cloud with its TLS certificate
# (signed by a CA made here, whose key is deleted; the CA joins the trust store), the
# native library java loads from its tmpdir, and the REST API plugin's jar.
COPY --chown=root:root fakes/ /opt/hyos-fakes/
WORKDIR /opt/hyos-fakes
RUN set -eu; \
    mkdir curl tls /opt/plugins; mv curlrc curl/.curlrc; ln -s hytale_cloud.py hytale-cloud; \
    ln -s /opt/hyos-fakes/fake_java.py /usr/local/bin/java; \
    ln -s /opt/hyos-fakes/hytale-downloader /usr/local/bin/hytale-downloader; \
    zip -qjX /opt/plugins/HytaleAPI.jar plugin/manifest.json
WORKDIR /opt/hyos-fakes/tls
RUN set -eu; \
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=HyOS replica fake Hytale CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        -keyout ca.key -out ca.crt 2>/dev/null; \
    openssl req -newkey rsa:2048 -nodes -subj "/CN=oauth.accounts.hytale.com" \
        -keyout cloud.key -out cloud.csr 2>/dev/null; \
    printf '%s\n' "subjectAltName=DNS:oauth.accounts.hytale.com,DNS:account-data.hytale.com,DNS:sessions.hytale.com" \
        "extendedKeyUsage=serverAuth" >ext; \
    openssl x509 -req -in cloud.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile ext -out cloud.crt 2>/dev/null; \
    cp ca.crt /usr/local/share/ca-certificates/hyos-replica-fake-hytale-ca.crt; \
    update-ca-certificates >/dev/null; \
    rm -f ca.key ca.srl cloud.csr ext; chmod 0644 cloud.key; \
    python3 -m compileall -q /opt/hyos-fakes

# HyOS's scripts, unmodified (already LF here, so no dos2unix; made executable below)
COPY --chown=root:root scripts/ /opt/scripts/

# HyOS copies its stub plugin class here (left out of the upstream copy: a placeholder)
COPY --chown=root:root stub/ /opt/stub/

# Ensure all scripts are executable
RUN chmod -R +x /opt/scripts/

# Set working directory
WORKDIR /data

# Expose UDP port (QUIC protocol) and API port (HTTP)
EXPOSE ${SERVER_PORT}/udp
EXPOSE ${API_PORT}/tcp

# Health check using new modular script
# hadolint ignore=DL3025
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD /opt/scripts/healthcheck.sh || exit 1

# Replica: Alpine's /bin/sh is busybox's ash (the supervisor's launcher shim runs in it);
# Debian's dash goes. Last, so the build's own RUN steps are not affected. /var/run is a
# link to /run on Debian as on Alpine.
COPY busybox /bin/busybox
RUN ["/bin/busybox", "ln", "-sf", "busybox", "/bin/sh"]
LABEL io.hyos.replica.layout="alpine"

# Use tini as init system; the replica starts the fake cloud before HyOS's command
ENTRYPOINT ["/sbin/tini", "--", "/opt/hyos-fakes/with-hytale-cloud"]
CMD ["/bin/bash", "/opt/scripts/entrypoint.sh"]
