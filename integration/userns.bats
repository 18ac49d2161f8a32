#!/usr/bin/env bats
# User namespaces: a systemd container with --uidmap boots with the hook.
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
}

teardown_file() { podman rmi -f localhost/osh-userns:latest >/dev/null 2>&1 || true; }
teardown() { osh_teardown; }

@test "--uidmap 0:100000:65536: boots, hook output owned by mapped root, stops on SIGRTMIN+3" {
  osh_podman_run --uidmap 0:100000:65536 --gidmap 0:100000:65536 localhost/osh-userns:latest /sbin/init
  osh_assert_booted
  [ "$(osh_exec stat -c %u:%g /run)" = 0:0 ]     # container root inside = 100000 on the host
  [ "$(osh_exec stat -c %u:%g /tmp)" = 0:0 ]
  # Owned by mapped root; journald inside then gives it its own
  # systemd-journal group, which is mapped too (100000 + its gid).
  read -r uid gid < <(stat -c '%u %g' "/var/log/journal/$MID")
  [ "$uid" = 100000 ] && [ "$gid" -ge 100000 ] && [ "$gid" -lt 165536 ] \
    || { echo "journal dir owner $uid:$gid" >&2; ls -lan "/var/log/journal/$MID" >&2; false; }
  [ "$(osh_exec cat /etc/machine-id)" = "$MID" ]
  cg=$(osh_exec awk -F: '$1 == "0" {print $3}' /proc/1/cgroup)
  [[ "$cg" == */init.scope ]]
  osh_stop
}
