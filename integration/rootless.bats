#!/usr/bin/env bats
# Rootless podman: a systemd container started by an unprivileged user boots
# with the hook. The hook then runs inside podman's user namespace, without
# root on the host: what it cannot do there (the per-container journal
# directory under /var/log/journal) it skips with one warning, and the rest
# (tmpfs, the cgroup tree, machine-id) is done as usual.
#
# Needs a unified (cgroup v2) host with systemd as PID 1, so that the user's
# systemd instance (lingering) delegates a cgroup subtree to podman: the QEMU
# VM runner runs this file on its unified layout. The test user, its
# subordinate ids, its linger and its containers are removed afterwards.

load helpers

OSH_RL_USER=osh-rootless

setup_file() {
  osh_require
  [ "$OSH_LAYOUT" = unified ] || { echo "rootless.bats needs a unified cgroup host (this one is $OSH_LAYOUT)" >&2; return 1; }
  [ "$(cat /proc/1/comm)" = systemd ] || { echo "rootless.bats needs systemd as PID 1 (a user instance delegates the cgroup)" >&2; return 1; }
  command -v newuidmap >/dev/null || { echo "rootless.bats needs newuidmap (package uidmap)" >&2; return 1; }
  id "$OSH_RL_USER" >/dev/null 2>&1 && { echo "user $OSH_RL_USER exists already; refusing to reuse it" >&2; return 1; }

  osh_save_subids
  useradd --create-home --shell /bin/sh "$OSH_RL_USER"
  # teardown_file removes the user only when this file made it.
  touch "$BATS_FILE_TMPDIR/user.created"
  echo "$OSH_RL_USER:700000:65536" >> /etc/subuid
  echo "$OSH_RL_USER:700000:65536" >> /etc/subgid
  uid=$(id -u "$OSH_RL_USER")
  export OSH_RL_UID=$uid
  loginctl enable-linger "$OSH_RL_USER"
  local i
  for ((i = 0; i < 120; i++)); do
    [ -S "/run/user/$uid/bus" ] && break
    sleep 0.5
  done
  [ -S "/run/user/$uid/bus" ] || { echo "the user's systemd instance did not start (no /run/user/$uid/bus)" >&2; return 1; }

  # `podman` for everything below, the shared helpers included: the real
  # one as the test user, in its session environment.
  mkdir -p "$BATS_FILE_TMPDIR/bin"
  cat > "$BATS_FILE_TMPDIR/bin/podman" <<EOF
#!/bin/sh
cd / && exec runuser -u $OSH_RL_USER -- env HOME=/home/$OSH_RL_USER XDG_RUNTIME_DIR=/run/user/$uid \
  DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus $(command -v podman) "\$@"
EOF
  chmod 755 "$BATS_FILE_TMPDIR/bin/podman"
  # The hooks dir must be readable by the user (bats' own tmpdir is not).
  OSH_HOOKS=$(mktemp -d /tmp/osh-rootless-hooks.XXXXXX)
  export OSH_HOOKS
  chmod 755 "$OSH_HOOKS"
  osh_hooks_dir "$OSH_HOOKS"
  chmod 644 "$OSH_HOOKS/oci-systemd-hook.json"
  export PATH="$BATS_FILE_TMPDIR/bin:$PATH"
  tar -C "$OSH_ROOTFS" -c . | podman import -q - localhost/osh-rootless:latest >/dev/null
}

teardown_file() {
  local rc=0 w=$BATS_FILE_TMPDIR/bin/podman i
  case "${OSH_HOOKS:-}" in /tmp/osh-rootless-hooks.*) rm -rf "$OSH_HOOKS" ;; esac
  if [ -f "$BATS_FILE_TMPDIR/user.created" ]; then
    # The user's containers and storage, through the wrapper only (never
    # root's podman).
    if [ -x "$w" ]; then
      osh_bounded "$w" rm -af -t 0 >/dev/null 2>&1 || true
      osh_bounded "$w" system reset -f >/dev/null 2>&1 || true
    fi
    loginctl disable-linger "$OSH_RL_USER" || true
    loginctl terminate-user "$OSH_RL_USER" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
      pgrep -u "$OSH_RL_USER" >/dev/null || break
      sleep 0.5
    done
    pkill -9 -u "$OSH_RL_USER" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
      pgrep -u "$OSH_RL_USER" >/dev/null || break
      sleep 0.5
    done
    userdel --force --remove "$OSH_RL_USER" || { echo "cannot remove the test user $OSH_RL_USER" >&2; rc=1; }
  fi
  osh_restore_subids
  return "$rc"
}

teardown() { osh_teardown; }

# rootless_case CGROUPNS: one rootless boot with --cgroupns=CGROUPNS.
rootless_case() {
  local since warnings
  since=$(date '+%Y-%m-%d %H:%M:%S')
  osh_podman_run --cgroupns="$1" localhost/osh-rootless:latest /sbin/init
  osh_assert_booted
  # The same mount table as a rootful boot: tmpfs, cgroup tree, machine-id.
  osh_check_inside "$1"

  # No host journal dir (the user may not create one under /var/log/journal),
  # and the hook said so in one warning, naming the step.
  [ ! -e "/var/log/journal/$MID" ]
  warnings=$(journalctl --since "$since" -t oci-systemd-hook -p warning --no-pager -o cat | grep -c "$MID") || true
  [ "$warnings" = 1 ] || { echo "hook warnings for $MID: $warnings" >&2; journalctl --since "$since" -t oci-systemd-hook --no-pager >&2; return 1; }

  # SIGRTMIN+3: systemd halts, exit code 0 (a SIGKILL after 10 s gives 137).
  osh_bounded podman stop -t "$OSH_STOP_GRACE" "$CID" >/dev/null
  [ "$(podman inspect -f '{{.State.ExitCode}}' "$CID")" = 0 ]
}

@test "rootless podman, cgroupns=private: boots to running, tmpfs/cgroup/machine-id done, journal dir skipped with one warning, stops on SIGRTMIN+3" {
  rootless_case private
}

@test "rootless podman, cgroupns=host: boots to running, tmpfs/cgroup/machine-id done, journal dir skipped with one warning, stops on SIGRTMIN+3" {
  rootless_case host
}
