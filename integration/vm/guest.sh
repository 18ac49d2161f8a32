#!/usr/bin/env bash
# Runs inside a test VM (see run.sh): osh-vm.service in the image unpacks the
# input disk (/dev/vdb: the hook binary, integration/, hooks.d/, vm-params)
# and execs this script after multi-user.target. It checks that the guest has
# the cgroup layout run.sh asked for, runs integration/host-quirks.sh and the
# runs vm-params names (podman.bats, runc.bats, machine.bats, docker.bats,
# userns.bats, rootless.bats, compare-mounts.sh), collects evidence
# when something fails, and writes everything as a tar onto /dev/vdc. The VM
# powers off when the unit ends. Console lines starting with OSH-VM are
# markers run.sh reads from the serial log.
set -uo pipefail

work=$(cd "$(dirname "$0")/../.." && pwd)
out=/var/lib/osh-vm/out
rootfs=/var/lib/oci-systemd-hook/rootfs
rootfs_sid=/var/lib/oci-systemd-hook/rootfs-sid
export HOME=/root
# OSH_VM_LAYOUT, OSH_VM_FILTER, OSH_VM_MACHINE_FILTER, OSH_VM_RUNS
# shellcheck source=/dev/null
. "$work/vm-params"

rm -rf "$out"
mkdir -p "$out"

now() { awk '{print $1}' /proc/uptime; }

observed_layout() {
  case "$(stat -fc %T /sys/fs/cgroup)" in
    cgroup2fs) echo unified ;;
    tmpfs) if [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then echo hybrid; else echo legacy; fi ;;
    *) echo "unknown:$(stat -fc %T /sys/fs/cgroup)" ;;
  esac
}

# diag_podman RUNTIME CGROUPNS: boots one container with the hook at debug log
# level outside bats (whose teardown removes everything) and records what a
# failure report needs: podman's stderr (the hook's stderr on a prestart
# failure), the mount table, /proc/1/cgroup and failed units inside, the
# container's console and journal, the hook's syslog lines.
diag_podman() {
  local rt=$1 ns=$2 d hooks id mid state
  d=$out/diag-$rt-$ns
  mkdir -p "$d"
  # shellcheck source=integration/lib.bash
  . "$work/integration/lib.bash"
  hooks=$(mktemp -d)
  cat > "$hooks/oci-systemd-hook.json" <<JSON
{"version": "1.0.0",
 "hook": {"path": "$OSH_HOOK", "env": ["OCI_SYSTEMD_HOOK_LOG=debug"]},
 "when": {"commands": ["^.*/init$", "^.*/systemd$"]},
 "stages": ["prestart", "poststop"]}
JSON
  echo "--- diag: podman --runtime $rt run --cgroupns=$ns (hook log level debug)"
  awk '{print $4, $5}' /proc/self/mountinfo | sort > "$d/.before"
  id=$(podman --runtime "$rt" --hooks-dir "$hooks" run -d "${OSH_PODMAN_ARGS[@]}" \
         --cgroupns="$ns" --memory 512m --rootfs "$rootfs:O" /sbin/init 2> "$d/podman-run.stderr")
  echo "podman run exit: $? id=$id" > "$d/summary.txt"
  if [ -n "$id" ]; then
    mid=${id:0:32}
    state=$(osh_wait_running "$id" 90)
    echo "is-system-running: $state" >> "$d/summary.txt"
    podman exec "$id" findmnt -o TARGET,SOURCE,FSTYPE,OPTIONS > "$d/findmnt.txt" 2>&1
    podman exec "$id" cat /proc/1/cgroup > "$d/proc-1-cgroup.txt" 2>&1
    podman exec "$id" systemctl --failed --no-pager > "$d/systemctl-failed.txt" 2>&1
    podman exec "$id" sh -c 'for u in $(systemctl --failed --no-legend --plain | awk "{print \$1}"); do systemctl status --no-pager -l "$u"; done' \
      > "$d/failed-status.txt" 2>&1
    podman inspect "$id" > "$d/podman-inspect.json" 2>&1
    # Mount propagation evidence: the guest's (host side) cgroup mounts with
    # their peer groups (shared:N), the container init's, and what appeared
    # in the host's mount table since the container started.
    grep -E ' cgroup2? |/sys/fs/cgroup' /proc/self/mountinfo > "$d/host-mountinfo-cgroup.txt"
    local pid
    pid=$(podman inspect -f '{{.State.Pid}}' "$id" 2>/dev/null)
    [ -n "$pid" ] && [ "$pid" != 0 ] && grep -E 'cgroup|journal|machine-id' "/proc/$pid/mountinfo" > "$d/container-mountinfo.txt" 2>&1
    awk '{print $4, $5}' /proc/self/mountinfo | sort | diff "$d/.before" - > "$d/host-mounts-new-while-running.txt"
    cat "/sys/fs/cgroup/$(podman inspect -f '{{.State.CgroupPath}}' "$id" 2>/dev/null)/cgroup.procs" \
      > "$d/host-cgroup-procs.txt" 2>&1
    podman stop -t 30 "$id" > /dev/null 2>&1
    echo "exit code after stop: $(podman inspect -f '{{.State.ExitCode}}' "$id" 2>/dev/null)" >> "$d/summary.txt"
    podman logs "$id" > "$d/console.txt" 2>&1
    journalctl -D "/var/log/journal/$mid" --no-pager > "$d/container-journal.txt" 2>&1
    podman rm -f -t 0 "$id" > "$d/podman-rm.txt" 2>&1
    awk '{print $4, $5}' /proc/self/mountinfo | sort | diff "$d/.before" - > "$d/host-mounts-left-after-rm.txt"
    rm -rf "/var/log/journal/$mid"
  fi
  journalctl -b -t oci-systemd-hook --no-pager > "$d/hook-syslog.txt" 2>&1
  rm -rf "$hooks" "$d/.before"
  # The short version on the console; everything is in the results.
  for f in summary.txt podman-run.stderr proc-1-cgroup.txt host-mounts-new-while-running.txt host-mounts-left-after-rm.txt systemctl-failed.txt; do
    [ -f "$d/$f" ] && { echo "=== $f"; cat "$d/$f"; }
  done
  [ -f "$d/findmnt.txt" ] && { echo "=== findmnt.txt (cgroup lines)"; grep cgroup "$d/findmnt.txt"; }
  return 0
}

main() {
  local want layout t0 t1 rc=0 name rt file any_fail=0 image base
  echo "OSH-VM: suite start uptime=$(now) multi-user=$(systemctl show -p ActiveEnterTimestampMonotonic --value multi-user.target)us"
  uname -a
  want=$OSH_VM_LAYOUT
  layout=$(observed_layout)
  echo "OSH-VM: layout asked=$want observed=$layout cmdline=$(cat /proc/cmdline)"
  findmnt -R -o TARGET,FSTYPE,OPTIONS /sys/fs/cgroup
  cat /proc/self/cgroup
  if [ "$layout" != "$want" ]; then
    echo "OSH-VM: ERROR the guest booted with the $layout cgroup layout, not $want"
    echo layout-mismatch > "$out/error"
    return 1
  fi
  "$work/integration/host-quirks.sh" || { echo host-quirks > "$out/error"; return 1; }
  podman version --format '{{.Client.Version}}' | sed 's/^/podman /'
  crun --version | head -n 1; runc --version | head -n 1; bats --version

  # run.sh asks for userns and rootless on the unified layout only
  # (userns.bats and rootless.bats say why).
  runs=$OSH_VM_RUNS
  echo "$runs" > "$out/runs"
  for name in $runs; do
    filter=${OSH_VM_FILTER:-}
    # NAME-sid: the same run with the sid image (systemd >= 258, cgroup v2
    # only) as the container rootfs, instead of the host suite's.
    image=$rootfs
    base=$name
    if [ "${name%-sid}" != "$name" ]; then image=$rootfs_sid base=${name%-sid}; fi
    case "$base" in
      podman-crun) rt=crun file=podman.bats ;;
      podman-runc) rt=runc file=podman.bats ;;
      runc) rt=runc file=runc.bats ;;
      userns) rt=crun file=userns.bats filter= ;;
      rootless) rt=crun file=rootless.bats filter= ;;
      # systemd-machined (integration/machine.bats): machinectl,
      # journalctl -M, systemctl -M.
      machine-crun) rt=crun file=machine.bats filter=${OSH_VM_MACHINE_FILTER:-} ;;
      machine-runc) rt=runc file=machine.bats filter=${OSH_VM_MACHINE_FILTER:-} ;;
      compare) rt=crun file= ;;
      # One boot: Docker's default on cgroup v2 is private cgroupns already
      # (the image import alone takes minutes under TCG).
      docker) rt=runc file=docker.bats filter='default cgroupns' ;;
      *) echo "OSH-VM: unknown run $name"; return 1 ;;
    esac
    if [ ! -x "$image/sbin/init" ]; then
      echo "OSH-VM: ERROR run $name: no container rootfs at $image (rebuild the VM image)"
      echo 5 > "$out/$name.rc"; any_fail=1; continue
    fi
    echo "OSH-VM: run $name start uptime=$(now)"
    t0=$(now)
    # Hang guards: a bats case that hangs fails after BATS_TEST_TIMEOUT, a
    # whole run after run_timeout, and the process tree at that moment is
    # kept (and shown on the console) as the evidence of what hung.
    if [ -z "$file" ]; then
      # The mount table with the hook next to podman --systemd=always.
      OSH_ROOTFS=$image timeout -k 15 "$run_timeout" "$work/integration/compare-mounts.sh" 2>&1 | tee "$out/$name.txt"
    else
      OSH_ROOTFS=$image OSH_RUNTIME=$rt BATS_TEST_TIMEOUT=$case_timeout \
        timeout -k 15 "$run_timeout" bats --tap --timing ${filter:+--filter "$filter"} \
        "$work/integration/$file" 2>&1 | tee "$out/$name.tap"
    fi
    rc=${PIPESTATUS[0]}
    # bats exits 0 when its filter matched nothing ("1..0"): a run that ran
    # no case is a failure here.
    if [ "$rc" = 0 ] && [ -n "$file" ] && ! grep -q '^1\.\.[1-9]' "$out/$name.tap"; then
      echo "OSH-VM: ERROR run $name ran no case (bats filter '${filter:-}')"
      rc=5
    fi
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      echo "OSH-VM: ERROR run $name did not finish within $run_timeout s; processes left:"
      ps -eo pid,stat,etimes,wchan:24,args --forest | grep -v '\[.*\]$' | tee "$out/$name.hang-ps.txt"
    fi
    t1=$(now)
    echo "$rc" > "$out/$name.rc"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", b - a }' > "$out/$name.seconds"
    echo "OSH-VM: run $name rc=$rc seconds=$(cat "$out/$name.seconds")"
    [ "$rc" = 0 ] || any_fail=1
  done

  journalctl -b -t oci-systemd-hook --no-pager > "$out/hook-syslog.txt" 2>&1
  if [ "$any_fail" = 1 ]; then
    echo "OSH-VM: collecting evidence for the failures"
    for name in $runs; do
      [ "$(cat "$out/$name.rc")" = 0 ] && continue
      case "$name" in userns | rootless | compare* | docker | *-sid) continue ;; esac
      case "$name" in podman-crun | machine-crun) rt=crun ;; *) rt=runc ;; esac
      [ -d "$out/diag-$rt-host" ] || { diag_podman "$rt" host; diag_podman "$rt" private; }
    done
    systemctl --failed --no-pager > "$out/guest-systemctl-failed.txt" 2>&1
    findmnt > "$out/guest-findmnt.txt" 2>&1
  fi
  return 0
}

# finish RC [PID]: the results onto the output disk, then power off at once. The
# normal end and the watchdog may both get here; the first one in writes
# (mkdir is the lock), the other one waits for the power-off. Diagnostics
# are bounded: they must not keep the results from being written.
finish() {
  local rc=$1 other=${2:-}
  mkdir /run/osh-vm-finish 2>/dev/null || exec sleep infinity
  # The lock is ours: the watchdog (if it is the other one) stops here.
  [ -n "$other" ] && kill "$other" 2>/dev/null
  echo "$rc" > "$out/guest.rc"
  echo "$t_start $(now)" > "$out/uptime-span"
  timeout 60 journalctl -b --no-pager > "$out/guest-journal.txt" 2>&1
  # The results disk: a plain tar the host reads back with `tar -xf`.
  timeout 20 ps -eo pid,stat,cgroup:80,args --forest > "$out/guest-ps.txt" 2>&1
  tar -cf /dev/vdc -C "$out" . && sync
  echo "OSH-VM: RESULT rc=$rc"
  # Power off now rather than through the unit's SuccessAction: a clean
  # shutdown can hang on what a failed case left behind (seen on unified: the
  # unit never finished), and the results are written and synced already.
  sync
  systemctl poweroff -ff
}

# Per-case, per-run and whole-suite limits (seconds). They only bound hangs:
# on one TCG vCPU a podman case takes ~60-75 s, a run ~130-290 s, a suite
# ~360-490 s.
case_timeout=${OSH_VM_CASE_TIMEOUT:-600}
run_timeout=${OSH_VM_RUN_TIMEOUT:-1200}
guest_deadline=${OSH_VM_GUEST_DEADLINE:-2400}

t_start=$(now)
# The watchdog: if the suite is still running at the deadline, record the
# process tree and come back with what there is, rather than leaving run.sh
# to kill a silent VM.
(
  sleep "$guest_deadline"
  echo "OSH-VM: ERROR the suite is still running after $guest_deadline s; processes:"
  timeout 20 ps -eo pid,stat,etimes,wchan:24,args --forest | grep -v '\[.*\]$' | tee "$out/watchdog-ps.txt"
  echo watchdog > "$out/error"
  finish 124
) &
watchdog=$!
main 2>&1 | tee "$out/guest.log"
rc=${PIPESTATUS[0]}
finish "$rc" "$watchdog"
