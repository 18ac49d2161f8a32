//! The safety policy: what the hook refuses to do, as pure functions over a
//! parsed mount table, mount ids and file identities. No system call here;
//! the callers in `host.rs` and `container.rs` gather the ids and call these.
//!
//! The rules (see `apply`'s module docs for why):
//! - create and write inside the rootfs only on the image's own file system,
//!   the tmpfs mounts the hook made and config.json's own tmpfs mounts
//!   ([`writable_mounts`], [`check_writable`]);
//! - never attach a mount onto a mount that is shared with another
//!   namespace ([`check_attach`]);
//! - never work on a rootfs that is the namespace's or the host's root, by
//!   device and inode ([`check_rootfs`]), nor mount over the rootfs root
//!   ([`check_not_root`]);
//! - write or empty `/etc/machine-id` only when it is the image's own file:
//!   on its file system, not the host's, one link ([`foreign_machine_id`]);
//! - never make writable or delegate a cgroup, or a cgroup beneath it, that
//!   holds a process outside the container ([`check_cgroup_members`]);
//! - reuse a host directory only when it carries this container's mark
//!   ([`check_marker`]); at poststop remove only an empty one that a killed
//!   prestart of this container left ([`leftover`]).
//!
//! A broken rule is a [`Refusal`]: its own error kind, distinct from an I/O
//! failure (as libpathrs' `ErrorKind::SafetyViolation`), so that callers and
//! tests tell "refused on purpose" from "failed".

use std::path::{Path, PathBuf};

use crate::mountinfo::Table;

/// A step the hook refused on purpose, because carrying it out would break
/// a safety rule. Each message names what was refused and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The container's init shares the hook's mount namespace: a mount
    /// would land on the host.
    #[error("process {pid} shares the hook's mount namespace; refusing to mount on the host")]
    HookNamespace { pid: i32 },
    /// `root.path` is a root directory (`what`: the mount namespace's or the
    /// host's), e.g. `/` or an alias of it.
    #[error("the rootfs {} is {what}; refusing", rootfs.display())]
    RootfsIsRoot { rootfs: PathBuf, what: &'static str },
    /// The machine-id file in the rootfs is not the image's own (`why`).
    #[error("{} {why}; refusing to write it", dest.display())]
    ForeignMachineId { dest: PathBuf, why: Foreign },
    /// A container path resolves to the rootfs root, which would be mounted
    /// over.
    #[error("{} resolves to the rootfs root; refusing to mount over the whole image", dest.display())]
    RootfsRoot { dest: PathBuf },
    /// A path to create or write in resolves onto a mount the hook may not
    /// write to (`on` describes it: file system type and mount point).
    #[error("{} resolves onto {on}, not the image's own file system; refusing to write there", what.display())]
    NotWritable { what: PathBuf, on: String },
    /// The mount to mount on is shared with another namespace: the new
    /// mount would propagate out of the container.
    #[error("{} is on a shared mount ({fs_type}); a mount there would propagate out of the container", point.display())]
    SharedMount { point: PathBuf, fs_type: String },
    /// The cgroup holds a process outside the container's mount namespace.
    #[error("cgroup {} also holds process {pid}, which is not in the container; refusing to make it writable", cgroup.display())]
    ForeignProcess { cgroup: PathBuf, pid: String },
    /// The parent of a host directory to create is missing.
    #[error("{} does not exist; the hook does not create it (it would change how the host keeps its journal)", parent.display())]
    NoHostParent { parent: PathBuf },
    /// A host directory exists without the hook's mark.
    #[error("{} exists and was not made for this container; not reusing it", path.display())]
    NotOurHostDir { path: PathBuf },
    /// A host directory carries another container's mark (`owner`, its
    /// short id): a container with the same machine-id made it.
    #[error("{} belongs to container {owner} (the same machine-id); not reusing it", path.display())]
    ForeignHostDir { path: PathBuf, owner: String },
    /// `root.path` goes through a `/proc` magic link (`RESOLVE_IN_ROOT`'s
    /// `EXDEV`, `RESOLVE_NO_MAGICLINKS`' `ELOOP`): another process's tree,
    /// never an image. `ELOOP` is also what a symlink loop gives.
    #[error("the rootfs {} is reached through a /proc magic link, an alias of another process's tree (or a symlink loop); refusing", rootfs.display())]
    MagicLinkRootfs { rootfs: PathBuf },
    /// The container's cgroup has more cgroups beneath it than the hook
    /// checks ([`MAX_CGROUPS_CHECKED`]).
    #[error("cgroup {} has more than {MAX_CGROUPS_CHECKED} cgroups beneath it; refusing to make it writable unchecked", cgroup.display())]
    TooManyCgroups { cgroup: PathBuf },
    /// The cgroups beneath the container's list more processes than the
    /// hook reads ([`MAX_PROCS_BYTES`]).
    #[error("the cgroups beneath {} list more than {MAX_PROCS_BYTES} bytes of processes; refusing to make them writable unchecked", cgroup.display())]
    TooManyProcs { cgroup: PathBuf },
    /// A host directory to reuse is not a directory.
    #[error("{} is not a directory", path.display())]
    HostDirNotDir { path: PathBuf },
    /// A container path to mount a directory on is not a directory.
    #[error("{} exists inside the rootfs and is not a directory", dest.display())]
    NotADirectory { dest: PathBuf },
    /// A non-directory is where a directory must be created.
    #[error("cannot make {}: a non-directory is in the way", dest.display())]
    NonDirectoryInTheWay { dest: PathBuf },
    /// A container path cannot be resolved inside the rootfs: a dangling
    /// symlink, a loop or a non-directory in the way.
    #[error("cannot resolve {} inside the rootfs (dangling symlink or non-directory in the way)", path.display())]
    Unresolvable { path: PathBuf },
    /// A file cannot be created: something (a dangling symlink) is there.
    #[error("cannot create {} inside the rootfs (dangling symlink?)", dest.display())]
    CannotCreate { dest: PathBuf },
    /// A directory just made cannot be opened as one: a non-directory,
    /// symlink or mount took its place.
    #[error("cannot make {} a directory inside the rootfs (a non-directory or symlink in the way)", dest.display())]
    NotMadeADirectory { dest: PathBuf },
    /// A file the hook writes or mounts over is not a regular file (a FIFO
    /// would block, a device would be written).
    #[error("not a regular file ({kind})")]
    NotRegularFile { kind: String },
    /// tmpcopyup passed one of its bounds (`copyup::DEFAULT_LIMITS`).
    #[error("copy-up exceeds its bound of {0}")]
    CopyUpBound(String),
}

/// What names a file for "is it the same object": mount id, inode, device
/// major and minor (`statx`).
pub type Identity = (u64, u64, u32, u32);

/// A file's identity: device (major, minor) and inode number. Unlike the
/// mount id it is the same through every alias of the file (a bind mount,
/// `/proc/<pid>/root` of a process in another mount namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: (u32, u32),
    pub ino: u64,
}

/// What the hook knows of a file it found in the rootfs (`statx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    pub id: FileId,
    pub mnt_id: u64,
    pub nlink: u32,
}

/// The host as the hook sees it before joining the container's mount
/// namespace (at poststop: the namespace it runs in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIds {
    /// The hook's own root directory.
    pub root: FileId,
    /// The host's `/etc/machine-id` (symlinks followed), when it exists.
    pub machine_id: Option<FileId>,
}

/// Why a file found at `/etc/machine-id` in the rootfs is not the image's
/// own and must not be written in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// On another mount than the image's own file system.
    OtherMount,
    /// The host's own `/etc/machine-id` (reached through an alias).
    HostMachineId,
    /// A hard link: another name, maybe outside the image, shares the file.
    Linked(u32),
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Foreign::OtherMount => f.write_str("resolves out of the image's own file system"),
            Foreign::HostMachineId => f.write_str("is the host's own /etc/machine-id"),
            Foreign::Linked(n) => write!(
                f,
                "has {n} hard links (another name, maybe outside the image, shares it)"
            ),
        }
    }
}

/// Decides whether the machine-id file `file` is the image's own: on one of
/// the `image_mounts`, not the host's machine-id, a single link.
pub fn foreign_machine_id(
    file: &FileFacts,
    image_mounts: &[u64],
    host_machine_id: Option<FileId>,
) -> Option<Foreign> {
    if host_machine_id == Some(file.id) {
        Some(Foreign::HostMachineId)
    } else if !image_mounts.contains(&file.mnt_id) {
        Some(Foreign::OtherMount)
    } else if file.nlink > 1 {
        Some(Foreign::Linked(file.nlink))
    } else {
        None
    }
}

/// Which root directory the rootfs `root` is, if it is one: the current
/// mount namespace's or the host's. Compared by device and inode, so an
/// alias (`/proc/<pid>/root/.` of a process in another namespace, a bind
/// mount of `/`) is caught too.
pub fn root_alias(root: FileId, namespace_root: FileId, host: &HostIds) -> Option<&'static str> {
    if root == namespace_root {
        Some("the root of the mount namespace")
    } else if root == host.root {
        Some("the host's root directory")
    } else {
        None
    }
}

/// Refuses a rootfs (`rootfs`, identity `root`) that is a root directory
/// (see [`root_alias`]).
pub fn check_rootfs(
    rootfs: &Path,
    root: FileId,
    namespace_root: FileId,
    host: &HostIds,
) -> Result<(), Refusal> {
    match root_alias(root, namespace_root, host) {
        Some(what) => Err(Refusal::RootfsIsRoot {
            rootfs: rootfs.to_path_buf(),
            what,
        }),
        None => Ok(()),
    }
}

/// Refuses when `what` (the rootfs or a mount target) is the same object as
/// `root` (the namespace's `/`, or the rootfs root); `refusal` says which.
pub fn check_not_root(what: Identity, root: Identity, refusal: Refusal) -> Result<(), Refusal> {
    if what == root { Err(refusal) } else { Ok(()) }
}

/// The mounts the hook may create and write on, besides the ones it makes
/// itself: the rootfs mount `root_mnt`, and the topmost mount at each of
/// `tmpfs_dests` (container paths where config.json mounts a tmpfs, or where
/// the hook mounts one: a prestart run again) when it is a tmpfs. `real_root`
/// is the rootfs as mount points in `table` spell it.
pub fn writable_mounts<'a>(
    table: &Table,
    real_root: &Path,
    root_mnt: u64,
    tmpfs_dests: impl IntoIterator<Item = &'a Path>,
) -> Vec<u64> {
    let mut writable = vec![root_mnt];
    for dest in tmpfs_dests {
        let at = real_root.join(dest.strip_prefix("/").unwrap_or(dest));
        if let Some(m) = table.topmost_at(&at)
            && m.fs_type == "tmpfs"
        {
            writable.push(m.id);
        }
    }
    writable
}

/// Refuses unless mount `mnt` (where `what` resolved to) is in `writable`.
pub fn check_writable(
    table: &Table,
    writable: &[u64],
    mnt: u64,
    what: &Path,
) -> Result<(), Refusal> {
    if writable.contains(&mnt) {
        return Ok(());
    }
    let on = table
        .get(mnt)
        .map(|m| {
            format!(
                "{} mounted at {}",
                m.fs_type.display(),
                m.mount_point.display()
            )
        })
        .unwrap_or_else(|| format!("mount {mnt}"));
    Err(Refusal::NotWritable {
        what: what.to_path_buf(),
        on,
    })
}

/// Refuses to attach a mount onto mount `on` when `on` is shared (mountinfo
/// optional field `shared:N`) and not one the hook made (`ours`).
pub fn check_attach(table: &Table, ours: &[u64], on: u64) -> Result<(), Refusal> {
    if ours.contains(&on) {
        return Ok(());
    }
    match table.get(on) {
        Some(m) if m.is_shared() => Err(Refusal::SharedMount {
            point: m.mount_point.clone(),
            fs_type: m.fs_type.to_string_lossy().into_owned(),
        }),
        _ => Ok(()),
    }
}

/// Most cgroups the membership check reads: the container's own and its
/// descendants. At prestart a container has one (systemd has not started
/// yet); past this bound the hook refuses rather than leave some unchecked.
pub const MAX_CGROUPS_CHECKED: usize = 4096;

/// Most bytes of `cgroup.procs` the membership check reads, all cgroups
/// together (1 MiB: some 100 000 pids); past it the hook refuses.
pub const MAX_PROCS_BYTES: u64 = 1 << 20;

/// One thread of a process that a cgroup lists, as `/proc/<pid>/task/<tid>`
/// shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadNs {
    /// The inode of the thread's mount namespace (`ns/mnt`).
    Mnt(u64),
    /// The thread has exited: its task entry is gone, or it is a zombie or
    /// dead (state `Z`, `X`) and so holds no namespace any more.
    Exited,
    /// The thread lives but its `ns/mnt` cannot be read.
    Unreadable,
}

/// A process listed in a cgroup's `cgroup.procs`, as the hook found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// `/proc/<pid>` no longer exists: exited and reaped.
    Gone,
    /// The process's threads (`/proc/<pid>/task`), each with its mount
    /// namespace. A process whose main thread exited is listed under its
    /// pid while its other threads live on (kernel `css_task_iter`): its
    /// own `/proc/<pid>/ns/mnt` is unreadable, its threads' are not.
    Threads(Vec<ThreadNs>),
}

/// The first process in `members` (pid, what was found) that is not the
/// container's: a process is the container's when it is gone, or when each
/// of its threads has exited or is in the mount namespace `container_ns`
/// (inode). A live thread in another namespace, or one whose namespace
/// cannot be read, makes the process foreign; so does a process whose
/// threads could not be listed at all.
/// Pid `0` is how `cgroup.procs` lists a process outside the reader's pid
/// namespace: the container's processes are always visible to the hook, so
/// an invisible one is foreign.
pub fn first_foreign(container_ns: u64, members: &[(u32, Member)]) -> Option<u32> {
    members.iter().find_map(|(pid, member)| {
        let ours = *pid != 0
            && match member {
                Member::Gone => true,
                Member::Threads(threads) => {
                    !threads.is_empty()
                        && threads.iter().all(|t| match t {
                            ThreadNs::Mnt(ns) => *ns == container_ns,
                            ThreadNs::Exited => true,
                            ThreadNs::Unreadable => false,
                        })
                }
            };
        (!ours).then_some(*pid)
    })
}

/// Refuses when the cgroup `cgroup` holds a process that is not the
/// container's (see [`first_foreign`]): a cgroup shared with host processes
/// is never made writable or delegated.
pub fn check_cgroup_members(
    cgroup: &Path,
    container_ns: u64,
    members: &[(u32, Member)],
) -> Result<(), Refusal> {
    match first_foreign(container_ns, members) {
        Some(pid) => Err(Refusal::ForeignProcess {
            cgroup: cgroup.to_path_buf(),
            pid: pid.to_string(),
        }),
        None => Ok(()),
    }
}

/// Refuses to reuse the existing host directory `path` unless its mark
/// (`found`, the xattr's value when there is one) is `marker`; a mark of
/// another container is named by its short id.
pub fn check_marker(path: &Path, found: Option<&[u8]>, marker: &str) -> Result<(), Refusal> {
    match found {
        Some(f) if f == marker.as_bytes() => Ok(()),
        None | Some([]) => Err(Refusal::NotOurHostDir {
            path: path.to_path_buf(),
        }),
        Some(other) => Err(Refusal::ForeignHostDir {
            path: path.to_path_buf(),
            owner: String::from_utf8_lossy(other).chars().take(12).collect(),
        }),
    }
}

/// What poststop does with a host journal directory it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// Not marked for this container (another container's, or not the
    /// hook's): left alone.
    NotOurs,
    /// This container's prestart finished: kept (its logs stay readable).
    Finished,
    /// Left by a killed prestart but holds files: left alone.
    HoldsFiles,
    /// Left by a killed prestart, empty: removed.
    Remove,
}

/// Decides what a killed prestart left: `found` is the directory's marker
/// xattr value, `done` whether it has the done mark, `empty` whether it
/// holds no entry.
pub fn leftover(found: Option<&[u8]>, marker: &str, done: bool, empty: bool) -> Leftover {
    if found != Some(marker.as_bytes()) {
        Leftover::NotOurs
    } else if done {
        Leftover::Finished
    } else if !empty {
        Leftover::HoldsFiles
    } else {
        Leftover::Remove
    }
}

#[cfg(test)]
mod tests;
