#!/usr/bin/env bats
# Conformance: real systemd containers under podman with the hook.
# OSH_RUNTIME selects the OCI runtime (crun, runc); OSH_ROOTFS the systemd rootfs.

load helpers

setup_file() {
  osh_require
  osh_setup_hooks
  # Warm podman up so that its one-time mounts are not counted as leaks.
  podman --runtime "$OSH_RUNTIME" run --rm --network=none "${OSH_PODMAN_ARGS[@]:4}" --rootfs "$OSH_ROOTFS:O" /bin/true
}

setup() { osh_require; }
teardown() { osh_teardown; }

report() { echo "# $OSH_RUNTIME $BATS_TEST_DESCRIPTION: $*" >&3; }

# boot_case CGROUPNS: the full case for one cell of the matrix.
boot_case() {
  local before after t0 t1
  before=$(osh_host_mounts)
  t0=$(osh_now)
  osh_podman_run --cgroupns="$1" --memory 512m --rootfs "$OSH_ROOTFS:O" /sbin/init
  osh_assert_booted
  t1=$(osh_now)
  osh_check_inside "$1"
  osh_check_selinux
  [[ "${OSH_FACTS[mount:/tmp]}" == *size=262144k* ]]   # half of --memory 512m

  # The host sees this boot in the container's journal.
  journalctl -D "/var/log/journal/$MID" --no-pager | grep -q 'Reached target.*Multi-User\|Startup finished'

  osh_stop
  podman rm "$CID" >/dev/null
  osh_assert_no_new_mounts "$before"
  report "running after $(osh_elapsed "$t0" "$t1") s, stop $STOP_SECONDS s"
}

@test "cgroupns=host: boots to running, mounts as designed, stops on SIGRTMIN+3, leaves no mount behind" {
  boot_case host
}

@test "cgroupns=private: boots to running, mounts as designed, stops on SIGRTMIN+3, leaves no mount behind" {
  boot_case private
}

@test "image content in /run and /tmp is copied up; volumes and binds under /run stay with their mode" {
  seed=$BATS_TEST_TMPDIR/img-seed
  mkdir -p "$seed/run/app" "$seed/tmp" "$seed/etc/tmpfiles.d"
  # systemd-tmpfiles empties /tmp at boot (tmp.conf: "D /tmp"); an image
  # that wants its /tmp content kept says so.
  echo 'd /tmp 1777 root root -' > "$seed/etc/tmpfiles.d/tmp.conf"
  echo run-seed > "$seed/run/app/seed"
  echo tmp-seed > "$seed/tmp/seed"
  rootfs=$(osh_overlay img)
  vol=$BATS_TEST_TMPDIR/vol; mkdir -p "$vol"; echo s3cret > "$vol/key"
  sock=$BATS_TEST_TMPDIR/app.sock; : > "$sock"
  osh_podman_run -v "$vol:/run/secrets/app:ro" -v "$sock:/run/app.sock" --rootfs "$rootfs" /sbin/init
  osh_assert_booted
  [ "$(osh_exec cat /run/app/seed)" = run-seed ]
  [ "$(osh_exec cat /tmp/seed)" = tmp-seed ]
  [ "$(osh_exec cat /run/secrets/app/key)" = s3cret ]
  [[ "$(osh_mount /run/secrets/app)" == *\ ro,* ]]
  [[ "$(osh_mount /run/app.sock)" == *\ rw,* ]]
  osh_exec sh -c 'echo hi > /run/app.sock'
  [ "$(cat "$sock")" = hi ]
  [ -e "$rootfs/run/.containerenv" ] || osh_exec test -e /run/.containerenv
  osh_stop
  podman rm "$CID" >/dev/null
  # poststop emptied the machine-id in the surviving rootfs.
  [ ! -s "$rootfs/etc/machine-id" ]
}

@test "--read-only: boots without writing the machine-id into the image" {
  rootfs=$(osh_overlay ro)
  osh_podman_run --read-only --rootfs "$rootfs" /sbin/init
  osh_assert_booted
  [ "$(osh_exec cat /etc/machine-id)" = "$MID" ]
  [ ! -s "$rootfs/etc/machine-id" ]
  [ ! -e "$BATS_TEST_TMPDIR/ro/upper/etc/machine-id" ]
  osh_stop
}

@test "left alone: oci-systemd-hook=disabled" {
  rootfs=$(osh_overlay off)
  OSH_HOOKS_DIR_OVERRIDE=$OSH_HOOKS_ALWAYS osh_podman_run -e oci-systemd-hook=disabled --rootfs "$rootfs" /sbin/init
  # Without the hook's mounts systemd cannot boot (ENVIRONMENT.md: "Failed to
  # mount tmpfs at /run") and exits; the hook itself succeeded, or podman run
  # would have failed.
  osh_bounded podman wait "$CID" >/dev/null
  [ "$(podman inspect -f '{{.State.ExitCode}}' "$CID")" != 0 ]
  [ ! -e "/var/log/journal/$MID" ]
  [ ! -e "$BATS_TEST_TMPDIR/off/upper/etc/machine-id" ]
  [ ! -e "$BATS_TEST_TMPDIR/off/upper/var/log/journal" ]
}

@test "left alone: a sleep container, even with a hook that is always called" {
  rootfs=$(osh_overlay sleep)
  OSH_HOOKS_DIR_OVERRIDE=$OSH_HOOKS_ALWAYS osh_podman_run --rootfs "$rootfs" /bin/sleep 60
  osh_exec true
  osh_refute osh_exec findmnt --mountpoint /run
  osh_refute osh_exec findmnt --mountpoint /tmp
  [ ! -e "/var/log/journal/$MID" ]
  [ ! -e "$BATS_TEST_TMPDIR/sleep/upper/etc/machine-id" ]
}

@test "left alone: podman --init (the init shim as args[0]), even with a hook that is always called" {
  OSH_HOOKS_DIR_OVERRIDE=$OSH_HOOKS_ALWAYS osh_podman_run --init --rootfs "$OSH_ROOTFS:O" /bin/sleep 60
  args0=$(podman inspect -f '{{.Path}}' "$CID")   # process.args[0] of the OCI config
  [[ "$args0" == /dev/init || "$args0" == */podman-init ]]
  osh_exec true
  osh_refute osh_exec findmnt --mountpoint /run
  [ ! -e "/var/log/journal/$MID" ]
}

@test "explain: prints the plan for a real podman bundle and touches nothing" {
  CID=$(podman --runtime "$OSH_RUNTIME" create "${OSH_PODMAN_ARGS[@]}" --rootfs "$OSH_ROOTFS:O" /sbin/init)
  echo "$CID" >> "$BATS_TEST_TMPDIR/containers"
  podman init "$CID" >/dev/null
  bundle=$(dirname "$(podman inspect -f '{{.OCIConfigPath}}' "$CID")")
  pid=$(podman inspect -f '{{.State.Pid}}' "$CID")
  before=$(osh_host_mounts)
  run "$OSH_HOOK" explain --bundle "$bundle" --pid "$pid"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"decision: prepare for systemd, machine-id ${CID:0:32}"* ]]
  [[ "$output" == *"mount tmpfs on /run mode 755"* ]]
  [[ "$output" == *"on /sys/fs/cgroup"* ]]
  # The image's systemd found although the created container has already
  # entered its rootfs (the host path of the rootfs is not in its root).
  [[ "$output" == *"image:    systemd "[0-9]*" (libsystemd-shared-"* ]]
  [ ! -e "/var/log/journal/${CID:0:32}" ]
  osh_assert_no_new_mounts "$before"
  # Nothing mounted in the container's namespace either.
  rootfs=$(sed -n 's/^rootfs: *//p' <<<"$output")
  [ -n "$rootfs" ]
  [ -z "$(nsenter -t "$pid" -m findmnt -n --mountpoint "$rootfs/run" || true)" ]
}
