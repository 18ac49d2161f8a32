//! Privileged test: the runtime and the hook run inside a plain `chroot`
//! (issue 13 §4: podman run from a chroot, not a pivot_root'ed tree).
//!
//! The container's mount namespace is cloned from the chrooted runtime's, so
//! its real root is the host's `/`; the hook's `setns` into it resets the
//! hook's root to that real root, where `root.path` (a path inside the chroot)
//! does not exist. The hook resolves the rootfs through the container
//! process's own root (`/proc/<pid>/root`, the chroot as the runtime sees it)
//! instead. Everything the test makes lives in a private mount namespace (a
//! `unshare -m` shell) and a temp dir; the sleeper's cgroups are removed by
//! pid at the end.
//!
//! Needs root, util-linux (`unshare`, `chroot` from coreutils) and runs
//! serially with the other privileged tests (`make test-privileged`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The scenario as a shell script run in its own mount namespace. It prints
/// `KEY=value` lines the test asserts on, and exits non-zero only when the
/// set-up itself fails.
const SCRIPT: &str = r#"
set -eu
C=$1 HOOKBIN=$2 CG=$3 BROKEN=${4:-}
for d in usr lib lib64 bin sbin etc; do
  if [ -d "/$d" ] && [ ! -L "/$d" ]; then mkdir -p "$C/$d"; mount --rbind "/$d" "$C/$d"; fi
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$C/$d"; fi
done
for d in proc sys dev; do mkdir -p "$C/$d"; mount --rbind "/$d" "$C/$d"; done
mkdir -p "$C/hook" "$C/var/log/journal" "$C/b/rootfs/run/lock" "$C/b/rootfs/tmp" \
  "$C/b/rootfs/etc" "$C/b/rootfs/var/log" "$C/b/rootfs/sys/fs/cgroup" "$C/b/rootfs/proc"
cp "$HOOKBIN" "$C/hook/oci-systemd-hook"
: > "$C/b/rootfs/etc/machine-id"
echo seed > "$C/b/rootfs/run/seed-run"
# "broken": the namespace step fails (a file where /run/lock must be a dir),
# after the host side has made the journal dir.
if [ "$BROKEN" = broken ]; then rm -rf "$C/b/rootfs/run/lock"; echo x > "$C/b/rootfs/run/lock"; fi
cat > "$C/b/config.json" <<'J'
{"ociVersion":"1.0.2","root":{"path":"rootfs"},
 "process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["/sbin/init"]},
 "linux":{"namespaces":[{"type":"mount"}]}}
J
# The "runtime's init": chrooted like the runtime, in its own mount namespace
# (the chroot's / is not a mount point: propagation stays as it is).
chroot "$C" unshare -m --propagation unchanged sleep 600 </dev/null >/dev/null 2>&1 &
sleeper=$!
trap 'kill "$sleeper" 2>/dev/null || true' EXIT
pid=
for _ in $(seq 200); do
  # chroot execs unshare, which execs sleep: same pid, new mount namespace.
  if [ "$(basename "$(readlink "/proc/$sleeper/exe" || true)")" = sleep ] &&
     [ "$(readlink "/proc/$sleeper/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ]; then
    pid=$sleeper; break
  fi
  sleep 0.05
done
[ -n "$pid" ] || { echo "SETUP=no sleeper in a new mount namespace"; exit 1; }
for d in $CG; do echo "$pid" > "$d/cgroup.procs"; done
id=chroot0123456789abcdef0123456789abcdef0123456789abcdef0123456789
state='{"ociVersion":"1.0.2","id":"'$id'","status":"creating","pid":'$pid',"bundle":"/b"}'
rc=0; printf '%s' "$state" | chroot "$C" /hook/oci-systemd-hook prestart 2>"$C/prestart.err" || rc=$?
echo "PRESTART_RC=$rc"
sed 's/^/PRESTART_ERR=/' "$C/prestart.err"
# The sleeper's mountinfo and /proc/<pid>/root show its own (chrooted) view.
echo "RUN_FS=$(awk -v p="/b/rootfs/run" '$5 == p {t=$0} END {split(t, a, " - "); split(a[2], b, " "); print b[1]}' "/proc/$pid/mountinfo")"
echo "SEED=$(cat "/proc/$pid/root/b/rootfs/run/seed-run" 2>/dev/null || true)"
echo "MACHINE_ID=$(cat "$C/b/rootfs/etc/machine-id")"
echo "JOURNAL_DIRS=$(ls "$C/var/log/journal" | tr '\n' ' ')"
kill "$pid" "$sleeper" 2>/dev/null || true
wait "$sleeper" 2>/dev/null || true
poststop='{"ociVersion":"1.0.2","id":"'$id'","status":"stopped","bundle":"/b"}'
rc=0; printf '%s' "$poststop" | env -i PWD=/ "$(command -v chroot)" "$C" /hook/oci-systemd-hook poststop 2>"$C/poststop.err" || rc=$?
echo "POSTSTOP_RC=$rc"
sed 's/^/POSTSTOP_ERR=/' "$C/poststop.err"
echo "MACHINE_ID_AFTER=$(cat "$C/b/rootfs/etc/machine-id")"
"#;

/// Runs [`SCRIPT`] in a fresh temp dir; returns its `KEY=value` output.
fn run_scenario(broken: bool) -> (String, tempfile::TempDir) {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("osh-chroot-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let c = dir.path().join("c");
    std::fs::create_dir(&c).unwrap();
    let cgroups = TestCgroups::new("chroot");
    let out = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "bash",
            "-c",
            SCRIPT,
            "script",
        ])
        .arg(&c)
        .arg(HOOK)
        .arg(cgroups.dirs_arg())
        .arg(if broken { "broken" } else { "" })
        .output()
        .expect("unshare(1) from util-linux");
    drop(cgroups);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "set-up failed: {text}\n{stderr}");
    (text, dir)
}

fn get(text: &str, k: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{k}=")))
        .unwrap_or_else(|| panic!("no {k} in: {text}"))
        .to_string()
}

#[test]
#[serial_test::serial]
fn a_hook_run_from_a_plain_chroot_prepares_the_rootfs_the_runtime_sees() {
    let host_before = host_mounts();
    let (text, _dir) = run_scenario(false);
    let get = |k: &str| get(&text, k);
    assert_eq!(get("PRESTART_RC"), "0", "prestart from a chroot:\n{text}");
    assert_eq!(get("RUN_FS"), "tmpfs", "/run is a tmpfs inside:\n{text}");
    assert_eq!(get("SEED"), "seed", "image content copied up:\n{text}");
    let machine_id = get("MACHINE_ID");
    assert_eq!(machine_id.len(), 32, "machine-id written:\n{text}");
    assert_eq!(
        get("JOURNAL_DIRS").trim(),
        machine_id,
        "the journal dir is made in the chroot's /var/log/journal:\n{text}"
    );
    assert_eq!(get("POSTSTOP_RC"), "0", "poststop from a chroot:\n{text}");
    assert_eq!(get("MACHINE_ID_AFTER"), "", "poststop empties it:\n{text}");
    assert_eq!(host_mounts(), host_before, "no mount left on the host");
    assert!(
        !Path::new("/var/log/journal").join(&machine_id).exists(),
        "nothing made in the host's own /var/log/journal"
    );
}

#[test]
#[serial_test::serial]
fn a_failed_prestart_from_a_chroot_removes_the_journal_dir_it_made() {
    let (text, _dir) = run_scenario(true);
    let get = |k: &str| get(&text, k);
    assert_eq!(get("PRESTART_RC"), "1", "the namespace step fails:\n{text}");
    assert!(
        text.contains("not a directory"),
        "fails for the /run/lock file:\n{text}"
    );
    assert_eq!(
        get("JOURNAL_DIRS").trim(),
        "",
        "the journal dir made on the host side is removed again, by fd:\n{text}"
    );
    assert!(!text.contains("cannot remove"), "{text}");
}
