#!/usr/bin/env bash
# Checks a built RPM: the binary in /usr/libexec/oci/hooks.d, the descriptor in
# /usr/share/containers/oci/hooks.d naming that path, the man page in section 1,
# the runtime wrapper's link next to the binary, the Docker daemon.json and the
# containerd snippet naming the installed paths, a statically linked binary.
set -euo pipefail
rpm=$(realpath "$1")
files=$(rpm -qlp "$rpm")
echo "$files"
fail() { echo "check-rpm: $*" >&2; exit 1; }
grep -qx /usr/libexec/oci/hooks.d/oci-systemd-hook <<<"$files" || fail "binary not in /usr/libexec/oci/hooks.d"
grep -qx /usr/share/containers/oci/hooks.d/oci-systemd-hook.json <<<"$files" || fail "descriptor not in /usr/share/containers/oci/hooks.d"
grep -Eq '^/usr/share/man/man1/oci-systemd-hook\.1(\.gz)?$' <<<"$files" || fail "man page not in section 1"
grep -qx /usr/libexec/oci/hooks.d/oci-systemd-runtime <<<"$files" || fail "no oci-systemd-runtime link next to the binary"
grep -qx /usr/share/oci-systemd-hook/docker/daemon.json <<<"$files" || fail "no docker/daemon.json"
grep -qx /usr/share/oci-systemd-hook/containerd/oci-systemd.toml <<<"$files" || fail "no containerd/oci-systemd.toml"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && rpm2cpio "$rpm" | cpio -idm --quiet)
grep -q '"path": "/usr/libexec/oci/hooks.d/oci-systemd-hook"' "$tmp/usr/share/containers/oci/hooks.d/oci-systemd-hook.json" \
  || fail "descriptor does not name the installed binary"
[ "$(readlink "$tmp/usr/libexec/oci/hooks.d/oci-systemd-runtime")" = oci-systemd-hook ] \
  || fail "oci-systemd-runtime is not a link to oci-systemd-hook"
grep -q '"path": "/usr/libexec/oci/hooks.d/oci-systemd-hook"' "$tmp/usr/share/oci-systemd-hook/docker/daemon.json" \
  || fail "daemon.json does not name the installed binary"
grep -q 'BinaryName = "/usr/libexec/oci/hooks.d/oci-systemd-runtime"' "$tmp/usr/share/oci-systemd-hook/containerd/oci-systemd.toml" \
  || fail "the containerd snippet does not name the installed link"
# Linked statically (.cargo/config.toml, the spec's RUSTFLAGS): no dynamic loader.
if LC_ALL=C readelf -lW "$tmp/usr/libexec/oci/hooks.d/oci-systemd-hook" | grep -q 'program interpreter'; then
  fail "the binary is dynamically linked"
fi
"$tmp/usr/libexec/oci/hooks.d/oci-systemd-hook" --version
echo "check-rpm: ok"
