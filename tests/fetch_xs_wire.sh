#!/bin/sh
# Fetch Debian's libxen-dev (Xen 4.17) and print the path of its xs_wire.h,
# so that the protocol constants are checked against the real header.
set -eu
DEST="${PYXS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pyxs}/libxen-dev"
HDR="$DEST/root/usr/include/xen/io/xs_wire.h"
if [ ! -f "$HDR" ]; then
    mkdir -p "$DEST"
    cd "$DEST"
    if ! apt-get download libxen-dev >/dev/null 2>&1; then
        apt-get update >/dev/null 2>&1 || true
        apt-get download libxen-dev >/dev/null
    fi
    dpkg -x ./libxen-dev_*.deb root
fi
echo "$HDR"
