#!/usr/bin/env bats
# User namespaces: systemd containers with --uidmap and --userns=auto boot
# with the hook.
# Run by the QEMU VM runner on the unified (cgroup v2) layout; on a hybrid
# host systemd inside a user namespace cannot create its cgroup for reasons
# outside the hook (../shared/ENVIRONMENT.md), so `make integration` does not
# run this file.

load helpers

setup_file() {
  osh_require
  osh_setup_hooks
  [ "$OSH_LAYOUT" = unified ] || { echo "userns.bats needs a unified cgroup host (this one is $OSH_LAYOUT)" >&2; return 1; }
  # An imported image (podman can shift its layers), not a --rootfs directory.
  tar -C "$OSH_ROOTFS" -c . | podman import -q - localhost/osh-userns:latest >/dev/null
  # --userns=auto takes its ranges from the subordinate ids of the user
  # "containers"; give it some for this file and put the files back after.
  osh_save_subids
  local f
  for f in /etc/subuid /etc/subgid; do
    grep -q '^containers:' "$f" 2>/dev/null || echo "containers:300000:300000" >> "$f"
  done
}

teardown_file() {
  podman rmi -f localhost/osh-userns:latest >/dev/null 2>&1 || true
  osh_restore_subids
}
teardown() { osh_teardown; }

# osh_mapped_root: the host uid that root in the container maps to.
osh_mapped_root() {
  local pid
  pid=$(podman inspect -f '{{.State.Pid}}' "$CID")
  awk '$1 == 0 {print $2}' "/proc/$pid/uid_map"
}

# osh_assert_owned_by_mapped_root ROOT SIZE: the hook's output belongs to the
# mapped root: the tmpfs roots seen from inside as 0:0, the journal dir on
# the host as ROOT (its group: journald inside gives it its own mapped
# systemd-journal group, so any gid within the mapping).
osh_assert_owned_by_mapped_root() {
  local root=$1 size=$2 uid gid
  [ "$(osh_exec stat -c %u:%g /run)" = 0:0 ]
  [ "$(osh_exec stat -c %u:%g /tmp)" = 0:0 ]
  read -r uid gid < <(stat -c '%u %g' "/var/log/journal/$MID")
  [ "$uid" = "$root" ] && [ "$gid" -ge "$root" ] && [ "$gid" -lt $((root + size)) ] \
    || { echo "journal dir owner $uid:$gid, mapped root $root" >&2; ls -lan "/var/log/journal/$MID" >&2; false; }
}

@test "--uidmap 0:100000:65536: boots, hook output owned by mapped root, stops on SIGRTMIN+3" {
  osh_podman_run --uidmap 0:100000:65536 --gidmap 0:100000:65536 localhost/osh-userns:latest /sbin/init
  osh_assert_booted
  [ "$(osh_mapped_root)" = 100000 ]
  osh_check_inside private
  osh_assert_owned_by_mapped_root 100000 65536
  osh_stop
}

@test "--userns=auto (subordinate ids of the user containers): boots, hook output owned by mapped root, stops" {
  osh_podman_run --userns=auto localhost/osh-userns:latest /sbin/init
  osh_assert_booted
  root=$(osh_mapped_root)
  [ "$root" -ge 300000 ] && [ "$root" -lt 600000 ] || { echo "mapped root $root is not from containers' range" >&2; false; }
  size=$(awk '$1 == 0 {print $3}' "/proc/$(podman inspect -f '{{.State.Pid}}' "$CID")/uid_map")
  osh_check_inside private
  osh_assert_owned_by_mapped_root "$root" "$size"
  osh_stop
}
