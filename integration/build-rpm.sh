#!/usr/bin/env bash
# Builds the binary RPM from a `make dist` tarball into build/rpm/:
#   integration/build-rpm.sh build/oci-systemd-hook-VERSION.tar.gz
# --nodeps: on a Debian builder the BuildRequires are not rpm packages.
set -euo pipefail
tarball=$(realpath "$1")
top=$(realpath "$(dirname "$0")/..")/build/rpm
rm -rf "$top"
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
cp "$tarball" "$top/SOURCES/"
tar -xzOf "$tarball" --wildcards '*/oci-systemd-hook.spec' > "$top/SPECS/oci-systemd-hook.spec"
rpmbuild -bb --nodeps --define "_topdir $top" "$top/SPECS/oci-systemd-hook.spec" >&2
ls "$top"/RPMS/*/*.rpm
