#!/usr/bin/env bash
# Fixes host quirks that break podman/crun, measured in ../shared/ENVIRONMENT.md.
# Needs only util-linux; used by setup-host.sh and inside the test VMs.
#
# 1. A hybrid host whose cgroup2 holds the hugetlb controller: crun refuses it
#    ("cgroups in hybrid mode not supported, drop all controllers from
#    cgroupv2"). Mounting hugetlb as a v1 hierarchy takes it away from cgroup2.
# 2. No CAP_SYS_RESOURCE in root's bounding set, so a runtime cannot raise
#    RLIMIT_NOFILE: not fixable on the host; integration/lib.bash asks podman
#    for limits that need no raise.
set -euo pipefail
if [ -f /sys/fs/cgroup/unified/cgroup.controllers ] \
   && grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers \
   && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
  echo "host-quirks: mounting the v1 hugetlb hierarchy so that crun accepts this hybrid host" >&2
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi
