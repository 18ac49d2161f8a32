#!/usr/bin/env bash
# Validates the Kubernetes manifests against the Kubernetes JSON schemas
# (kubernetes-validate from PyPI, schemas bundled: no network beyond the
# install) and parses the CRI-O drop-in as TOML.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/venv-manifests
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; python3 -m pip install -q virtualenv && python3 -m virtualenv -q "$venv"; }
  "$venv/bin/pip" install -q kubernetes-validate
fi
"$venv/bin/kubernetes-validate" --strict -k 1.30.0 deploy/kubernetes/*.yaml
python3 - <<'PY'
import tomllib
with open("deploy/crio/50-oci-systemd-hook.conf", "rb") as f:
    conf = tomllib.load(f)
dirs = conf["crio"]["runtime"]["hooks_dir"]
assert "/etc/containers/oci/hooks.d" in dirs, dirs
print("deploy/crio/50-oci-systemd-hook.conf: hooks_dir =", dirs)
PY
