#!/usr/bin/env bash
# Prints this machine's own Debian mirror: OSH_MIRROR if set, else the first
# URI of a deb source that is not a security archive (deb822
# /etc/apt/sources.list.d/*.sources first, then one-line sources.list).
# Read at run time so that no mirror host is ever written into the repo.
# Used by build-rootfs.sh and vm/build-image.sh for suites other than the
# host's. Exit 1 with a message when there is none.
set -euo pipefail
if [ -n "${OSH_MIRROR:-}" ]; then echo "$OSH_MIRROR"; exit 0; fi
m=$(
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) print $i; break } }' "$f"
  done
)
m=$(printf '%s\n' "$m" | sed -n '1{/./p}')
[ -n "$m" ] || { echo "host-mirror: no mirror in this machine's apt sources; set OSH_MIRROR" >&2; exit 1; }
echo "$m"
