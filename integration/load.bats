#!/usr/bin/env bats
# Load: OSH_LOAD (default 20) systemd containers started in parallel with the
# hook all boot; after removal no mount of theirs is left on the host and no
# journal dir beyond the documented /var/log/journal/<machine-id>, which the
# test removes by id.

load helpers

setup_file() {
  osh_require
  osh_setup_hooks
}

teardown() { osh_teardown; }

@test "parallel systemd containers all boot and leave nothing behind" {
  n=${OSH_LOAD:-20}
  before=$(osh_host_mounts)
  journals_before=$(ls /var/log/journal 2>/dev/null | sort)
  t0=$(osh_now)
  pids=()
  for i in $(seq "$n"); do
    podman --runtime "$OSH_RUNTIME" --hooks-dir "$OSH_HOOKS" run -d "${OSH_PODMAN_ARGS[@]}" \
      --rootfs "$OSH_ROOTFS:O" /sbin/init > "$BATS_TEST_TMPDIR/cid.$i" 2>"$BATS_TEST_TMPDIR/err.$i" &
    pids+=($!)
  done
  failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
  cat "$BATS_TEST_TMPDIR"/cid.* >> "$BATS_TEST_TMPDIR/containers"
  [ "$failed" -eq 0 ] || { cat "$BATS_TEST_TMPDIR"/err.* >&2; false; }
  booted=0
  while read -r CID; do
    state=$(osh_wait_running "$CID" 180) && booted=$((booted + 1)) || echo "$CID: $state" >&2
  done < "$BATS_TEST_TMPDIR/containers"
  t1=$(osh_now)
  [ "$booted" -eq "$n" ]
  osh_bounded xargs podman stop -t "$OSH_STOP_GRACE" < "$BATS_TEST_TMPDIR/containers" >/dev/null
  codes=$(xargs podman inspect -f '{{.State.ExitCode}}' < "$BATS_TEST_TMPDIR/containers" | sort -u)
  [ "$codes" = 0 ] || { echo "exit codes: $codes" >&2; false; }
  xargs podman rm >/dev/null < "$BATS_TEST_TMPDIR/containers"
  t2=$(osh_now)
  osh_assert_no_new_mounts "$before"
  # Only the documented per-container journal dirs were added; remove them.
  added=$(comm -13 <(echo "$journals_before") <(ls /var/log/journal | sort) | wc -l)
  [ "$added" -eq "$n" ]
  while read -r CID; do rm -rf "/var/log/journal/${CID:0:32}"; done < "$BATS_TEST_TMPDIR/containers"
  [ "$(ls /var/log/journal | sort)" = "$journals_before" ]
  echo "# $OSH_RUNTIME: $n containers booted in $(osh_elapsed "$t0" "$t1") s, stopped and removed in $(osh_elapsed "$t1" "$t2") s, 0 leaked mounts" >&3
}
