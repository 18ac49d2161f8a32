#!/usr/bin/env bats
# Conformance: bare runc (no podman) with a config.json written here: podman's
# default capability set, a 64-hex id, a relative root.path, the hook as a
# prestart (or createRuntime) and poststop hook; poststop through `runc delete`.

load helpers

setup_file() {
  OSH_RUNTIME=runc osh_require
}

setup() {
  OSH_RUNTIME=runc osh_require
  ID=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  MID=${ID:0:32}
  BUNDLE=$BATS_TEST_TMPDIR/bundle
  mkdir -p "$BUNDLE"
}

# The shared checks run commands through osh_exec: here that is runc exec.
osh_exec() { osh_bounded runc exec "$ID" "$@"; }

teardown() {
  runc delete --force "$ID" >/dev/null 2>&1 || true
  mountpoint -q "$BUNDLE/rootfs" && umount "$BUNDLE/rootfs"
  rm -rf "/var/log/journal/$MID"
}

# write_config STAGE EXTRA_NAMESPACE: config.json in $BUNDLE (helpers.bash).
write_config() { osh_runc_config "$BUNDLE" "$ID" "$@"; }

# run_and_check CGROUPNS: boots, checks, stops with signal 37, deletes;
# asserts poststop.
run_and_check() {
  local before after state t0 t1 i
  mkdir -p "$BATS_TEST_TMPDIR/up" "$BATS_TEST_TMPDIR/work" "$BUNDLE/rootfs"
  mount -t overlay overlay -o "lowerdir=$OSH_ROOTFS,upperdir=$BATS_TEST_TMPDIR/up,workdir=$BATS_TEST_TMPDIR/work" "$BUNDLE/rootfs"
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
  echo "state=$state" >&2
  osh_bounded runc exec "$ID" systemctl --failed --no-legend >&2 || true
  [ "$state" = running ]
  osh_check_inside "$1"
  journalctl -D "/var/log/journal/$MID" --no-pager | grep -q 'Startup finished\|Reached target.*Multi-User'

  # runc wants the signal number: 37 is SIGRTMIN+3.
  local t2 t3
  t2=$(osh_now)
  runc kill "$ID" 37
  for ((i = 0; i < 100; i++)); do
    [ "$(runc state "$ID" 2>/dev/null | grep -o '"status": *"[a-z]*"' | grep -o '[a-z]*"$')" = 'stopped"' ] && break
    sleep 0.1
  done
  t3=$(osh_now)
  runc state "$ID" | grep -q '"status": *"stopped"'
  journalctl -D "/var/log/journal/$MID" --no-pager | grep -q 'systemd-halt.service\|Reached target.*System Shutdown'
  [ -s "$BUNDLE/rootfs/etc/machine-id" ]
  runc delete "$ID"
  [ ! -s "$BUNDLE/rootfs/etc/machine-id" ]   # poststop emptied it
  osh_assert_no_new_mounts "$before"
  echo "# runc $BATS_TEST_DESCRIPTION: running after $(osh_elapsed "$t0" "$t1") s, stop $(osh_elapsed "$t2" "$t3") s" >&3
}

@test "bare runc, prestart hook, host cgroupns: boots, stops on signal 37, poststop on delete" {
  write_config prestart
  run_and_check host
}

@test "bare runc, createRuntime hook, private cgroupns" {
  write_config createRuntime ', {"type": "cgroup"}'
  run_and_check private
  [ -z "$(ls /sys/fs/cgroup/systemd | grep "oci-systemd-hook-runc-${ID:0:12}")" ]
}
