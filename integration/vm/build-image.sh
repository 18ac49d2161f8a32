#!/usr/bin/env bash
# Builds (once) a Debian VM image for integration/vm/run.sh and prints the
# directory that holds it: root.img (ext4, no partition table), vmlinuz,
# initrd.img (direct kernel boot), packages.txt.
#
#   build-image.sh [SUITE]     SUITE: bookworm (default; podman 4.3, systemd
#                              252) or trixie (podman 5.4, systemd 257), ...
#
# Everything comes from apt packages: for the host's own suite mmdebstrap is
# given no mirror, so it uses the apt sources already configured on this
# machine; for another suite, the machine's own mirror (host-mirror.sh). The
# image also holds the container rootfs images the bats suite boots
# (integration/build-rootfs.sh): the host's suite at
# /var/lib/oci-systemd-hook/rootfs, sid (systemd >= 258, cgroup v2 only) at
# /var/lib/oci-systemd-hook/rootfs-sid, so the guest needs no network, and a
# bootstrap unit (osh-vm.service) that, when the VM is started with a second
# disk, unpacks the tar on it (the hook, integration/, hooks.d/) and runs
# integration/vm/guest.sh from it; guest.sh lives in that tar, not in the
# image, so changing it needs no rebuild.
#
# Cached under OSH_VM_CACHE (default /var/cache/oci-systemd-hook/vm), keyed by
# a hash of the package list, this script and the container rootfs' name;
# older keys are removed after a successful build. The ext4 image is made with
# `mkfs.ext4 -d` (no loop mounts). Run as root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${OSH_VM_CACHE:-/var/cache/oci-systemd-hook/vm}
suite=${1:-bookworm}
case "$suite" in *[!a-z0-9-]* | "") echo "build-image: bad suite '$suite'" >&2; exit 2 ;; esac
. /etc/os-release
host_suite=${VERSION_CODENAME:-bookworm}

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"

# The guest: kernel + initrd for direct boot, systemd as PID 1, the container
# stack, bats and what the suite calls (findmnt, mountpoint, nsenter:
# util-linux; journalctl: systemd; stat, od, head: coreutils; awk: mawk;
# diff: diffutils; tar for the input disk; systemd-machined and machinectl:
# systemd-container, for integration/machine.bats).
packages=(
  linux-image-cloud-amd64 initramfs-tools udev kmod
  systemd systemd-sysv dbus
  podman crun runc conmon netavark catatonit iptables
  docker.io containerd systemd-container
  uidmap dbus-user-session libpam-systemd
  bats util-linux procps coreutils mawk diffutils findutils grep sed tar gzip
)

# --- host tools --------------------------------------------------------------
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# The container rootfs images the suite boots inside the guest (cached on
# their own): the host's suite (bookworm) and sid.
rootfs=$("$here/../build-rootfs.sh")
rootfs_sid=$("$here/../build-rootfs.sh" sid)

key=$( { printf '%s\n' "$suite" "${packages[@]}" "$(basename "$rootfs")" "$(basename "$rootfs_sid")"; cat "$0"; } | sha256sum | cut -c1-12)
out="$cache/$suite-$key"

if [ -f "$out.done" ] && [ -f "$out/root.img" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ]; then
  log "cached: $out"
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
tmp="$cache/.tmp-$key.$$"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$out" "$out.done"
mkdir -p "$tmp"
log "building the $suite VM image in $out (a few minutes)"
t0=$(date +%s)

# The bootstrap unit and script, written into the tree by a customize hook.
# The unit runs after multi-user.target (so boot is done) and only when the
# input disk is there; the VM powers off when it ends, success or not.
cat > "$tmp/osh-vm.service" <<'UNIT'
[Unit]
Description=oci-systemd-hook VM test run (input on /dev/vdb)
After=multi-user.target
ConditionPathExists=/dev/vdb

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/osh-vm-boot
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
SuccessAction=poweroff
FailureAction=poweroff

[Install]
WantedBy=multi-user.target
UNIT
cat > "$tmp/osh-vm-boot" <<'BOOT'
#!/bin/sh
# Unpacks the input disk (a plain tar on /dev/vdb) and runs the guest script
# in it; the script writes its results (a tar) onto /dev/vdc.
set -e
work=/var/lib/osh-vm/work
rm -rf "$work"; mkdir -p "$work"
tar -xf /dev/vdb -C "$work"
exec "$work/integration/vm/guest.sh"
BOOT

inc=$(IFS=,; echo "${packages[*]}")
# The host's suite: no mirror argument, mmdebstrap uses this machine's apt
# sources. Another suite: the machine's mirror, main archive only (a Release
# past its Valid-Until is accepted, as build-rootfs.sh does).
mirror=() aptopt=()
if [ "$suite" != "$host_suite" ]; then
  mirror=("$("$here/../host-mirror.sh")")
  aptopt=(--aptopt='Acquire::Check-Valid-Until "false"')
fi
mmdebstrap --variant=minbase "${aptopt[@]}" --include="$inc" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='echo osh-vm > "$1/etc/hostname"' \
  --customize-hook='printf "/dev/vda / ext4 rw,relatime 0 1\n" > "$1/etc/fstab"' \
  --customize-hook='chroot "$1" systemd-machine-id-setup' \
  --customize-hook="install -m 0644 '$tmp/osh-vm.service' \"\$1/etc/systemd/system/osh-vm.service\"" \
  --customize-hook="install -m 0755 '$tmp/osh-vm-boot' \"\$1/usr/local/sbin/osh-vm-boot\"" \
  --customize-hook='chroot "$1" systemctl enable osh-vm.service' \
  --customize-hook='chroot "$1" systemctl mask systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer podman-auto-update.timer podman-restart.service docker.service docker.socket containerd.service' \
  --customize-hook='mkdir -p "$1/var/log/journal"' \
  "$suite" "$tmp/tree" "${mirror[@]}" >&2

# The container rootfs images, as plain directories the suite overlays (DIR:O).
mkdir -p "$tmp/tree/var/lib/oci-systemd-hook"
cp -a "$rootfs" "$tmp/tree/var/lib/oci-systemd-hook/rootfs"
cp -a "$rootfs_sid" "$tmp/tree/var/lib/oci-systemd-hook/rootfs-sid"

kernel=$(find "$tmp/tree/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
initrd=$(find "$tmp/tree/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
[ -n "$kernel" ] && [ -n "$initrd" ] || die "no kernel/initrd in the tree's /boot"

mkdir -p "$tmp/out"
cp "$kernel" "$tmp/out/vmlinuz"
cp "$initrd" "$tmp/out/initrd.img"
chroot "$tmp/tree" dpkg-query -W -f='${Package} ${Version}\n' > "$tmp/out/packages.txt"

# ext4 image straight from the tree: room for container overlays and podman's
# storage on top of what is there. Sparse on the host.
used=$(du -sm "$tmp/tree" | cut -f1)
size=$(( used * 2 + 2048 ))
[ "$size" -ge 4096 ] || size=4096
mkfs.ext4 -q -F -L osh-vm -d "$tmp/tree" "$tmp/out/root.img" "${size}M" >&2
rm -rf "$tmp/tree"

mv "$tmp/out" "$out"
touch "$out.done"
# Older keys (a changed package list or script) are stale now.
for old in "$cache"/"$suite"-*; do
  [ "$old" = "$out" ] || [ "$old" = "$out.done" ] || rm -rf "$old"
done
log "built in $(( $(date +%s) - t0 )) s: $out ($(du -sh "$out/root.img" | cut -f1) used of ${size} MiB; kernel $(basename "$kernel"))"
echo "$out"
