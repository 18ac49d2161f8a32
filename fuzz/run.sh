#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 600) on one core, seeded from the
# real inputs in tests/fixtures. cargo-fuzz needs nightly flags; on a stable
# toolchain RUSTC_BOOTSTRAP=1 allows them. Crashes land in
# fuzz/artifacts/TARGET/ and must become regression tests.
#   fuzz/run.sh state|config|plan|mountinfo [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
target=$1 seconds=${2:-600}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
corpus=corpus/$target
mkdir -p "$corpus"
fx=../tests/fixtures
case $target in
  state) cp "$fx"/state/*.json "$corpus"/ ;;
  config) cp "$fx"/config/*.json "$corpus"/ ;;
  mountinfo)
    # This host's real tables (its own and, where readable, PID 1's) plus
    # lines with escapes, optional fields and odd sources.
    cat /proc/self/mountinfo > "$corpus/self"
    cat /proc/1/mountinfo > "$corpus/pid1" 2>/dev/null || true
    printf '%s\n' '36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue' \
      '1 2 0:1 / /a\040b\011c\012d\134e rw shared:7 master:3 propagate_from:4 unbindable - fuse.x\040y  rw' \
      '22 13 0:19 / /dev/shm rw - tmpfs - rw,lowerdir=/a\054b' > "$corpus/escapes" ;;
  plan)
    for cg in "$fx"/proc-cgroup/*.txt; do
      for sel in 0 1 2; do
        { cat "$fx/config/podman-4.3-systemd-false.json"; printf '\0'; cat "$cg"; printf '\0%s\0' \
          4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b; printf "\\x0$sel\\x08"; } \
          > "$corpus/$(basename "$cg" .txt)-$sel"
      done
    done ;;
esac
RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "$corpus" -- -max_total_time="$seconds" -max_len=65536 -timeout=10
