#!/bin/sh
# Healthy while the API answers and nobody asked for unhealthy.
# (busybox-static wget crashes with -T; the engine enforces the timeout instead.)
[ ! -f /data/control/unhealthy ] && wget -q -O /dev/null "http://127.0.0.1:${HEALTH_PORT}${HEALTH_PATH}"
