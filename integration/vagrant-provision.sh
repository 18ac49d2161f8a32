#!/usr/bin/env bash
# Vagrant provisioning (Fedora box): the same setup script and suite as the
# local run, against a Fedora systemd image built from Containerfile.fedora.
set -euo pipefail
cd "$(dirname "$0")/.."
integration/setup-host.sh
dnf -y install make git >/dev/null
make build
podman build -t localhost/oci-systemd-hook-fedora -f integration/Containerfile.fedora integration/
if OSH_DOCKER=0 OSH_IMAGE=localhost/oci-systemd-hook-fedora integration/run-suite.sh; then
  echo "oci-systemd-hook conformance in Fedora: PASS"
else
  echo "oci-systemd-hook conformance in Fedora: FAIL"
  exit 1
fi
