//! The host's cgroup layout and the container's place in it.
//!
//! Layouts as systemd names them (systemd `src/basic/cgroup-util.c`,
//! `cg_unified_cached`): `/sys/fs/cgroup` is cgroup2 → unified; a tmpfs with
//! cgroup2 at `/sys/fs/cgroup/unified` → hybrid; a tmpfs without it → legacy.
//! The container's cgroup comes from `/proc/<pid>/cgroup` (parsed by the
//! `procfs` crate), read from the host's cgroup namespace so that paths are
//! relative to the hierarchies' roots even with `--cgroupns=private`.

use std::io;
use std::path::{Path, PathBuf};

use procfs::ProcessCGroup;

use crate::mountinfo::Mount;

/// Where the host mounts the cgroup file systems.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2 only (`/sys/fs/cgroup` is cgroup2).
    Unified,
    /// v1 hierarchies plus cgroup2 at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// v1 hierarchies only.
    Legacy,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Unified => "unified",
            Layout::Hybrid => "hybrid",
            Layout::Legacy => "legacy",
        })
    }
}

fn fs_type(path: &Path) -> io::Result<i64> {
    Ok(rustix::fs::statfs(path)?.f_type as i64)
}

/// Detects the layout with statfs(2) on `/sys/fs/cgroup` (and `unified`).
///
/// # Errors
/// I/O errors from statfs, or `InvalidData` when `/sys/fs/cgroup` is neither
/// cgroup2 nor tmpfs.
pub fn detect_layout() -> io::Result<Layout> {
    let root = Path::new(CGROUP_ROOT);
    match fs_type(root)? {
        t if t == libc::CGROUP2_SUPER_MAGIC => Ok(Layout::Unified),
        t if t == libc::TMPFS_MAGIC => match fs_type(&root.join("unified")) {
            Ok(t) if t == libc::CGROUP2_SUPER_MAGIC => Ok(Layout::Hybrid),
            _ => Ok(Layout::Legacy),
        },
        t => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{CGROUP_ROOT} has unknown file system type {t:#x}"),
        )),
    }
}

/// The container's cgroup paths, each relative to its hierarchy's root
/// (as `/proc/<pid>/cgroup` gives them: absolute-looking, e.g.
/// `/libpod_parent/libpod-<id>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerCgroups {
    /// The v1 `name=systemd` hierarchy's path.
    pub systemd: Option<PathBuf>,
    /// The v1 `memory` controller's path.
    pub memory: Option<PathBuf>,
    /// The cgroup2 (`0::`) path.
    pub unified: Option<PathBuf>,
}

/// Picks the paths the hook needs out of `/proc/<pid>/cgroup` entries.
pub fn container_cgroups<'a>(
    entries: impl IntoIterator<Item = &'a ProcessCGroup>,
) -> ContainerCgroups {
    let mut out = ContainerCgroups::default();
    for e in entries {
        let path = Some(PathBuf::from(&e.pathname));
        if e.hierarchy == 0 && e.controllers.is_empty() {
            out.unified = path;
        } else if e.controllers.iter().any(|c| c == "name=systemd") {
            out.systemd = path;
        } else if e.controllers.iter().any(|c| c == "memory") {
            out.memory = path;
        }
    }
    out
}

/// Reads the container's cgroups from `/proc/<pid>/cgroup` (parsed by
/// `procfs`; the file opened by path, as `procfs::process::Process` would
/// open it, without its kernel-version probe and `/proc/<pid>` handle).
///
/// # Errors
/// The process is gone or /proc is unreadable.
pub fn read_container_cgroups(pid: i32) -> procfs::ProcResult<ContainerCgroups> {
    use procfs::FromRead;
    let cgroups = procfs::ProcessCGroups::from_file(format!("/proc/{pid}/cgroup"))?;
    Ok(container_cgroups(&cgroups))
}

/// The mount point of the v1 hierarchy that carries `controller` (`memory`,
/// or `name=systemd` for systemd's named hierarchy) in a mount table whose
/// mount root is the hierarchy's root.
pub fn v1_mount_point<'a>(
    mounts: impl IntoIterator<Item = &'a Mount>,
    controller: &str,
) -> Option<PathBuf> {
    let (key, value) = match controller.split_once('=') {
        Some((k, v)) => (k, Some(std::ffi::OsStr::new(v))),
        None => (controller, None),
    };
    mounts
        .into_iter()
        .find(|m| {
            m.fs_type == "cgroup"
                && m.root == Path::new("/")
                && m.super_options.get(key).is_some_and(|v| v == value)
        })
        .map(|m| m.mount_point.clone())
}

/// The mount point of the cgroup2 hierarchy whose mount root is its root.
pub fn v2_mount_point<'a>(mounts: impl IntoIterator<Item = &'a Mount>) -> Option<PathBuf> {
    mounts
        .into_iter()
        .find(|m| m.fs_type == "cgroup2" && m.root == Path::new("/"))
        .map(|m| m.mount_point.clone())
}

/// Parses a memory limit file: v1 `memory.limit_in_bytes` (values at or above
/// 2^62 mean "no limit") or v2 `memory.max` (`max` means "no limit").
/// Returns bytes, or `None` for no limit or an unreadable value.
pub fn parse_memory_limit(contents: &str) -> Option<u64> {
    let v = contents.trim();
    if v == "max" {
        return None;
    }
    v.parse::<u64>()
        .ok()
        .filter(|b| *b > 0 && *b < (1u64 << 62))
}

/// Reads the container's memory limit from its cgroup: the v1 memory
/// controller's `memory.limit_in_bytes` (hybrid and legacy) or cgroup2's
/// `memory.max` (unified). The cgroup path is resolved beneath the hierarchy's
/// mount point. `None` when there is no limit or nothing can be read.
pub fn read_memory_limit(mount_point: &Path, cgroup: &Path, file: &str) -> Option<u64> {
    let root = pathrs::Root::open(mount_point).ok()?;
    let rel = cgroup.join(file);
    // One openat2 inside the hierarchy, no O_PATH handle to reopen.
    let f = root
        .open_subpath(&rel, pathrs::flags::OpenFlags::O_RDONLY)
        .ok()?;
    let mut s = String::new();
    io::Read::read_to_string(&mut io::Read::take(f, 64), &mut s).ok()?;
    parse_memory_limit(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::{FromBufRead, ProcessCGroups};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc-cgroup");
    const CG: &str = "4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

    fn fixture(name: &str) -> ContainerCgroups {
        let f = std::fs::File::open(format!("{FIXTURES}/{name}")).unwrap();
        let parsed = ProcessCGroups::from_buf_read(std::io::BufReader::new(f)).unwrap();
        container_cgroups(&parsed)
    }

    #[test]
    fn hybrid_fixture() {
        let c = fixture("hybrid-v1-podman-crun.txt");
        let want = PathBuf::from(format!("/libpod_parent/libpod-{CG}"));
        assert_eq!(c.systemd.as_ref(), Some(&want));
        assert_eq!(c.memory.as_ref(), Some(&want));
        assert_eq!(c.unified.as_ref(), Some(&want));
    }

    #[test]
    fn unified_fixtures_have_no_v1_paths() {
        let c = fixture("unified-v2-systemd-host.txt");
        assert_eq!(c.systemd, None);
        assert_eq!(
            c.unified,
            Some(PathBuf::from(format!(
                "/machine.slice/libpod-{CG}.scope/container"
            )))
        );
        let c = fixture("unified-v2-rootless.txt");
        assert_eq!(c.systemd, None);
        assert!(c.unified.unwrap().starts_with("/user.slice"));
    }

    fn mounts(text: &str) -> Vec<Mount> {
        crate::mountinfo::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn mount_points_from_mountinfo() {
        let m = mounts(
            "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
             35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             36 30 0:32 /inner /sys/fs/cgroup/systemd-inner rw - cgroup cgroup rw,name=systemd\n\
             37 30 0:33 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             38 30 0:34 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n\
             39 30 0:35 / /sys/fs/cgroup/x\\040y rw - cgroup cgroup rw,pids\n",
        );
        assert_eq!(
            v1_mount_point(&m, "name=systemd"),
            Some(PathBuf::from("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(
            v1_mount_point(&m, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            v1_mount_point(&m, "pids"),
            Some(PathBuf::from("/sys/fs/cgroup/x y"))
        );
        assert_eq!(v1_mount_point(&m, "cpu"), None);
        assert_eq!(
            v2_mount_point(&m),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn memory_limits() {
        assert_eq!(parse_memory_limit("536870912\n"), Some(536870912));
        assert_eq!(parse_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("garbage"), None);
        assert_eq!(parse_memory_limit("0"), None);
    }

    #[test]
    fn this_host_layout_is_detected() {
        // Whatever the host is, detection must give an answer, not an error.
        detect_layout().expect("a known cgroup layout");
    }
}
