#!/usr/bin/env bash
# Prepares this machine for the demo and the tests, as root:
#  - installs what is missing (podman, crun, runc, conmon, netavark, mmdebstrap,
#    bats, util-linux tools, go-md2man and rpmbuild for the man page and the
#    RPM, dbus-daemon for the test of a system bus without machined) from
#    the distribution's packages;
#  - checks for a Rust toolchain new enough to build the hook;
#  - fixes host quirks that break podman/crun (integration/host-quirks.sh).
# Safe to run again: it only acts on what is missing.
set -euo pipefail

log() { printf 'setup-host: %s\n' "$*" >&2; }
die() { printf 'setup-host: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the hook mounts inside containers; podman runs rootful)"

# command:debian-package:fedora-package
needs=(
  podman:podman:podman
  crun:crun:crun
  runc:runc:runc
  conmon:conmon:conmon
  mmdebstrap:mmdebstrap:mmdebstrap
  bats:bats:bats
  nsenter:util-linux:util-linux
  findmnt:util-linux:util-linux
  journalctl:systemd:systemd
  go-md2man:go-md2man:golang-github-cpuguy83-md2man
  rpmbuild:rpm:rpm-build
  cpio:cpio:cpio
  dbus-daemon:dbus-daemon:dbus-daemon
  strace:strace:strace
)
missing_deb=(); missing_rpm=()
for n in "${needs[@]}"; do
  IFS=: read -r cmd deb rpm <<<"$n"
  command -v "$cmd" >/dev/null 2>&1 || { missing_deb+=("$deb"); missing_rpm+=("$rpm"); }
done
# Packages with no command of their own on PATH that podman and the tests
# still need; apt's --no-install-recommends leaves them out, so each is
# checked by name: netavark (podman's network stack), catatonit (podman
# --init, "left alone: podman --init"), uidmap (newuidmap for --uidmap),
# fuse-overlayfs, iptables (netavark's firewall driver), docker.io and
# containerd (integration/docker.bats starts its own dockerd and containerd
# from /usr/sbin and /usr/bin; a docker CLI elsewhere on PATH, such as a static
# one in /usr/local/bin, must not count as installed).
debs_by_name=(netavark catatonit uidmap fuse-overlayfs iptables docker.io containerd)
if command -v dpkg-query >/dev/null 2>&1; then
  for deb in "${debs_by_name[@]}"; do
    dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q 'ok installed' || missing_deb+=("$deb")
  done
fi

if [ "${#missing_deb[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    log "installing: ${missing_deb[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing_deb[@]}" >&2
  elif command -v dnf >/dev/null 2>&1; then
    log "installing: ${missing_rpm[*]}"
    dnf install -y "${missing_rpm[@]}" netavark catatonit >&2
  else
    die "no apt-get or dnf; install by hand: ${missing_deb[*]}"
  fi
fi

# Rust: cargo >= 1.91 (sha2 0.11 and edition 2024 need 1.88; the build target
# `host-tuple` in .cargo/config.toml needs 1.91).
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  if command -v dnf >/dev/null 2>&1; then dnf install -y cargo rust >&2
  elif command -v apt-get >/dev/null 2>&1; then apt-get install -y -q cargo >&2 || true
  fi
fi
command -v cargo >/dev/null 2>&1 || die "no cargo: install Rust 1.91 or newer (https://rustup.rs)"
ver=$(cargo --version | awk '{print $2}')
if [ "$(printf '%s\n1.91.0\n' "$ver" | sort -V | head -1)" != 1.91.0 ]; then
  die "cargo $ver is too old: install Rust 1.91 or newer (https://rustup.rs)"
fi

# libc.a: the hook is linked statically against glibc (.cargo/config.toml);
# Debian ships it in libc6-dev, Fedora in glibc-static.
if [ ! -e "/usr/lib/$(uname -m)-linux-gnu/libc.a" ] && [ ! -e /usr/lib64/libc.a ]; then
  if command -v apt-get >/dev/null 2>&1; then
    log "installing: libc6-dev (libc.a)"
    apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends libc6-dev >&2
  elif command -v dnf >/dev/null 2>&1; then
    log "installing: glibc-static (libc.a)"
    dnf install -y glibc-static >&2
  else
    die "no libc.a: install glibc's static library (libc6-dev, glibc-static)"
  fi
fi

"$(dirname "$0")/host-quirks.sh"

# The hook binds each container's journal from /var/log/journal/<machine-id>
# but never creates /var/log/journal itself (that would switch the host's
# journald to persistent storage). The tests need it; create it as
# systemd-tmpfiles does.
if [ ! -d /var/log/journal ]; then
  log "creating /var/log/journal (persistent journal directory)"
  install -d -m 2755 /var/log/journal
  getent group systemd-journal >/dev/null && chgrp systemd-journal /var/log/journal
fi
log "ok"
