# bats helpers for the conformance suite. Loaded by every *.bats file.
# shellcheck shell=bash

# shellcheck source=integration/lib.bash
. "$BATS_TEST_DIRNAME/lib.bash"

OSH_RUNTIME=${OSH_RUNTIME:-crun}

# The systemd rootfs: OSH_ROOTFS (integration/build-rootfs.sh prints it;
# `make integration` passes it), or OSH_IMAGE, a podman image whose mounted
# rootfs is used instead (the Vagrant run builds a Fedora image). A
# privileged test that cannot run fails loudly.
if [ -n "${OSH_IMAGE:-}" ] && [ -z "${OSH_ROOTFS:-}" ]; then
  OSH_ROOTFS=$(podman image mount "$OSH_IMAGE")
  export OSH_ROOTFS
fi

# The host's cgroup layout: unified (cgroup2 at /sys/fs/cgroup) or v1
# (hybrid and legacy); OSH_HOST_LAYOUT tells hybrid from legacy.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then OSH_LAYOUT=unified; else OSH_LAYOUT=v1; fi
if [ "$OSH_LAYOUT" = unified ]; then OSH_HOST_LAYOUT=unified
elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then OSH_HOST_LAYOUT=hybrid
else OSH_HOST_LAYOUT=legacy; fi

# osh_image_systemd ROOTFS: the image's systemd version, as the hook reads
# it (libsystemd-shared-<N>.so); empty when none is found.
osh_image_systemd() {
  find "$1/usr/lib" "$1/lib" "$1/usr/lib64" "$1/lib64" -maxdepth 3 -name 'libsystemd-shared-*.so' 2>/dev/null \
    | sed -n 's|.*/libsystemd-shared-\([0-9]*\)[^/]*\.so$|\1|p' | sort -n | tail -n 1
}

# osh_expected_tree ROOTFS: the cgroup tree the rule table (README,
# src/cgmodel.rs) gives this host and image: v1 (name=systemd at
# /sys/fs/cgroup/systemd), cgroup2 (the host's) or hook-cgroup2 (a legacy
# host's cgroup2 mounted by the hook).
osh_expected_tree() {
  local v
  v=$(osh_image_systemd "$1")
  case "$OSH_HOST_LAYOUT" in
    unified) echo cgroup2 ;;
    hybrid) if [ -z "$v" ] || [ "$v" -ge 256 ]; then echo cgroup2; else echo v1; fi ;;
    legacy) if [ -z "$v" ] || [ "$v" -ge 258 ]; then echo hook-cgroup2; else echo v1; fi ;;
  esac
}

# osh_expected_lock_mode ROOTFS: /run/lock's mode after boot: the first
# tmpfiles line for it in the image (files in name order; sid and trixie:
# `d /run/lock 1777`), else the hook's 755.
osh_expected_lock_mode() {
  local m
  m=$(cat "$1"/usr/lib/tmpfiles.d/*.conf 2>/dev/null | awk '$1 ~ /^[dD]$/ && $2 == "/run/lock" {print $3}' | head -n 1)
  echo "${m:-0755}" | sed 's/^0*//'
}

osh_require() {
  [ "$(id -u)" = 0 ] || { echo "the integration suite needs root" >&2; return 1; }
  [ -n "${OSH_ROOTFS:-}" ] && [ -x "$OSH_ROOTFS/sbin/init" ] \
    || { echo "OSH_ROOTFS=${OSH_ROOTFS:-} is not a systemd rootfs (run via 'make integration')" >&2; return 1; }
  [ -x "$OSH_HOOK" ] || { echo "hook binary $OSH_HOOK missing (make build)" >&2; return 1; }
  command -v "$OSH_RUNTIME" >/dev/null || { echo "runtime $OSH_RUNTIME not installed" >&2; return 1; }
}

# Per-file hooks dirs: the real descriptor, and one that always calls the
# hook (to prove the hook's own decision leaves non-systemd containers alone).
osh_setup_hooks() {
  export OSH_HOOKS=$BATS_FILE_TMPDIR/hooks.d
  export OSH_HOOKS_ALWAYS=$BATS_FILE_TMPDIR/hooks-always.d
  osh_hooks_dir "$OSH_HOOKS"
  mkdir -p "$OSH_HOOKS_ALWAYS"
  sed 's|"commands": \[|"always": true, "commands": [|' "$OSH_HOOKS/oci-systemd-hook.json" \
    > "$OSH_HOOKS_ALWAYS/oci-systemd-hook.json"
}

# osh_host_mounts: the host's mount points and sources, sorted.
osh_host_mounts() { awk '{print $4, $5}' /proc/self/mountinfo | sort; }

# osh_assert_no_new_mounts BEFORE: fails listing every host mount that is
# there now and was not in BEFORE (osh_host_mounts output). Mounts that went
# away are podman's own housekeeping (its storage mount), not leaks.
osh_assert_no_new_mounts() {
  local added
  added=$(comm -13 <(echo "$1") <(osh_host_mounts))
  [ -z "$added" ] || { echo "mounts left on the host: $added" >&2; return 1; }
}

# osh_overlay NAME: an overlay over the cached rootfs with extra image
# content from "$BATS_TEST_TMPDIR/$NAME-seed" (if any); prints the merged
# dir. It survives the container, so poststop's work on it can be checked.
osh_overlay() {
  local base=$BATS_TEST_TMPDIR/$1 lower=$OSH_ROOTFS
  mkdir -p "$base/upper" "$base/work" "$base/merged"
  if [ -d "$base-seed" ]; then lower=$base-seed:$OSH_ROOTFS; fi
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$base/upper,workdir=$base/work" "$base/merged"
  echo "$base/merged"
}

# osh_podman_run ARGS...: podman run -d with the hook; sets CID and MID.
osh_podman_run() {
  CID=$(podman --runtime "$OSH_RUNTIME" --hooks-dir "${OSH_HOOKS_DIR_OVERRIDE:-$OSH_HOOKS}" \
    run -d "${OSH_PODMAN_ARGS[@]}" "$@")
  MID=$(osh_machine_id "$CID")
  echo "$CID" >> "$BATS_TEST_TMPDIR/containers"
}

# osh_exec CMD...: runs CMD in the container.
osh_exec() { osh_bounded podman exec "$CID" "$@"; }

# osh_assert_booted: systemd reaches running; degraded only when no failed
# unit is about the container setup (mounts, cgroups, journal, machine-id).
osh_assert_booted() {
  local state
  state=$(osh_wait_running "$CID" 90) || { echo "systemd did not settle: $state" >&2; podman logs "$CID" >&2 || true; return 1; }
  if [ "$state" = degraded ]; then
    local failed
    failed=$(osh_exec systemctl --failed --no-legend --plain)
    echo "degraded; failed units: $failed" >&2
    if grep -Eiq 'mount|cgroup|journal|machine-id|tmp' <<<"$failed"; then return 1; fi
  fi
}

# The facts osh_check_inside checks, gathered inside the container by one
# exec (each exec costs seconds under software-emulated VMs). Argument: the
# expected tree (v1, cgroup2, hook-cgroup2). Prints "KEY VALUE" lines:
# mount:PATH (FSTYPE OPTIONS of the topmost mount), mode:PATH, cgfs, cg (PID
# 1's cgroup in that tree), at-mount, own-mount, parent-writable,
# release-agent-writable, procs-writable (yes/no), machine-id, virt.
OSH_FACTS_SCRIPT=$(cat <<'SCRIPT'
tree=$1
mnt() { findmnt -n -o FSTYPE,OPTIONS --mountpoint "$1" | tail -n 1; }
yn() { if "$@" 2>/dev/null; then echo yes; else echo no; fi; }
# printf, not dash's echo, which would expand backslashes in paths.
say() { printf '%s %s\n' "$1" "$2"; }
for m in /run /run/lock /tmp; do
  say "mount:$m" "$(mnt "$m")"
  say "mode:$m" "$(stat -c %a "$m")"
done
say "cgfs" "$(stat -fc %T /sys/fs/cgroup)"
if [ "$tree" = v1 ]; then
  at=/sys/fs/cgroup/systemd
  cg=$(awk -F: '$2 == "name=systemd" {print $3}' /proc/1/cgroup)
else
  at=/sys/fs/cgroup
  cg=$(awk -F: '$1 == "0" {print $3}' /proc/1/cgroup)
fi
own=${cg%/init.scope}
say "cg" "$cg"
say "at-mount" "$(mnt "$at")"
if [ -n "$own" ]; then
  say "own-mount" "$(mnt "$at$own")"
  # A subshell writes itself into the parent: it must be refused.
  say "parent-writable" "$(yn sh -c "echo 0 > '$at${own%/*}/cgroup.procs'")"
fi
if [ "$tree" = v1 ]; then
  say "release-agent-writable" "$(yn sh -c "echo 1 > '$at/release_agent'")"
fi
say "procs-writable" "$(yn test -w "$at$cg/cgroup.procs")"
say "machine-id" "$(cat /etc/machine-id)"
say "virt" "$(systemd-detect-virt --container)"
SCRIPT
)

# osh_inside_facts TREE: fills the global associative array OSH_FACTS from
# one exec of OSH_FACTS_SCRIPT in the container (osh_exec); fails when the
# exec does.
declare -gA OSH_FACTS
osh_inside_facts() {
  local out key val
  out=$(osh_exec sh -c "$OSH_FACTS_SCRIPT" sh "$1") || { echo "facts: exec failed: $out" >&2; return 1; }
  OSH_FACTS=()
  while read -r key val; do
    [ -n "$key" ] && OSH_FACTS[$key]=$val
  done <<<"$out"
  [ -n "${OSH_FACTS[cg]+x}" ] || { echo "facts: incomplete: $out" >&2; return 1; }
}

# osh_check_inside CGROUPNS (host|private): the mount table systemd needs,
# from inside the running container: tmpfs with modes and flags, the cgroup
# tree (own cgroup writable, the rest not), machine-id, container detection.
# Leaves the facts in OSH_FACTS (osh_check_selinux reads the tmpfs mounts
# from there).
osh_check_inside() {
  local cgroupns=$1 m fstype opts cg own tree at
  tree=$(osh_expected_tree "$OSH_ROOTFS")
  osh_inside_facts "$tree"
  for m in /run /run/lock /tmp; do
    read -r fstype opts <<<"${OSH_FACTS[mount:$m]}"
    [ "$fstype" = tmpfs ] || { echo "$m is '$fstype'" >&2; return 1; }
    [[ ",$opts," == *,nosuid,* && ",$opts," == *,nodev,* ]] || { echo "$m: $opts" >&2; return 1; }
  done
  [ "${OSH_FACTS[mode:/run]}" = 755 ] || { echo "/run mode ${OSH_FACTS[mode:/run]}" >&2; return 1; }
  [ "${OSH_FACTS[mode:/run/lock]}" = "$(osh_expected_lock_mode "$OSH_ROOTFS")" ] \
    || { echo "/run/lock mode ${OSH_FACTS[mode:/run/lock]}" >&2; return 1; }
  [ "${OSH_FACTS[mode:/tmp]}" = 1777 ] || { echo "/tmp mode ${OSH_FACTS[mode:/tmp]}" >&2; return 1; }
  [[ "${OSH_FACTS[mount:/run]}" == *size=65536k* ]] || { echo "/run: ${OSH_FACTS[mount:/run]}" >&2; return 1; }

  if [ "$tree" = v1 ]; then
    at=/sys/fs/cgroup/systemd
  else
    at=/sys/fs/cgroup
    [ "${OSH_FACTS[cgfs]}" = cgroup2fs ] || { echo "/sys/fs/cgroup is ${OSH_FACTS[cgfs]}, not cgroup2" >&2; return 1; }
  fi
  cg=${OSH_FACTS[cg]}
  [[ "$cg" == */init.scope ]] || { echo "PID 1 cgroup: $cg" >&2; return 1; }
  own=${cg%/init.scope}
  # The hook's own cgroup2 was made after the cgroup namespace: the
  # container sees its full path in either namespace.
  if [ "$tree" = hook-cgroup2 ]; then
    [[ "$own" == /oci-systemd-hook-* ]] || { echo "PID 1 not in the hook's cgroup: $cg" >&2; return 1; }
    cgroupns=host
  fi
  if [ "$cgroupns" = private ]; then
    [ -z "$own" ] || { echo "private cgroupns but PID 1 is in $cg" >&2; return 1; }
    [[ "${OSH_FACTS[at-mount]}" == cgroup*\ rw,* ]] || { echo "$at: ${OSH_FACTS[at-mount]}" >&2; return 1; }
  else
    [ -n "$own" ] || { echo "host cgroupns but PID 1 is at the root: $cg" >&2; return 1; }
    [[ "${OSH_FACTS[at-mount]}" == cgroup*\ ro,* ]] || { echo "$at: ${OSH_FACTS[at-mount]}" >&2; return 1; }
    [[ "${OSH_FACTS[own-mount]}" == cgroup*\ rw,* ]] || { echo "$at$own: ${OSH_FACTS[own-mount]}" >&2; return 1; }
    # The parent of the own cgroup is not writable.
    [ "${OSH_FACTS[parent-writable]}" = no ] || { echo "$at${own%/*}/cgroup.procs is writable" >&2; return 1; }
    if [ "$tree" = v1 ]; then
      [ "${OSH_FACTS[release-agent-writable]}" = no ] || { echo "$at/release_agent is writable" >&2; return 1; }
    fi
  fi
  [ "${OSH_FACTS[procs-writable]}" = yes ] || { echo "$at$cg/cgroup.procs is not writable" >&2; return 1; }

  [ "${OSH_FACTS[machine-id]}" = "$MID" ] || { echo "machine-id '${OSH_FACTS[machine-id]}', want $MID" >&2; return 1; }
  local virt=${OSH_FACTS[virt]}
  [ -n "$virt" ] && [ "$virt" != none ] || { echo "systemd-detect-virt: '$virt'" >&2; return 1; }
}

# osh_check_selinux: where SELinux is enabled on the host (the Fedora
# Vagrant run), every tmpfs the hook mounted carries the container's mount
# label as its context, and so does the host journal directory. Where it is
# not enabled the hook sets no context, and this checks that instead.
osh_check_selinux() {
  local label m opts
  label=$(podman inspect -f '{{.MountLabel}}' "$CID")
  for m in /run /run/lock /tmp; do
    opts=${OSH_FACTS[mount:$m]:-$(osh_mount "$m")}
    if [ -e /sys/fs/selinux/enforce ] && [ -n "$label" ]; then
      [[ "$opts" == *"context=\"$label\""* || ",$opts," == *",context=$label,"* ]] \
        || { echo "$m: no context=$label in $opts" >&2; return 1; }
    else
      [[ "$opts" != *context=* ]] || { echo "$m: context without SELinux: $opts" >&2; return 1; }
    fi
  done
  if [ -e /sys/fs/selinux/enforce ] && [ -n "$label" ]; then
    [ "$(stat -c %C "/var/log/journal/$MID")" = "$label" ] \
      || { echo "journal dir label $(stat -c %C "/var/log/journal/$MID"), want $label" >&2; return 1; }
  fi
}

# osh_refute CMD...: fails when CMD succeeds. A bare `! CMD` is no check in
# bats unless it is a test's last command (errexit ignores `!`).
osh_refute() {
  if "$@"; then echo "expected to fail, but succeeded: $*" >&2; return 1; fi
  return 0
}

# osh_mount TARGET: "FSTYPE OPTIONS" of the topmost mount at TARGET inside.
osh_mount() { osh_exec findmnt -n -o FSTYPE,OPTIONS --mountpoint "$1" | tail -n 1; }

# osh_stop: podman stop -t OSH_STOP_GRACE (SIGRTMIN+3, then SIGKILL after
# that many seconds, default 60); asserts exit code 0, which a SIGKILL (137)
# cannot give, so systemd halted by itself; and the halt in the container's
# journal on the host. The grace is a hang bound, not a timing check: on
# this host a stop takes ~0.4 s, in a loaded software-emulated VM it took
# over 10 s (the 10 s this used to be). Sets STOP_SECONDS for the report.
OSH_STOP_GRACE=${OSH_STOP_GRACE:-60}
osh_stop() {
  local t0 t1 code
  t0=$(osh_now)
  osh_bounded podman stop -t "$OSH_STOP_GRACE" "$CID" >/dev/null
  t1=$(osh_now)
  STOP_SECONDS=$(osh_elapsed "$t0" "$t1")
  code=$(podman inspect -f '{{.State.ExitCode}}' "$CID")
  [ "$code" = 0 ] || { echo "exit code $code after stop" >&2; return 1; }
  journalctl -D "/var/log/journal/$MID" --no-pager | grep -q 'systemd-halt.service\|Reached target.*Shutdown\|Starting Halt' \
    || { echo "no halt in the journal" >&2; return 1; }
}

# Removes every container this test made (by id), its journal dir and overlays.
osh_teardown() {
  local id
  if [ -f "$BATS_TEST_TMPDIR/containers" ]; then
    while read -r id; do
      podman rm -f -t 0 "$id" >/dev/null 2>&1 || true
      rm -rf "/var/log/journal/${id:0:32}"
    done < "$BATS_TEST_TMPDIR/containers"
  fi
  for m in "$BATS_TEST_TMPDIR"/*/merged; do
    mountpoint -q "$m" 2>/dev/null && umount "$m"
  done
  return 0
}

# osh_save_subids / osh_restore_subids: /etc/subuid and /etc/subgid as they
# were before a file's tests added entries. Restore acts only after a save
# (bats runs teardown_file even when setup_file failed early), and removes a
# file only if the save found it absent.
osh_save_subids() {
  local f
  for f in /etc/subuid /etc/subgid; do
    if [ -e "$f" ]; then
      cp -a "$f" "$BATS_FILE_TMPDIR/${f##*/}.orig"
    else
      touch "$BATS_FILE_TMPDIR/${f##*/}.absent"
    fi
  done
  touch "$BATS_FILE_TMPDIR/subids.saved"
}
osh_restore_subids() {
  local f
  [ -f "$BATS_FILE_TMPDIR/subids.saved" ] || return 0
  for f in /etc/subuid /etc/subgid; do
    if [ -e "$BATS_FILE_TMPDIR/${f##*/}.orig" ]; then
      cp -a "$BATS_FILE_TMPDIR/${f##*/}.orig" "$f"
    elif [ -e "$BATS_FILE_TMPDIR/${f##*/}.absent" ]; then
      rm -f "$f"
    fi
  done
}

# osh_runc_config BUNDLE ID STAGE [EXTRA_NAMESPACE]: a config.json for bare
# runc in BUNDLE: podman's default capability set, a relative root.path
# ("rootfs"), the hook as a STAGE (prestart or createRuntime) and poststop
# hook, cgroupsPath /oci-systemd-hook-runc-<first 12 of ID>.
osh_runc_config() {
  local BUNDLE=$1 ID=$2 stage=$3 extra_ns=${4:-} nofile
  nofile=$(ulimit -Hn); [ "$nofile" -gt 20000 ] && nofile=20000
  local caps='"CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_FSETID","CAP_KILL","CAP_NET_BIND_SERVICE","CAP_SETFCAP","CAP_SETGID","CAP_SETPCAP","CAP_SETUID","CAP_SYS_CHROOT"'
  cat > "$BUNDLE/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "root": {"path": "rootfs", "readonly": false},
  "hostname": "runc-systemd",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["/sbin/init"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=oci"],
    "cwd": "/",
    "capabilities": {"bounding": [$caps], "effective": [$caps], "permitted": [$caps]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": $nofile, "soft": $nofile}],
    "noNewPrivileges": false
  },
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "hooks": {
    "$stage": [{"path": "$OSH_HOOK"}],
    "poststop": [{"path": "$OSH_HOOK"}]
  },
  "linux": {
    "cgroupsPath": "/oci-systemd-hook-runc-${ID:0:12}",
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}$extra_ns],
    "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
JSON
}
