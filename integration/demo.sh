#!/usr/bin/env bash
# The README's demo: set up the host, build the hook and a systemd rootfs,
# boot it under podman with the hook (crun, then runc), show what systemd
# says and what the hook mounted, stop it with SIGRTMIN+3 and show systemd's
# halt in the container's journal on the host. Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/setup-host.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$here/.."
echo "demo: building the hook (the first build takes about a minute)" >&2
cargo build --release --locked -q
rootfs=$("$here/build-rootfs.sh")
# shellcheck source=integration/lib.bash
. "$here/lib.bash"
hooks=$(mktemp -d /tmp/oci-systemd-hook-demo.XXXXXX)
id=""
# On any failure: no container or journal dir of the demo stays behind.
trap 'if [ -n "$id" ]; then podman rm -f -t 0 "$id" >/dev/null 2>&1; rm -rf "/var/log/journal/${id:0:32}"; fi; rm -rf "$hooks"' EXIT
osh_hooks_dir "$hooks"

for runtime in ${DEMO_RUNTIMES:-crun runc}; do
  echo
  echo "=== podman --runtime $runtime run --systemd=false --hooks-dir $hooks ... --rootfs $rootfs:O /sbin/init"
  t0=$(osh_now)
  id=$(podman --runtime "$runtime" --hooks-dir "$hooks" run -d "${OSH_PODMAN_ARGS[@]}" --rootfs "$rootfs:O" /sbin/init)
  mid=$(osh_machine_id "$id")
  state=$(osh_wait_running "$id" 90) || true
  t1=$(osh_now)
  echo "systemctl is-system-running: $state (after $(osh_elapsed "$t0" "$t1") s)"
  podman exec "$id" systemctl --failed --no-legend || true
  echo "--- mounts the hook made, seen from inside (topmost mount at each path)"
  declare -A seen=()
  cg=$(podman exec "$id" awk -F: '$2 == "name=systemd" || $1 == "0" {print $3; exit}' /proc/1/cgroup)
  for m in /run /run/lock /tmp "/var/log/journal/$mid" /sys/fs/cgroup/systemd "/sys/fs/cgroup/systemd${cg%/init.scope}" \
           /sys/fs/cgroup "/sys/fs/cgroup${cg%/init.scope}"; do
    [ -z "${seen[$m]:-}" ] || continue
    seen[$m]=1
    line=$(podman exec "$id" findmnt -n -o FSTYPE,OPTIONS --mountpoint "$m" | tail -n 1) || true
    if [ -n "$line" ]; then printf '%-40s %s\n' "$m" "$line"; fi
  done
  echo "(the v1 release_agent file is also masked with /dev/null)"
  echo "--- /etc/machine-id: $(podman exec "$id" cat /etc/machine-id)"
  t2=$(osh_now)
  podman stop -t 10 "$id" >/dev/null
  t3=$(osh_now)
  echo "--- podman stop (SIGRTMIN+3): exit code $(podman inspect -f '{{.State.ExitCode}}' "$id"), $(osh_elapsed "$t2" "$t3") s"
  echo "--- journalctl -D /var/log/journal/$mid (host), last lines"
  journalctl -D "/var/log/journal/$mid" --no-pager -o short | tail -n 6
  podman rm "$id" >/dev/null
  rm -rf "/var/log/journal/$mid"
  id=""
  [ "$state" = running ] || [ "$state" = degraded ] || { echo "demo: systemd did not boot under $runtime" >&2; exit 1; }
done
