//! Host facts, gathered once before planning: the cgroup layout, the
//! container's cgroups (`/proc/<pid>/cgroup`), the hierarchies' mount points,
//! the memory limit, SELinux, the host's machine-id; and the one way the hook
//! reads mount points out of a mount table (decoded, see [`mount_point`]).

use std::path::PathBuf;

use anyhow::Context;
use procfs::process::MountInfo;

use crate::cgroup::{self, ContainerCgroups, Layout};

/// Where the host keeps journals.
pub const HOST_JOURNAL_ROOT: &str = "/var/log/journal";

/// Facts about the host and the running container, read once before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The host's cgroup layout.
    pub layout: Layout,
    /// The container's cgroups, from `/proc/<pid>/cgroup`.
    pub cgroups: ContainerCgroups,
    /// Host mount point of the v1 `name=systemd` hierarchy.
    pub systemd_mount: Option<PathBuf>,
    /// Host mount point of the cgroup2 hierarchy.
    pub unified_mount: Option<PathBuf>,
    /// The container's memory limit read from its cgroup, in bytes.
    pub cgroup_memory_limit: Option<u64>,
    /// The host's journal directory root (normally `/var/log/journal`).
    pub journal_root: PathBuf,
    /// Whether SELinux is enabled on the host (selinuxfs mounted); without
    /// it a `context=` option would make the mount fail.
    pub selinux: bool,
    /// The host's own machine-id (`/etc/machine-id`), when readable.
    pub host_machine_id: Option<String>,
}

/// Reads the host facts for the container whose init is `pid`; without a
/// pid only the host side (layout, hierarchies) is read and the container's
/// cgroups are left empty.
///
/// # Errors
/// Unknown cgroup layout, or `/proc/<pid>` unreadable (the process is gone).
pub fn host_facts(pid: Option<i32>) -> anyhow::Result<HostFacts> {
    let layout = cgroup::detect_layout()?;
    let cgroups = match pid {
        Some(pid) => cgroup::read_container_cgroups(pid)
            .with_context(|| format!("read /proc/{pid}/cgroup"))?,
        None => Default::default(),
    };
    let mounts = own_mount_table()?;
    let systemd_mount = cgroup::v1_mount_point(&mounts, "name=systemd");
    let unified_mount = cgroup::v2_mount_point(&mounts);
    let cgroup_memory_limit = match layout {
        Layout::Unified => unified_mount
            .clone()
            .zip(cgroups.unified.as_ref())
            .and_then(|(m, c)| cgroup::read_memory_limit(&m, c, "memory.max")),
        Layout::Hybrid | Layout::Legacy => cgroup::v1_mount_point(&mounts, "memory")
            .zip(cgroups.memory.as_ref())
            .and_then(|(m, c)| cgroup::read_memory_limit(&m, c, "memory.limit_in_bytes")),
    };
    Ok(HostFacts {
        layout,
        cgroups,
        systemd_mount,
        unified_mount,
        cgroup_memory_limit,
        journal_root: PathBuf::from(HOST_JOURNAL_ROOT),
        selinux: selinux_enabled(),
        host_machine_id: std::fs::read_to_string("/etc/machine-id")
            .ok()
            .and_then(|s| crate::machine_id::MachineId::parse(s.trim()))
            .map(|m| m.to_string()),
    })
}

/// Whether SELinux is enabled: selinuxfs is mounted at `/sys/fs/selinux`
/// (statfs magic `SELINUX_MAGIC`), as libselinux's `is_selinux_enabled`
/// decides.
pub fn selinux_enabled() -> bool {
    rustix::fs::statfs("/sys/fs/selinux").is_ok_and(|s| s.f_type == libc::SELINUX_MAGIC)
}

/// The mount table of the calling thread's mount namespace
/// (`/proc/thread-self/mountinfo` as the `procfs` crate parses it). Read its
/// mount points with [`mount_point`].
///
/// # Errors
/// `/proc` unreadable or a line the parser rejects.
pub fn own_mount_table() -> anyhow::Result<Vec<MountInfo>> {
    Ok(procfs::process::Process::myself()?.mountinfo()?.0)
}

/// A mountinfo entry's mount point with the kernel's octal escapes
/// (`\040` space, `\011` tab, `\012` newline, `\134` backslash, from
/// `seq_path`'s mangling in `fs/proc_namespace.c`) decoded: the real path.
/// The only way the hook reads a mount point.
pub fn mount_point(m: &MountInfo) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let b = m.mount_point.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = |c: u8| (b'0'..=b'7').contains(&c);
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| oct(*c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        let m = MountInfo::from_line(
            r"100 1 0:1 / /c/root\040fs/run/a\011b\012c\134d rw - tmpfs tmpfs rw",
        )
        .unwrap();
        assert_eq!(mount_point(&m), PathBuf::from("/c/root fs/run/a\tb\nc\\d"));
        let m = MountInfo::from_line(r"101 1 0:1 / /c/trailing\04 rw - tmpfs tmpfs rw").unwrap();
        assert_eq!(mount_point(&m), PathBuf::from(r"/c/trailing\04"));
    }
}
