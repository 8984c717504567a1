# Stand-in for ghcr.io/editmysave/hyos/manager, built FROM scratch with busybox-static.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /data /www/api && echo ok > /www/api/health
COPY manager.sh healthcheck.sh /
ENV HEALTH_PORT=3000 HEALTH_PATH=/api/health
EXPOSE 3000/tcp
HEALTHCHECK --interval=1s --timeout=2s --start-period=1s --retries=2 CMD ["/bin/sh", "/healthcheck.sh"]
CMD ["/bin/sh", "/manager.sh"]
