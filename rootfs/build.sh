#!/usr/bin/env bash
# Builds the default busybox root filesystem into this directory (rootfs/), from
# Debian's busybox-static: busybox, a link per applet, /etc/passwd, /etc/group,
# /etc/hostname, and the empty directories minibox mounts over. Same as
# `minibox mkrootfs rootfs`; needs `bash .ci/setup` (or an installed minibox) first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
if [ -x "$repo/.venv/bin/minibox" ]; then
    exec "$repo/.venv/bin/minibox" mkrootfs "$here"
fi
exec minibox mkrootfs "$here"
