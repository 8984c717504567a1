# Stand-in for ghcr.io/editmysave/hyos/manager, built FROM scratch with busybox-static.
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
RUN mkdir -p /data /www/api && echo ok > /www/api/health
COPY manager.sh healthcheck.sh /
ENV HEALTH_PORT=3000 HEALTH_PATH=/api/health
EXPOSE 3000/tcp
HEALTHCHECK --interval=1s --timeout=2s --start-period=1s --retries=2 CMD ["/bin/sh", "/healthcheck.sh"]
CMD ["/bin/sh", "/manager.sh"]
