#!/usr/bin/env bash
# Checks a built RPM: the binary in /usr/libexec/oci/hooks.d, the descriptor in
# /usr/share/containers/oci/hooks.d naming that path, the man page in section 1.
set -euo pipefail
rpm=$(realpath "$1")
files=$(rpm -qlp "$rpm")
echo "$files"
fail() { echo "check-rpm: $*" >&2; exit 1; }
grep -qx /usr/libexec/oci/hooks.d/oci-systemd-hook <<<"$files" || fail "binary not in /usr/libexec/oci/hooks.d"
grep -qx /usr/share/containers/oci/hooks.d/oci-systemd-hook.json <<<"$files" || fail "descriptor not in /usr/share/containers/oci/hooks.d"
grep -Eq '^/usr/share/man/man1/oci-systemd-hook\.1(\.gz)?$' <<<"$files" || fail "man page not in section 1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && rpm2cpio "$rpm" | cpio -idm --quiet)
grep -q '"path": "/usr/libexec/oci/hooks.d/oci-systemd-hook"' "$tmp/usr/share/containers/oci/hooks.d/oci-systemd-hook.json" \
  || fail "descriptor does not name the installed binary"
"$tmp/usr/libexec/oci/hooks.d/oci-systemd-hook" --version
echo "check-rpm: ok"
