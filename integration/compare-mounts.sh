#!/usr/bin/env bash
# Prints the mount table systemd gets inside a container with the hook
# (podman --systemd=false) and, for comparison, with podman's own systemd
# mode (--systemd=always) and no hook, same rootfs: the paths systemd cares
# about (/run, /run/lock, /tmp, /var/log/journal, /etc/machine-id,
# /sys/fs/cgroup). OSH_ROOTFS names the systemd rootfs. Run as root; removes
# its containers and journal dirs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=integration/lib.bash
. "$here/lib.bash"
rootfs=${OSH_ROOTFS:?set OSH_ROOTFS to a systemd rootfs}
hooks=$(mktemp -d /tmp/osh-compare.XXXXXX)
trap 'rm -rf "$hooks"' EXIT
osh_hooks_dir "$hooks/with"
mkdir -p "$hooks/without"
always=("${OSH_PODMAN_ARGS[@]}")
always[1]=--systemd=always
for mode in hook always; do
  if [ "$mode" = hook ]; then
    id=$(podman --hooks-dir "$hooks/with" run -d "${OSH_PODMAN_ARGS[@]}" --rootfs "$rootfs:O" /sbin/init)
  else
    id=$(podman --hooks-dir "$hooks/without" run -d "${always[@]}" --rootfs "$rootfs:O" /sbin/init)
  fi
  state=$(osh_wait_running "$id" 180) || true
  echo "== $mode: systemctl is-system-running: $state"
  osh_bounded podman exec "$id" findmnt -l -n -o TARGET,FSTYPE,OPTIONS |
    grep -E '^(/run|/run/lock|/tmp|/var/log/journal[^ ]*|/etc/machine-id|/sys/fs/cgroup[^ ]*) ' |
    sed -E 's/,(relatime|seclabel|discard|resv_strict|resuid=[0-9]+|resgid=[0-9]+)//g; s/libpod-([0-9a-f]{12})[0-9a-f]{52}/libpod-\1…/g' |
    awk '{printf "  %-58s %-8s %s\n", $1, $2, $3}'
  osh_bounded podman rm -f -t 10 "$id" >/dev/null
  rm -rf "/var/log/journal/${id:0:32}"
done
