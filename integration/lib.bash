# Helpers shared by integration/demo.sh and the bats suite. Source it.
# shellcheck shell=bash

OSH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The build's tuple (.cargo/config.toml builds for rustc's host): rustc's, or
# where there is no rustc (the VM guests), that of a linux-gnu host.
osh_tuple() {
  local t
  t=$({ rustc -vV || "$HOME/.cargo/bin/rustc" -vV; } 2>/dev/null | sed -n 's/^host: //p')
  echo "${t:-$(uname -m)-unknown-linux-gnu}"
}
OSH_HOOK=${OSH_HOOK:-$OSH_ROOT/target/$(osh_tuple)/release/oci-systemd-hook}

# podman flags every hook container needs: podman's own systemd mode off (the
# hook does its work), the stop signal systemd wants, no network (the demo and
# tests need none).
OSH_PODMAN_ARGS=(--network=none --systemd=false -e container=oci --stop-signal=SIGRTMIN+3)
# Host quirk (../shared/ENVIRONMENT.md): without CAP_SYS_RESOURCE in the
# bounding set the runtime cannot raise RLIMIT_NOFILE above the current hard
# limit; ask for limits that need no raise.
osh_capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if (( (16#$osh_capbnd >> 24 & 1) == 0 )); then
  OSH_PODMAN_ARGS+=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
fi

# osh_hooks_dir DIR: writes a hooks.d descriptor for the built hook into DIR.
osh_hooks_dir() {
  mkdir -p "$1"
  sed "s|/usr/libexec/oci/hooks.d/oci-systemd-hook|$OSH_HOOK|" \
    "$OSH_ROOT/hooks.d/oci-systemd-hook.json" > "$1/oci-systemd-hook.json"
}

# Hang guard for one podman or runc command that talks to a running
# container (exec, stop, wait): a command that hangs (seen under QEMU TCG)
# fails the case after OSH_CMD_TIMEOUT seconds instead of stalling the whole
# suite. Not a timing check: legitimate calls take seconds.
OSH_CMD_TIMEOUT=${OSH_CMD_TIMEOUT:-180}

# osh_bounded CMD...: CMD under the hang guard; exit 124 when it hung.
osh_bounded() { timeout -k 10 "$OSH_CMD_TIMEOUT" "$@"; }

# osh_wait_running ID [SECONDS]: polls systemctl is-system-running inside the
# container until it settles; prints the last state; fails on timeout or when
# the container is gone.
osh_wait_running() {
  local id=$1 limit=${2:-90} state="" i
  for ((i = 0; i < limit * 2; i++)); do
    state=$(osh_bounded podman exec "$id" systemctl is-system-running 2>/dev/null) || true
    case "$state" in
      running | degraded) echo "$state"; return 0 ;;
    esac
    [ "$(podman inspect -f '{{.State.Running}}' "$id" 2>/dev/null)" = true ] || { echo "exited"; return 1; }
    sleep 0.5
  done
  echo "${state:-unknown}"
  return 1
}

# osh_machine_id ID: the machine-id the hook derives for a podman id.
osh_machine_id() { printf '%s\n' "${1:0:32}"; }

# osh_now: seconds since the epoch with milliseconds.
osh_now() { date +%s.%3N; }

# osh_elapsed T0 T1: T1 - T0 in seconds, two decimals.
osh_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
