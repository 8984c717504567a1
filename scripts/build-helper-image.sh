#!/bin/sh
# Kept for callers of the old name: the helper image is the supervisor image.
exec "$(cd "$(dirname "$0")" && pwd)/build-image.sh" "$@"
