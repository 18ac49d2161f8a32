#!/usr/bin/env bash
# Builds (once) a minimal systemd rootfs with mmdebstrap and prints its path.
#
#   build-rootfs.sh [SUITE]
#
# SUITE is a Debian suite (bullseye, bookworm, trixie, sid, ...) or
# `services` (bookworm with apache2, openssh-server and cron enabled: an
# image whose services must all start). Default: OSH_SUITE, else the host's
# own release (VERSION_CODENAME from /etc/os-release, e.g. bookworm on
# Debian 12), for which mmdebstrap uses the apt sources already configured
# on this machine. For any other suite the mirror is the machine's own: the
# first non-security URI of its apt sources (/etc/apt/sources.list.d/*.sources
# or sources.list), read at run time; no mirror is named here. OSH_MIRROR
# overrides it. A Release file past its Valid-Until (sid on a snapshot
# mirror) is accepted for suites other than the host's.
# The result is cached under OSH_CACHE (default /var/cache/oci-systemd-hook),
# keyed by suite and package list; /etc/machine-id in it is empty, as systemd
# images ship it. Containers use it through an overlay (podman's
# `--rootfs DIR:O`), so the cached tree stays clean.
set -euo pipefail

cache=${OSH_CACHE:-/var/cache/oci-systemd-hook}
. /etc/os-release
host_suite=${VERSION_CODENAME:-bookworm}
suite=${1:-${OSH_SUITE:-$host_suite}}
packages=systemd,systemd-sysv,dbus
name=$suite
if [ "$suite" = services ]; then
  suite=bookworm
  packages=$packages,apache2,openssh-server,cron
fi
case "$suite" in *[!a-z0-9-]* | "") echo "build-rootfs: bad suite '$suite'" >&2; exit 2 ;; esac
key=$(printf '%s %s v1' "$suite" "$packages" | sha256sum | cut -c1-12)
out="$cache/rootfs-$name-$key"

if [ -f "$out.done" ] && [ -x "$out/sbin/init" ]; then
  echo "$out"
  exit 0
fi

args=(--variant=minbase --include="$packages"
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-exclude=/usr/share/locale/*')
mirror=""
if [ "$suite" != "$host_suite" ]; then
  mirror=$("$(dirname "$0")/host-mirror.sh")
  # Only the main archive: the host's -updates/-security lines name its own suite.
  args+=(--aptopt='Acquire::Check-Valid-Until "false"')
fi

command -v mmdebstrap >/dev/null || { echo "build-rootfs: mmdebstrap missing (run integration/setup-host.sh)" >&2; exit 1; }
mkdir -p "$cache"
tmp="$out.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
echo "build-rootfs: building a $name systemd rootfs in $out (about a minute)" >&2
# shellcheck disable=SC2086
mmdebstrap "${args[@]}" "$suite" "$tmp" $mirror >&2
: > "$tmp/etc/machine-id"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
touch "$out.done"
echo "$out"
