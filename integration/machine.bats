#!/usr/bin/env bats
# The container as a machine of systemd-machined (issue 14): machinectl,
# journalctl -M and systemctl -M on a host booted with systemd. Needs systemd
# as PID 1 and machined (the systemd-container package): the VMs
# (integration/vm, runs machine-crun and machine-runc), not the development
# host. OSH_RUNTIME selects the OCI runtime; OSH_ROOTFS the systemd rootfs
# (which has dbus, for systemctl -M).

load helpers

setup_file() {
  osh_require
  [ -d /run/systemd/system ] || { echo "machine.bats needs systemd as PID 1 (run it in the VMs)" >&2; return 1; }
  command -v machinectl >/dev/null || { echo "machinectl missing: install systemd-container" >&2; return 1; }
  osh_setup_hooks
}

setup() { osh_require; }
teardown() { osh_teardown; }

report() { echo "# $OSH_RUNTIME $BATS_TEST_DESCRIPTION: $*" >&3; }

# machine_gone NAME: waits (hang guard, not a timing check) until machined
# no longer lists NAME; fails with what it still shows.
machine_gone() {
  local i
  for ((i = 0; i < 120; i++)); do
    machinectl show "$1" >/dev/null 2>&1 || return 0
    sleep 0.5
  done
  echo "machined still has $1:" >&2
  machinectl status "$1" --no-pager >&2 || true
  return 1
}

# hook_lines STAGE: the hook's journal records for this container and stage.
hook_lines() {
  journalctl -b --no-pager -o cat -t oci-systemd-hook OCI_CONTAINER_ID="$CID" OCI_STAGE="$1"
}

@test "registered at prestart: machinectl list, show and status, journalctl -M -b, systemctl -M; gone after podman stop" {
  osh_podman_run --rootfs "$OSH_ROOTFS:O" /sbin/init
  osh_assert_booted
  local pid state
  pid=$(podman inspect -f '{{.State.Pid}}' "$CID")

  # machinectl list: the machine-id as its name, class container.
  machinectl list --no-legend --no-pager | awk -v m="$MID" '$1 == m && $2 == "container" {f = 1} END {exit !f}' \
    || { machinectl list --no-pager >&2; return 1; }
  [ "$(machinectl show "$MID" -p Class --value)" = container ]
  [ "$(machinectl show "$MID" -p Leader --value)" = "$pid" ]
  [ "$(machinectl show "$MID" -p Service --value)" = oci ]   # OSH_PODMAN_ARGS: -e container=oci
  [ "$(machinectl show "$MID" -p Id --value)" = "$MID" ]
  [ "$(machinectl show "$MID" -p State --value)" = running ]
  machinectl status "$MID" --no-pager | grep -q "Leader: $pid"
  hook_lines prestart | grep -q "registered as machine $MID with systemd-machined"

  # journalctl -M reads the container's journal (the host dir the hook binds).
  journalctl -M "$MID" -b --no-pager | grep -q 'Reached target.*Multi-User\|Startup finished'

  # systemctl -M reaches the container's own systemd through its dbus.
  state=$(osh_bounded systemctl -M "$MID" is-system-running) || true
  [ "$state" = "$(osh_exec systemctl is-system-running)" ] || { echo "systemctl -M: '$state'" >&2; return 1; }
  [[ "$state" == running || "$state" == degraded ]]

  # What a user sees, into the TAP output as comments (the README quotes it).
  { echo "\$ machinectl list"; machinectl list --no-pager
    echo "\$ journalctl -M $MID -b | tail -n 3"; journalctl -M "$MID" -b --no-pager | tail -n 3
  } | sed 's/^/# /' >&3

  osh_stop
  machine_gone "$MID"
  if hook_lines poststop | grep -i 'warn\|error\|cannot' >&2; then return 1; fi
  report "leader $pid, systemctl -M: $state"
}

@test "podman rm -f of a running container: machined drops it, poststop exits 0" {
  osh_podman_run --rootfs "$OSH_ROOTFS:O" /sbin/init
  osh_assert_booted
  machinectl show "$MID" >/dev/null
  podman rm -f -t 0 "$CID" >/dev/null
  machine_gone "$MID"
  # Poststop ran to its end ("cleaned ...") without a warning or an error.
  hook_lines poststop | grep -q '^.* poststop: cleaned '
  [ -z "$(journalctl -b --no-pager -o cat -p warning -t oci-systemd-hook OCI_CONTAINER_ID="$CID")" ]
}

@test "a name from the annotation; OCI_SYSTEMD_HOOK_MACHINE=0 leaves the container unregistered" {
  local name=osh-machine-$$
  osh_podman_run --annotation "io.github.oci-systemd-hook.machine-name=$name" --rootfs "$OSH_ROOTFS:O" /sbin/init
  osh_assert_booted
  [ "$(machinectl show "$name" -p Id --value)" = "$MID" ]
  if machinectl show "$MID" >/dev/null 2>&1; then echo "also registered as $MID" >&2; return 1; fi
  journalctl -M "$name" -b --no-pager | grep -q 'Reached target.*Multi-User\|Startup finished'
  osh_stop
  machine_gone "$name"

  osh_podman_run -e OCI_SYSTEMD_HOOK_MACHINE=0 --rootfs "$OSH_ROOTFS:O" /sbin/init
  osh_assert_booted
  if machinectl show "$MID" >/dev/null 2>&1; then echo "registered despite the opt-out" >&2; return 1; fi
  hook_lines prestart | grep -q 'systemd-machined registration: OCI_SYSTEMD_HOOK_MACHINE turns it off in process.env'
  osh_stop
}
