#!/usr/bin/env bats
# Docker and containerd through the runtime wrapper (`oci-systemd-hook
# runtime`, issue 12): neither reads hooks.d, the wrapper adds the hook to
# config.json on create. The test starts its own containerd and dockerd (own
# roots, sockets and pidfiles; no iptables, no bridge), registers the runtime
# from deploy/docker/daemon.json with the built hook's path substituted as
# `make install` does, imports the systemd rootfs as an image, and stops both
# daemons by pid at the end. Debian's binaries by path: a docker CLI elsewhere
# on PATH (a static one in /usr/local/bin) may not match this daemon.

load helpers

DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
CONTAINERD=/usr/bin/containerd
CTR=/usr/bin/ctr
IMAGE=osh-docker-systemd:test

setup_file() {
  OSH_RUNTIME=runc osh_require
  local b
  for b in "$DOCKER" "$DOCKERD" "$CONTAINERD" "$CTR"; do
    [ -x "$b" ] || { echo "$b missing (integration/setup-host.sh installs docker.io and containerd)" >&2; return 1; }
  done
  export DK=$BATS_FILE_TMPDIR/docker
  # Sockets and runtime state under /run, with a short path (sun_path).
  DKRUN=$(mktemp -d /run/osh-docker.XXXXXX)
  export DKRUN
  export CTR_NS=osh-docker-$$
  # Docker's cgroup driver: systemd where systemd is PID 1 on cgroup v2
  # (Docker 20.10's default there), which wants a slice as the parent;
  # cgroupfs elsewhere.
  if [ -d /run/systemd/system ] && [ "$OSH_LAYOUT" = unified ]; then
    export DK_CGROUP_PARENT=oshdocker$$.slice DK_SLICE=oshdocker$$.slice
  else
    export DK_CGROUP_PARENT=/osh-docker-$$ DK_SLICE=
  fi
  if [ -e /run/containerd ]; then touch "$BATS_FILE_TMPDIR/run-containerd-existed"; fi
  mkdir -p "$DK"
  # The shipped daemon.json, with the path of the hook under test. The link
  # for containerd's BinaryName, as `make install` makes it.
  sed "s|/usr/libexec/oci/hooks.d/oci-systemd-hook|$OSH_HOOK|" "$OSH_ROOT/deploy/docker/daemon.json" > "$DK/daemon.json"
  ln -s "$OSH_HOOK" "$DKRUN/oci-systemd-runtime"

  "$CONTAINERD" --root "$DK/containerd" --state "$DKRUN/containerd" --address "$DKRUN/containerd.sock" \
    >"$DK/containerd.log" 2>&1 &
  echo $! > "$DK/containerd.pid"
  wait_for "$CTR" -a "$DKRUN/containerd.sock" version
  "$DOCKERD" --config-file "$DK/daemon.json" --data-root "$DK/data" --exec-root "$DKRUN/docker" \
    --host "unix://$DKRUN/docker.sock" --pidfile "$DKRUN/docker.pid" --containerd "$DKRUN/containerd.sock" \
    --iptables=false --ip-masq=false --bridge=none --cgroup-parent "$DK_CGROUP_PARENT" \
    >"$DK/dockerd.log" 2>&1 &
  echo $! > "$DK/dockerd.pid"
  wait_for "$DOCKER" -H "unix://$DKRUN/docker.sock" version
  # Not under the 180 s hang guard: an import takes minutes in a TCG VM.
  tar -C "$OSH_ROOTFS" -c . | timeout -k 10 900 "$DOCKER" -H "unix://$DKRUN/docker.sock" import -c 'CMD ["/sbin/init"]' - "$IMAGE" >/dev/null
  # The stop signal from the image (STOPSIGNAL), as a systemd image's
  # Dockerfile sets it; `docker import` cannot set it.
  printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$IMAGE" | dk build -q -t "$IMAGE-stopsignal" - >/dev/null
}

teardown_file() {
  local id pid
  if [ -S "${DKRUN:-/nonexistent}/docker.sock" ]; then
    for id in $(dk ps -aq --no-trunc); do
      dk rm -f "$id" >/dev/null 2>&1 || true
      rm -rf "/var/log/journal/${id:0:32}"
    done
  fi
  for pid in dockerd containerd; do
    [ -f "$DK/$pid.pid" ] || continue
    pid=$(cat "$DK/$pid.pid")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # Anything the daemons left mounted under their trees.
  awk -v a="$DK" -v b="${DKRUN:-/nonexistent}" 'index($5, a) == 1 || index($5, b) == 1 {print $5}' /proc/self/mountinfo \
    | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$DK" "${DKRUN:-/nonexistent}" "/run/containerd/runc/$CTR_NS" "/run/containerd/fifo/$CTR_NS"
  if [ ! -e "$BATS_FILE_TMPDIR/run-containerd-existed" ]; then
    rmdir /run/containerd/runc /run/containerd/fifo /run/containerd/s /run/containerd 2>/dev/null || true
  fi
  if [ -n "$DK_SLICE" ]; then systemctl stop "$DK_SLICE" 2>/dev/null || true; fi
  rmdir /sys/fs/cgroup/*/"${DK_CGROUP_PARENT#/}" /sys/fs/cgroup/"${DK_CGROUP_PARENT#/}" \
    /sys/fs/cgroup/*/"$CTR_NS" /sys/fs/cgroup/"$CTR_NS" 2>/dev/null || true
  return 0
}

setup() {
  OSH_RUNTIME=runc osh_require
  BEFORE=$(osh_host_mounts)
}

teardown() {
  local id
  if [ -f "$BATS_TEST_TMPDIR/containers" ]; then
    while read -r id; do
      dk rm -f "$id" >/dev/null 2>&1 || true
      rm -rf "/var/log/journal/${id:0:32}"
    done < "$BATS_TEST_TMPDIR/containers"
  fi
  if [ -n "${CTR_ID:-}" ]; then
    ctr_ task kill -s SIGKILL "$CTR_ID" >/dev/null 2>&1 || true
    for ((i = 0; i < 50; i++)); do ctr_ task delete "$CTR_ID" >/dev/null 2>&1 && break; sleep 0.2; done
    ctr_ container delete "$CTR_ID" >/dev/null 2>&1 || true
    rm -rf "/var/log/journal/${CTR_ID:0:32}"
  fi
  for m in "$BATS_TEST_TMPDIR"/*/merged; do
    mountpoint -q "$m" 2>/dev/null && umount "$m"
  done
  return 0
}

dk() { osh_bounded "$DOCKER" -H "unix://$DKRUN/docker.sock" "$@"; }
ctr_() { osh_bounded "$CTR" -a "$DKRUN/containerd.sock" -n "$CTR_NS" "$@"; }

# wait_for CMD...: until CMD succeeds (300 tries, 0.1 s apart).
wait_for() {
  for ((i = 0; i < 300; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "never ready: $*" >&2
  return 1
}

# The shared checks (osh_check_inside) run commands through osh_exec.
osh_exec() { dk exec "$CID" "$@"; }

# dk_run ARGS...: docker run -d with the wrapper runtime; sets CID and MID.
dk_run() {
  CID=$(dk run -d --runtime=oci-systemd "${DK_ARGS[@]}" "$@")
  echo "$CID" >> "$BATS_TEST_TMPDIR/containers"
  MID=${CID:0:32}
}
DK_ARGS=(--network=none)
# A kernel with AppArmor on (Debian's, Ubuntu's): Docker confines a container
# with its docker-default profile, which denies mount(2), and systemd mounts
# for its services' sandboxing; the README says so. The guest VM has no
# apparmor_parser, where dockerd refuses any confined container.
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then
  DK_ARGS+=(--security-opt apparmor=unconfined)
fi
osh_capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if (( (16#$osh_capbnd >> 24 & 1) == 0 )); then
  DK_ARGS+=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
fi

# bundle_config: the container's config.json as the wrapper left it.
bundle_config() { cat "$DKRUN/containerd/io.containerd.runtime.v2.task/moby/$CID/config.json"; }

# dk_wait_running [degraded-ok]: systemctl is-system-running until it
# settles (180 tries); running, or with degraded-ok degraded when no failed
# unit is about the container set-up (mounts, cgroups, journal, machine-id),
# as osh_assert_booted allows it.
dk_wait_running() {
  local state="" i
  for ((i = 0; i < 180; i++)); do
    state=$(dk exec "$CID" systemctl is-system-running 2>/dev/null) || true
    case "$state" in running | degraded) break ;; esac
    [ "$(dk inspect -f '{{.State.Running}}' "$CID")" = true ] || { echo "exited: $(dk logs "$CID" 2>&1 | tail -20)" >&2; return 1; }
    sleep 0.5
  done
  echo "state=$state" >&2
  if [ "$state" = degraded ] && [ "${1:-}" = degraded-ok ]; then
    local failed
    failed=$(dk exec "$CID" systemctl --failed --no-legend --plain)
    echo "degraded; failed units: $failed" >&2
    if ! grep -Eiq 'mount|cgroup|journal|machine-id|tmp' <<<"$failed"; then return 0; fi
  fi
  [ "$state" = running ] || {
    dk exec "$CID" systemctl --failed --no-legend >&2
    dk exec "$CID" journalctl -b -p warning --no-pager >&2
    return 1
  }
}

# dk_assert_no_new_mounts: osh_assert_no_new_mounts, counting only mounts
# that can be this test's (under the daemons' trees, the test's tmpdir, the
# journal or cgroup trees, or naming the container or machine id): podman and
# runc containers of other suites on the same host come and go meanwhile.
dk_assert_no_new_mounts() {
  local added
  added=$(comm -13 <(echo "$BEFORE") <(osh_host_mounts) \
    | grep -F -e "$DK" -e "$DKRUN" -e "$BATS_TEST_TMPDIR" -e /var/log/journal -e /sys/fs/cgroup \
      -e "${CID:-${CTR_ID:-none}}" -e "${MID:-none}") || true
  [ -z "$added" ] || { echo "mounts left on the host: $added" >&2; return 1; }
}

# dk_stop_and_remove: docker stop (the image's or run's stop signal), exit
# code 0 (a SIGKILL gives 137), the halt in the journal on the host, then
# docker rm and nothing of the container left on the host but its journal.
dk_stop_and_remove() {
  local t0 t1 code
  t0=$(osh_now)
  dk stop -t 30 "$CID" >/dev/null
  t1=$(osh_now)
  code=$(dk inspect -f '{{.State.ExitCode}}' "$CID")
  [ "$code" = 0 ] || { echo "exit code $code after docker stop" >&2; return 1; }
  journalctl -D "/var/log/journal/$MID" --no-pager | grep -q 'systemd-halt.service\|Reached target.*System Shutdown' \
    || { echo "no halt in the journal" >&2; return 1; }
  dk rm "$CID" >/dev/null
  dk_assert_no_new_mounts
  osh_refute grep -q "$CID" /proc/self/mountinfo
  local left
  # cgroupfs driver: .../<id>; systemd driver: docker-<id>.scope.
  left=$(find /sys/fs/cgroup -maxdepth 5 -name "*$CID*" 2>/dev/null)
  [ -z "$left" ] || { echo "cgroups left: $left" >&2; return 1; }
  echo "# docker $BATS_TEST_DESCRIPTION: stop $(osh_elapsed "$t0" "$t1") s" >&3
}

# hooked: the wrapper added the hook (prestart and poststop) to config.json.
hooked() {
  local c
  c=$(bundle_config)
  [[ "$c" == *"{\"path\":\"$OSH_HOOK\",\"args\":[\"oci-systemd-hook\",\"prestart\"]}"* ]] || { echo "no prestart hook: $c" >&2; return 1; }
  [[ "$c" == *"{\"path\":\"$OSH_HOOK\",\"args\":[\"oci-systemd-hook\",\"poststop\"]}"* ]] || { echo "no poststop hook: $c" >&2; return 1; }
}

# The default cgroupns: host on v1, private on v2 (Docker 20.10).
default_cgroupns() { if [ "$OSH_LAYOUT" = v1 ]; then echo host; else echo private; fi; }

@test "docker, image STOPSIGNAL, default cgroupns: boots to running, mounts as designed, docker stop exits 0, journal on the host, nothing left" {
  dk_run "$IMAGE-stopsignal"
  hooked
  # Docker mounts /sys/fs/cgroup itself (read-only, type cgroup): the hook
  # keeps it and binds the systemd hierarchy and the own cgroup under it.
  [[ "$(bundle_config)" == *'"destination":"/sys/fs/cgroup","type":"cgroup"'* ]]
  dk_wait_running
  osh_check_inside "$(default_cgroupns)"
  journalctl -D "/var/log/journal/$MID" --no-pager | grep -q 'Reached target.*Multi-User\|Startup finished'
  dk_stop_and_remove
}

@test "docker --cgroupns=private --stop-signal=RTMIN+3" {
  dk_run --cgroupns=private --stop-signal=RTMIN+3 "$IMAGE"
  hooked
  dk_wait_running
  osh_check_inside private
  dk_stop_and_remove
}

@test "docker --read-only: boots on the read-only root, machine-id bound" {
  dk_run --read-only --stop-signal=RTMIN+3 "$IMAGE"
  hooked
  # systemd-logind's StateDirectory in /var/lib cannot be made in a
  # read-only image (degraded; --tmpfs /var/lib/systemd fixes it).
  dk_wait_running degraded-ok
  [ "$(dk exec "$CID" cat /etc/machine-id)" = "$MID" ]
  [[ "$(dk exec "$CID" findmnt -n -o OPTIONS --mountpoint /)" == ro,* ]]
  dk_stop_and_remove
}

@test "docker with the user's own --tmpfs /run: kept, boots" {
  dk_run --tmpfs /run:rw,nosuid,nodev,exec,size=32m --stop-signal=RTMIN+3 "$IMAGE"
  hooked
  dk_wait_running
  [[ "$(osh_mount /run)" == tmpfs\ *size=32768k* ]] || { echo "/run: $(osh_mount /run)" >&2; return 1; }
  [[ "$(osh_mount /run/lock)" == tmpfs\ * ]]
  dk_stop_and_remove
}

@test "left alone: a sleep container through the same runtime (no hook in config.json)" {
  dk_run "$IMAGE" sleep 600
  local c
  c=$(bundle_config)
  [[ "$c" != *oci-systemd-hook* ]] || { echo "hook added: $c" >&2; return 1; }
  [ ! -e "/var/log/journal/$MID" ]
  [ "$(dk exec "$CID" findmnt -n -o FSTYPE --mountpoint /run)" = "" ]
  dk rm -f "$CID" >/dev/null
  dk_assert_no_new_mounts
}

@test "left alone: /sbin/init with oci-systemd-hook=disabled (no hook in config.json)" {
  dk_run -e oci-systemd-hook=disabled "$IMAGE"
  local c
  c=$(bundle_config 2>/dev/null) || c=""   # systemd may already have failed
  [[ "$c" != *"\"path\":\"$OSH_HOOK\""* ]] || { echo "hook added: $c" >&2; return 1; }
  [ ! -e "/var/log/journal/$MID" ]
  dk rm -f "$CID" >/dev/null
  dk_assert_no_new_mounts
}

@test "containerd: ctr run --runc-binary oci-systemd-runtime boots and stops" {
  local rootfs state i
  rootfs=$(osh_overlay ctr)
  BEFORE=$(osh_host_mounts)
  CTR_ID=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # container=oci: ctr sets no container env and there is no /.dockerenv;
  # without it systemd-shutdown does not know it is in a container and
  # waits for a reboot() it may not do instead of exiting.
  ctr_ run -d --rootfs --runc-binary "$DKRUN/oci-systemd-runtime" --env container=oci \
    --log-uri "file://$BATS_TEST_TMPDIR/ctr.log" "$rootfs" "$CTR_ID" /sbin/init
  grep -q "\"path\":\"$OSH_HOOK\"" "$DKRUN/containerd/io.containerd.runtime.v2.task/$CTR_NS/$CTR_ID/config.json"
  state=""
  for ((i = 0; i < 180; i++)); do
    state=$(ctr_ task exec --exec-id "s$i" "$CTR_ID" /bin/systemctl is-system-running 2>/dev/null) || true
    case "$state" in running | degraded) break ;; esac
    sleep 0.5
  done
  echo "state=$state" >&2
  [ "$state" = running ]
  [ "$(ctr_ task exec --exec-id mid "$CTR_ID" /bin/cat /etc/machine-id)" = "${CTR_ID:0:32}" ]
  ctr_ task kill -s SIGRTMIN+3 "$CTR_ID"
  for ((i = 0; i < 200; i++)); do
    ctr_ task ls | grep -q "^$CTR_ID .*STOPPED" && break
    sleep 0.1
  done
  ctr_ task ls | grep -q "^$CTR_ID .*STOPPED"
  ctr_ task delete "$CTR_ID" 2>&1 | tee "$BATS_TEST_TMPDIR/delete.out"
  osh_refute grep -q 'non-zero exit code' "$BATS_TEST_TMPDIR/delete.out"
  ctr_ container delete "$CTR_ID"
  journalctl -D "/var/log/journal/${CTR_ID:0:32}" --no-pager | grep -q 'systemd-halt.service\|Reached target.*System Shutdown'
  [ ! -s "$rootfs/etc/machine-id" ]   # poststop emptied it
  dk_assert_no_new_mounts
}
