//! Host facts, gathered once before planning: the cgroup layout, the
//! container's cgroups (`/proc/<pid>/cgroup`), the hierarchies' mount points
//! (from the mount table as [`crate::mountinfo`] reads it, the one way the
//! hook reads mount points), the memory limit, SELinux, the host's
//! machine-id, the image's systemd version ([`crate::image`]), which
//! picks the cgroup model ([`crate::cgmodel`]), and whether
//! systemd-machined may be there.

use std::path::{Path, PathBuf};

use anyhow::Context;

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
    /// Whether the hook may register the container with systemd-machined
    /// ([`crate::machine::probe`]).
    pub machined: crate::machine::Machined,
    /// The image's systemd version (`libsystemd-shared-<N>.so`), `None` when
    /// none was found.
    pub image_systemd: Option<u32>,
}

/// Reads the host facts for the container whose init is `pid` and whose
/// rootfs is `rootfs` (as config.json's `root.path`, resolved inside
/// `/proc/<pid>/root`, else from the hook's root; `None`: the image's
/// systemd is not looked up); without a pid only the host side (layout,
/// hierarchies) is read and the container's cgroups are left empty.
///
/// # Errors
/// Unknown cgroup layout, or `/proc/<pid>` unreadable (the process is
/// gone). A rootfs that cannot be opened gives no systemd version.
pub fn host_facts(pid: Option<i32>, rootfs: Option<&Path>) -> anyhow::Result<HostFacts> {
    let layout = cgroup::detect_layout()?;
    // A rootfs that cannot be opened here cannot be opened by `apply`
    // either (the same lookup), which then fails or refuses with the reason.
    let image_systemd = match rootfs.map(|r| crate::image::image_systemd(pid, r)) {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            log::debug!("{e:#}; no systemd version");
            None
        }
        None => None,
    };
    let cgroups = match pid {
        Some(pid) => cgroup::read_container_cgroups(pid)
            .with_context(|| format!("read /proc/{pid}/cgroup"))?,
        None => Default::default(),
    };
    let mounts = crate::mountinfo::read(None).context("read the host's mount table")?;
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
        host_machine_id: host_machine_id(),
        image_systemd,
        machined: crate::machine::probe(),
    })
}

/// The host's own machine-id: `/etc/machine-id` (machine-id(5)) as the hook
/// sees it, when it holds a valid one.
pub fn host_machine_id() -> Option<String> {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .and_then(|s| crate::machine_id::MachineId::parse(s.trim()))
        .map(|m| m.to_string())
}

/// Whether SELinux is enabled: selinuxfs is mounted at `/sys/fs/selinux`
/// (statfs magic `SELINUX_MAGIC`), as libselinux's `is_selinux_enabled`
/// decides.
pub fn selinux_enabled() -> bool {
    rustix::fs::statfs("/sys/fs/selinux").is_ok_and(|s| s.f_type == libc::SELINUX_MAGIC)
}
