#!/usr/bin/env bash
# Builds (once) a minimal systemd rootfs with mmdebstrap and prints its path.
#
# The suite is the host's own release (VERSION_CODENAME from /etc/os-release,
# e.g. bookworm on Debian 12) so that mmdebstrap can use the apt sources
# already configured on this machine; no mirror is named here. Set
# OSH_SUITE / OSH_MIRROR to build something else.
# The result is cached under OSH_CACHE (default /var/cache/oci-systemd-hook),
# keyed by suite and package list; /etc/machine-id in it is empty, as systemd
# images ship it. Containers use it through podman's `--rootfs DIR:O`
# overlay, so the cached tree stays clean.
set -euo pipefail

cache=${OSH_CACHE:-/var/cache/oci-systemd-hook}
. /etc/os-release
suite=${OSH_SUITE:-${VERSION_CODENAME:-bookworm}}
packages=systemd,systemd-sysv,dbus
key=$(printf '%s %s v1' "$suite" "$packages" | sha256sum | cut -c1-12)
out="$cache/rootfs-$suite-$key"

if [ -f "$out.done" ] && [ -x "$out/sbin/init" ]; then
  echo "$out"
  exit 0
fi

command -v mmdebstrap >/dev/null || { echo "build-rootfs: mmdebstrap missing (run integration/setup-host.sh)" >&2; exit 1; }
mkdir -p "$cache"
tmp="$out.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
echo "build-rootfs: building a $suite systemd rootfs in $out (about a minute)" >&2
# shellcheck disable=SC2086
mmdebstrap --variant=minbase --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$suite" "$tmp" ${OSH_MIRROR:-} >&2
: > "$tmp/etc/machine-id"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
touch "$out.done"
echo "$out"
