#!/usr/bin/env bash
# Runs the bats conformance suite: podman with crun, podman with runc, bare
# runc, Docker and containerd through the runtime wrapper. The systemd rootfs is OSH_IMAGE (a podman image, mounted) when set,
# else the cached Debian rootfs from build-rootfs.sh. Used by `make
# integration`, by the Vagrant VM and by the QEMU VMs. Extra arguments go to
# bats (e.g. --filter REGEX).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${OSH_IMAGE:-}" ]; then
  OSH_ROOTFS=$(podman image mount "$OSH_IMAGE")
else
  OSH_ROOTFS=${OSH_ROOTFS:-$("$here/build-rootfs.sh")}
fi
export OSH_ROOTFS
status=0
for runtime in ${OSH_RUNTIMES:-crun runc}; do
  OSH_RUNTIME=$runtime bats --timing "$@" "$here/podman.bats" || status=1
done
if [[ " ${OSH_RUNTIMES:-crun runc} " == *" runc "* ]]; then
  bats --timing "$@" "$here/runc.bats" || status=1
fi
# Docker and containerd through the runtime wrapper (issue 12): its own
# dockerd and containerd from Debian's docker.io and containerd.
# OSH_DOCKER=0 leaves it out (the Fedora Vagrant VM has no docker.io).
if [ "${OSH_DOCKER:-1}" != 0 ]; then
  bats --timing "$@" "$here/docker.bats" || status=1
fi
# Load (issue: 20 parallel containers); OSH_LOAD=0 leaves it out (the VMs).
if [ "${OSH_LOAD:-20}" -gt 0 ]; then
  OSH_RUNTIME=crun bats --timing "$here/load.bats" || status=1
fi
exit "$status"
