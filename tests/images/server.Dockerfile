# Stand-in for ghcr.io/editmysave/hyos/server, built FROM scratch with busybox-static.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
# Where /var/run is: "link" to /run as in HyOS's Alpine images (and Debian's), a plain
# "dir", or "none" at all: every mount the supervisor adds is tested on each layout.
ARG VAR_RUN=link
RUN case "$VAR_RUN" in \
        link) mkdir -p /run /var && ln -s /run /var/run ;; \
        dir) mkdir -p /run /var/run ;; \
        none) ;; \
        *) echo "VAR_RUN=$VAR_RUN: expected link, dir or none" >&2; exit 1 ;; \
    esac
ARG DATA_OWNER=568:568
# No /tmp or $HOME in the image: the supervisor mounts uid-owned 0700 tmpfs there, and
# runc would copy an existing directory's mode onto the tmpfs.
RUN mkdir -p /data /www && echo ok > /www/health \
    && chown "$DATA_OWNER" /data && chmod 0755 /data
COPY server.sh healthcheck.sh /
ENV HOME=/home/hytale DATA_DIR=/data UMASK=002 HEALTH_PORT=30381 HEALTH_PATH=/health
EXPOSE 5520/udp 30381/tcp
WORKDIR /data
HEALTHCHECK --interval=1s --timeout=2s --start-period=1s --retries=2 CMD ["/bin/sh", "/healthcheck.sh"]
CMD ["/bin/sh", "/server.sh"]
