#!/usr/bin/env bash
# Validates the Kubernetes manifests against the Kubernetes JSON schemas
# (kubernetes-validate from PyPI, schemas bundled: no network beyond the
# install), parses the CRI-O drop-in and the containerd snippet as TOML and
# the Docker daemon.json as JSON.
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
with open("deploy/containerd/oci-systemd.toml", "rb") as f:
    conf = tomllib.load(f)
rt = conf["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["oci-systemd"]
assert rt["runtime_type"] == "io.containerd.runc.v2", rt
assert rt["options"]["BinaryName"] == "/usr/libexec/oci/hooks.d/oci-systemd-runtime", rt
print("deploy/containerd/oci-systemd.toml: BinaryName =", rt["options"]["BinaryName"])
PY
python3 - <<'PY'
import json
with open("deploy/docker/daemon.json") as f:
    rt = json.load(f)["runtimes"]["oci-systemd"]
assert rt["path"] == "/usr/libexec/oci/hooks.d/oci-systemd-hook", rt
assert rt["runtimeArgs"][:1] == ["runtime"], rt
print("deploy/docker/daemon.json: oci-systemd =", rt)
PY
