#!/usr/bin/env bats
# Debian suites, one systemd generation each (bullseye 247, bookworm 252,
# trixie 257, sid 262: integration/build-rootfs.sh SUITE), booted under podman
# with crun, podman with runc and bare runc: `running` (not degraded), the
# cgroup tree the rule table gives this host and image, stop exit 0, nothing
# left on the host (mounts, cgroups). Plus the bookworm "services" image
# (apache2, openssh-server, cron) under podman+crun. Expectations that
# depend on the image come from the image (its systemd version, its
# tmpfiles /run/lock mode). Each case reports its times to fd 3, and appends
# "image runtime state running_s stop_s" to $OSH_SUITES_REPORT when set.

load helpers

setup_file() {
  OSH_RUNTIME=crun osh_require_host
  osh_setup_hooks
  # Built once and cached; on a cold cache the builds run side by side
  # (mostly downloads), each logging to its own file.
  local s pids=() failed=0
  for s in bullseye bookworm trixie sid services; do
    "$BATS_TEST_DIRNAME/build-rootfs.sh" "$s" >"$BATS_FILE_TMPDIR/build-$s.log" 2>&1 &
    pids+=($!)
  done
  for s in "${pids[@]}"; do wait "$s" || failed=1; done
  if [ "$failed" = 1 ]; then
    tail -n 5 "$BATS_FILE_TMPDIR"/build-*.log >&2
    return 1
  fi
}

setup() { osh_require_host; }

teardown() {
  osh_teardown
  if [ -n "${ID:-}" ]; then
    runc delete --force "$ID" >/dev/null 2>&1 || true
    mountpoint -q "$BUNDLE/rootfs" && umount "$BUNDLE/rootfs"
    rm -rf "/var/log/journal/${ID:0:32}"
  fi
  return 0
}

# osh_require without OSH_ROOTFS: the images come from build-rootfs.sh.
osh_require_host() {
  [ "$(id -u)" = 0 ] || { echo "the integration suite needs root" >&2; return 1; }
  [ -x "$OSH_HOOK" ] || { echo "hook binary $OSH_HOOK missing (make build)" >&2; return 1; }
  command -v podman runc crun >/dev/null || { echo "podman, runc, crun needed" >&2; return 1; }
}

# host_cgroups ID12: cgroup directories of any hierarchy on the host whose
# name holds ID12.
host_cgroups() { find /sys/fs/cgroup -maxdepth 4 -type d -name "*$1*" 2>/dev/null; }

report() {
  echo "# $1 $2: $3, running after $4 s, stop $5 s" >&3
  [ -z "${OSH_SUITES_REPORT:-}" ] || echo "$1 $2 $3 $4 $5" >> "$OSH_SUITES_REPORT"
}

# inside_checks ROOTFS [CGROUPNS]: the state and mounts inside, through
# osh_exec: the tree the rule table gives (tmpfs of v1 hierarchies or
# cgroup2), the /run/lock mode the image's tmpfiles give, and the shared
# checks of osh_check_inside (own cgroup writable, the rest not, ...).
inside_checks() {
  local fs lock
  OSH_ROOTFS=$1 osh_check_inside "${2:-host}"
  fs=$(osh_exec stat -fc %T /sys/fs/cgroup)
  case "$(osh_expected_tree "$1")" in
    v1) [ "$fs" = tmpfs ] ;;
    *) [ "$fs" = cgroup2fs ] ;;
  esac || { echo "/sys/fs/cgroup is $fs, want the $(osh_expected_tree "$1") tree" >&2; return 1; }
  lock=$(osh_exec stat -c %a /run/lock)
  [ "$lock" = "$(osh_expected_lock_mode "$1")" ] || { echo "/run/lock mode $lock" >&2; return 1; }
  [ "$(osh_exec cat /etc/machine-id)" = "$MID" ]
}

# podman_case SUITE RUNTIME [CGROUPNS]: boot, running, checks, stop exit 0,
# rm, nothing left.
podman_case() {
  local suite=$1 rootfs before t0 t1 state
  OSH_RUNTIME=$2
  rootfs=$("$BATS_TEST_DIRNAME/build-rootfs.sh" "$suite")
  before=$(osh_host_mounts)
  t0=$(osh_now)
  osh_podman_run --name "cgmodel-$suite-$2-$$" --cgroupns="${3:-host}" --rootfs "$rootfs:O" /sbin/init
  state=$(osh_wait_running "$CID" 90) || true
  t1=$(osh_now)
  if [ "$state" != running ]; then
    echo "state $state; failed units:" >&2
    osh_exec systemctl --failed --no-legend --plain >&2 || true
    podman logs "$CID" 2>&1 | tail -n 20 >&2 || true
    return 1
  fi
  inside_checks "$rootfs" "${3:-host}"
  if [ "$suite" = services ]; then
    osh_exec systemctl is-active apache2.service ssh.service cron.service >&2
  fi
  osh_stop
  podman rm "$CID" >/dev/null
  osh_assert_no_new_mounts "$before"
  [ -z "$(host_cgroups "${CID:0:12}")" ] || { echo "cgroups left: $(host_cgroups "${CID:0:12}")" >&2; return 1; }
  report "$suite${3:+ cgroupns=$3}" "podman+$2" "$state" "$(osh_elapsed "$t0" "$t1")" "$STOP_SECONDS"
}

# runc_case SUITE: bare runc with the hook as prestart and poststop.
runc_case() {
  local suite=$1 rootfs before t0 t1 t2 t3 state i
  rootfs=$("$BATS_TEST_DIRNAME/build-rootfs.sh" "$suite")
  ID=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  MID=${ID:0:32}
  BUNDLE=$BATS_TEST_TMPDIR/bundle
  mkdir -p "$BATS_TEST_TMPDIR/up" "$BATS_TEST_TMPDIR/work" "$BUNDLE/rootfs"
  osh_runc_config "$BUNDLE" "$ID" prestart
  mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$BATS_TEST_TMPDIR/up,workdir=$BATS_TEST_TMPDIR/work" "$BUNDLE/rootfs"
  before=$(osh_host_mounts)
  t0=$(osh_now)
  (cd "$BUNDLE" && runc run -d "$ID" </dev/null >"$BATS_TEST_TMPDIR/console.log" 2>&1) \
    || { echo "runc run failed:" >&2; cat "$BATS_TEST_TMPDIR/console.log" >&2; return 1; }
  state=""
  for ((i = 0; i < 180; i++)); do
    state=$(osh_bounded runc exec "$ID" systemctl is-system-running 2>/dev/null) || true
    [ "$state" = running ] || [ "$state" = degraded ] && break
    sleep 0.5
  done
  t1=$(osh_now)
  if [ "$state" != running ]; then
    echo "state '$state'; failed units:" >&2
    osh_bounded runc exec "$ID" systemctl --failed --no-legend --plain >&2 || true
    cat "$BATS_TEST_TMPDIR/console.log" >&2
    return 1
  fi
  inside_checks "$rootfs"
  t2=$(osh_now)
  runc kill "$ID" 37
  for ((i = 0; i < 200; i++)); do
    runc state "$ID" 2>/dev/null | grep -q '"status": *"stopped"' && break
    sleep 0.1
  done
  t3=$(osh_now)
  runc state "$ID" | grep -q '"status": *"stopped"'
  journalctl -D "/var/log/journal/$MID" --no-pager | grep -q 'systemd-halt.service\|Reached target.*Shutdown\|Starting Halt'
  runc delete "$ID"
  [ ! -s "$BUNDLE/rootfs/etc/machine-id" ]
  osh_assert_no_new_mounts "$before"
  [ -z "$(host_cgroups "${ID:0:12}")" ] || { echo "cgroups left: $(host_cgroups "${ID:0:12}")" >&2; return 1; }
  report "$suite" runc "$state" "$(osh_elapsed "$t0" "$t1")" "$(osh_elapsed "$t2" "$t3")"
}

# runc exec for the shared checks in runc cases, podman exec otherwise.
osh_exec() {
  if [ -n "${ID:-}" ]; then osh_bounded runc exec "$ID" "$@"; else osh_bounded podman exec "$CID" "$@"; fi
}

@test "sid (systemd 262): podman+crun" { podman_case sid crun; }
@test "sid (systemd 262): podman+crun, cgroupns=private" { podman_case sid crun private; }
@test "sid (systemd 262): podman+runc" { podman_case sid runc; }
@test "sid (systemd 262): bare runc" { runc_case sid; }
@test "trixie (systemd 257): podman+crun" { podman_case trixie crun; }
@test "trixie (systemd 257): podman+runc" { podman_case trixie runc; }
@test "trixie (systemd 257): bare runc" { runc_case trixie; }
@test "bookworm (systemd 252): podman+crun" { podman_case bookworm crun; }
@test "bookworm (systemd 252): podman+runc" { podman_case bookworm runc; }
@test "bookworm (systemd 252): bare runc" { runc_case bookworm; }
@test "bullseye (systemd 247): podman+crun" { podman_case bullseye crun; }
@test "bullseye (systemd 247): podman+runc" { podman_case bullseye runc; }
@test "bullseye (systemd 247): bare runc" { runc_case bullseye; }

@test "services (bookworm + apache2, openssh-server, cron): podman+crun, every service up" {
  podman_case services crun
}
