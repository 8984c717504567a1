#!/bin/sh
# Stand-in for the HyOS dashboard: /api/health on 3000.
echo "stand-in manager uid $(id -u)"
exec httpd -f -p 3000 -h /www
