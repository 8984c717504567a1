#!/bin/sh
# Stand-in for the Hytale server: health on 30381, a world-save marker on SIGTERM,
# and control files in /data/control that make it crash, hang or turn unhealthy.
control=/data/control
mkdir -p "$control"
save() {
    echo "saved $(date +%s)" > /data/saved-marker
    echo "World saved, shutting down"
    # 0 by default; `term-exit` holding 143 makes it exit as the real Hytale server does.
    exit "$(cat "$control/term-exit" 2>/dev/null || echo 0)"
}
trap save TERM INT
httpd -f -p 30381 -h /www &
echo "stand-in server pid $$ uid $(id -u)"
# Like HyOS's image, it reads the API secret from the plain variable only.
echo "api client secret: ${API_CLIENT_SECRET:+set (${#API_CLIENT_SECRET} characters)}"
echo "Hytale Server Booted!"
while :; do
    if [ -f "$control/exit" ]; then
        code=$(cat "$control/exit")
        rm -f "$control/exit"
        echo "exiting with code $code as told"
        exit "$code"
    fi
    if [ -f "$control/hang" ] && [ -z "${hanging:-}" ]; then
        # Ignore SIGTERM from now on, like a JVM stuck in a save.
        trap '' TERM INT
        hanging=1
        echo "hanging: ignoring SIGTERM as told"
    fi
    sleep 0.5 &
    wait $!
done
