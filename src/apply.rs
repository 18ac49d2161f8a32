//! Carrying out a [`Plan`]: the only module that changes the system.
//!
//! Prestart (runtime-spec `config.md#prestart`: called after the container's
//! namespaces are created, before pivot_root):
//! 1. pin the container's init with a pidfd and its mount namespace with an
//!    fd, check that the namespace is not the hook's own and that the pidfd
//!    still names a live process (so the pid was not reused in between);
//! 2. in the hook's own (host) mount namespace: create host directories,
//!    delegate the container's cgroup, take detached copies
//!    (`open_tree(OPEN_TREE_CLONE)`) of every host object to bind;
//! 3. join the container's mount namespace (`setns`), open the rootfs
//!    (`root.path`) with `pathrs`, refuse a rootfs that is the namespace's
//!    root, and carry out each action, resolving every container path inside
//!    the rootfs;
//! 4. mark the host journal directory done ([`JOURNAL_DONE_XATTR`]).
//!
//! Where the hook may create and write inside the rootfs: only on the
//! image's own file system (the rootfs mount), on tmpfs mounts it made itself,
//! and on the private tmpfs mounts config.json asks for. At prestart the
//! runtime has already mounted `/proc`, `/sys`, cgroupfs and volumes under the
//! rootfs; a symlink in the image must not turn a write of the machine-id into
//! a write to `/proc/sys`, a cgroup file or a volume. Mounting is allowed
//! anywhere inside the container's namespace (it only changes that namespace)
//! but never onto a mount that is shared with another namespace, from which
//! it would propagate.
//!
//! If a step fails, the host changes of step 2 are undone (directories
//! removed, ownership restored); mounts live in the container's namespace and
//! vanish with it. A prestart that is killed (a hooks.d `timeout`, SIGKILL)
//! undoes nothing; poststop, which the runtime still runs, then removes the
//! journal directory that carries no done mark (see [`poststop`]).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use pathrs::error::ErrorKind;
use pathrs::flags::OpenFlags;
use pathrs::{Handle, Root};
use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, StatxFlags, Uid, chownat, statx,
};

use crate::cgroup::{self, Member, ThreadNs};
use crate::config::Owner;
use crate::copyup;
use crate::mountinfo::Table;
use crate::mounts;
use crate::plan::{Action, HostSource, Plan, TmpfsOptions};

/// The xattr on a host journal directory that names the container it was
/// made for. `trusted.*`: only host root can set it, never the container.
pub const JOURNAL_MARKER_XATTR: &str = "trusted.oci-systemd-hook.id";

/// The xattr set on a host journal directory (value: the container id) at
/// the very end of a prestart that finished. A directory that carries this
/// container's [`JOURNAL_MARKER_XATTR`] but not this one was left by a
/// prestart that was killed: poststop removes it when it is empty.
/// `trusted.*` like the marker.
pub const JOURNAL_DONE_XATTR: &str = "trusted.oci-systemd-hook.done";

fn is_enoent(e: &pathrs::error::Error) -> bool {
    e.kind() == ErrorKind::OsError(Some(libc::ENOENT))
}

/// A host change to undo if prestart fails.
enum Undo {
    /// Remove the directory `name` in `parent` (an fd opened on the host side
    /// before setns: after it the hook's paths resolve in the container's
    /// namespace, and from a chroot no longer in the runtime's tree).
    RemoveDir {
        parent: OwnedFd,
        name: std::ffi::OsString,
        shown: PathBuf,
    },
    Chown {
        fd: OwnedFd,
        uid: u32,
        gid: u32,
    },
}

/// Runs a prestart plan for the container whose init process is `pid` and
/// whose rootfs is at `rootfs` (absolute, as in its mount namespace).
///
/// # Errors
/// The first failing step, with the action and the path in the message.
/// Host changes made before the failure are undone.
pub fn prestart(plan: &Plan, pid: i32, rootfs: &Path) -> anyhow::Result<()> {
    let mut undo = Vec::new();
    let result = prestart_inner(plan, pid, rootfs, &mut undo);
    if result.is_err() {
        for u in undo.into_iter().rev() {
            match u {
                Undo::RemoveDir {
                    parent,
                    name,
                    shown,
                } => {
                    if let Err(e) = rustix::fs::unlinkat(&parent, &name, AtFlags::REMOVEDIR) {
                        log::warn!(
                            "cannot remove {} after a failed prestart: {e}",
                            shown.display()
                        );
                    }
                }
                Undo::Chown { fd, uid, gid } => {
                    let r = chown_to(fd.as_fd(), Owner { uid, gid });
                    if let Err(e) = r {
                        log::warn!("cannot restore an owner after a failed prestart: {e}");
                    }
                }
            }
        }
    }
    result
}

/// The container's mount namespace, pinned.
struct Container {
    mnt_ns: OwnedFd,
    mnt_ns_ino: u64,
    /// The root directory of the container's init process as the runtime
    /// left it (`/proc/<pid>/root`, before pivot_root): `root.path` is
    /// resolved inside it. Normally the namespace's root; when the runtime
    /// runs in a plain chroot, that chroot — which `setns` would otherwise
    /// lose, since it resets the hook's root to the namespace's real root.
    root: OwnedFd,
}

fn ns_ino(fd: BorrowedFd<'_>) -> anyhow::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_ino)
}

/// Pins the container's mount namespace and checks it (step 1).
fn pin_container(pid: i32) -> anyhow::Result<Container> {
    let pid_t = rustix::process::Pid::from_raw(pid).context("invalid pid")?;
    let pidfd = rustix::process::pidfd_open(pid_t, rustix::process::PidfdFlags::empty())
        .with_context(|| format!("the container process {pid} is gone"))?;
    let mnt_ns = rustix::fs::open(
        format!("/proc/{pid}/ns/mnt"),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("the container process {pid} is gone"))?;
    let root = rustix::fs::open(
        format!("/proc/{pid}/root"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open the root directory of the container process {pid}"))?;
    // Signal 0 through the pidfd: the process that held the pid when the
    // namespace was opened still lives, so the pid was not reused meanwhile.
    // (rustix's Signal cannot be 0, hence libc.)
    // SAFETY: pidfd_send_signal(2) with a valid fd, signal 0, no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!("the container process {pid} exited while the hook looked at it")
        });
    }
    let ours = ns_ino(
        rustix::fs::open(
            "/proc/self/ns/mnt",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?
        .as_fd(),
    )?;
    let mnt_ns_ino = ns_ino(mnt_ns.as_fd())?;
    if ours == mnt_ns_ino {
        bail!("process {pid} shares the hook's mount namespace; refusing to mount on the host");
    }
    Ok(Container {
        mnt_ns,
        mnt_ns_ino,
        root,
    })
}

fn prestart_inner<'a>(
    plan: &'a Plan,
    pid: i32,
    rootfs: &Path,
    undo: &mut Vec<Undo>,
) -> anyhow::Result<()> {
    // 1. Pin and check the container; note what the host's root and
    // machine-id are before leaving its namespace.
    let container = pin_container(pid)?;
    let host = Host::read()?;

    // 2. Host side.
    let mut sources: Vec<Option<OwnedFd>> = Vec::with_capacity(plan.actions.len());
    let mut skipped_dirs: Vec<&Path> = Vec::new();
    // Host directories made or reused, to mark done at the end.
    let mut host_dirs: Vec<(OwnedFd, &str)> = Vec::new();
    // The own cgroup is both delegated and bound: check its processes once.
    let mut checked: Vec<&HostSource> = Vec::new();
    let mut check_cgroup = |source: &'a HostSource| -> anyhow::Result<()> {
        if !checked.contains(&source) {
            check_cgroup_is_the_containers(source, &container)?;
            checked.push(source);
        }
        Ok(())
    };
    for action in &plan.actions {
        sources.push(match action {
            Action::HostDir {
                path,
                mode,
                owner,
                label,
                optional,
                marker,
            } => {
                match host_dir(path, *mode, *owner, label.as_deref(), marker, undo) {
                    Ok(dir) => host_dirs.push((dir, marker)),
                    Err(e) if *optional => {
                        log::warn!(
                            "{action}: {e:#}; skipped: no host journal for this container, journald keeps its journal inside it"
                        );
                        skipped_dirs.push(path);
                    }
                    Err(e) => return Err(e.context(action.to_string())),
                }
                None
            }
            Action::DelegateCgroup {
                source,
                files,
                owner,
            } => {
                check_cgroup(source)
                    .and_then(|()| delegate_cgroup(source, files, *owner, undo))
                    .with_context(|| action.to_string())?;
                None
            }
            Action::Bind {
                source: HostSource::Path(p),
                ..
            } if skipped_dirs.contains(&p.as_path()) => None,
            Action::Bind { source, .. } => {
                if matches!(source, HostSource::Beneath { .. }) {
                    check_cgroup(source).with_context(|| action.to_string())?;
                }
                Some(open_host_source(source).with_context(|| action.to_string())?)
            }
            _ => None,
        });
    }

    // 3. Join the container's mount namespace and work under the rootfs.
    rustix::thread::move_into_link_name_space(
        container.mnt_ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Mount),
    )
    .with_context(|| format!("setns into the mount namespace of {pid}"))?;
    let mut ns = Namespace::open(container.root.as_fd(), rootfs, plan, host)?;
    for (action, source) in plan.actions.iter().zip(sources) {
        log::debug!(oci_action = action.kind(); "{action}");
        ns.run(action, source).with_context(|| action.to_string())?;
    }

    // 4. Done: from here on poststop keeps the host directories.
    for (dir, marker) in host_dirs {
        rustix::fs::fsetxattr(
            &dir,
            JOURNAL_DONE_XATTR,
            marker.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .context("mark the host journal directory done")?;
    }
    Ok(())
}

/// Runs a poststop plan against the rootfs as the host sees it.
///
/// # Errors
/// The first failing step. A rootfs that no longer exists is not an error.
pub fn poststop(plan: &Plan, rootfs: &Path) -> anyhow::Result<()> {
    // Host side first: it needs no rootfs, which may be gone.
    for action in &plan.actions {
        if let Action::RemoveUnfinishedHostDir { path, marker } = action {
            remove_unfinished_host_dir(path, marker).with_context(|| action.to_string())?;
        }
    }
    if !plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::ClearFile { .. }))
    {
        return Ok(());
    }
    let root = match Root::open(rootfs) {
        Ok(r) => r,
        Err(e) if is_enoent(&e) => {
            log::info!("rootfs {} is gone; nothing to clean", rootfs.display());
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("open rootfs {}", rootfs.display())),
    };
    let host = Host::read()?;
    refuse_namespace_root(&root, rootfs, &host)?;
    let root_mnt = mnt_id(root.as_fd())?;
    for action in &plan.actions {
        match action {
            Action::ClearFile { dest, expected } => {
                clear_file(&root, root_mnt, dest, expected, &host)
                    .with_context(|| action.to_string())?
            }
            Action::RemoveUnfinishedHostDir { .. } => {}
            other => bail!("{other}: not a poststop action"),
        }
    }
    Ok(())
}

/// Gives the object `fd` refers to (an O_PATH fd is enough) to `owner`.
fn chown_to(fd: BorrowedFd<'_>, owner: Owner) -> rustix::io::Result<()> {
    chownat(
        fd,
        "",
        Some(Uid::from_raw(owner.uid)),
        Some(Gid::from_raw(owner.gid)),
        AtFlags::EMPTY_PATH,
    )
}

fn mnt_id(fd: BorrowedFd<'_>) -> anyhow::Result<u64> {
    Ok(statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)?.stx_mnt_id)
}

fn identity(fd: BorrowedFd<'_>) -> anyhow::Result<(u64, u64, u32, u32)> {
    let st = statx(
        fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::INO | StatxFlags::MNT_ID,
    )?;
    Ok((
        st.stx_mnt_id,
        st.stx_ino,
        st.stx_dev_major,
        st.stx_dev_minor,
    ))
}

/// A file's identity: device (major, minor) and inode number. Unlike the
/// mount id it is the same through every alias of the file (a bind mount,
/// `/proc/<pid>/root` of a process in another mount namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: (u32, u32),
    ino: u64,
}

/// What the hook knows of a file it found in the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileFacts {
    id: FileId,
    mnt_id: u64,
    nlink: u32,
}

fn file_facts(fd: BorrowedFd<'_>) -> rustix::io::Result<FileFacts> {
    let st = statx(
        fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::INO | StatxFlags::NLINK | StatxFlags::MNT_ID,
    )?;
    Ok(FileFacts {
        id: FileId {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
        },
        mnt_id: st.stx_mnt_id,
        nlink: st.stx_nlink,
    })
}

/// The host as the hook sees it before joining the container's mount
/// namespace (at poststop: the namespace it runs in).
struct Host {
    /// The hook's own root directory.
    root: FileId,
    /// The host's `/etc/machine-id` (symlinks followed), when it exists.
    machine_id: Option<FileId>,
}

impl Host {
    fn read() -> anyhow::Result<Host> {
        let open = |p: &str| {
            rustix::fs::open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .and_then(|fd| file_facts(fd.as_fd()))
                .map(|f| f.id)
        };
        Ok(Host {
            root: open("/").context("stat the host's /")?,
            machine_id: open("/etc/machine-id").ok(),
        })
    }
}

/// Why a file found at `/etc/machine-id` in the rootfs is not the image's
/// own and must not be written in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Foreign {
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
fn foreign_machine_id(
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
fn root_alias(root: FileId, namespace_root: FileId, host: &Host) -> Option<&'static str> {
    if root == namespace_root {
        Some("the root of the mount namespace")
    } else if root == host.root {
        Some("the host's root directory")
    } else {
        None
    }
}

/// Refuses a rootfs that is the root of the current mount namespace or the
/// host's root directory (a config.json whose `root.path` is `/` or an alias
/// of it): the hook would work on the host.
fn refuse_namespace_root(root: &Root, rootfs: &Path, host: &Host) -> anyhow::Result<()> {
    let slash = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let slash = file_facts(slash.as_fd())?.id;
    if let Some(what) = root_alias(file_facts(root.as_fd())?.id, slash, host) {
        bail!("the rootfs {} is {what}; refusing", rootfs.display());
    }
    Ok(())
}

/// Creates the host directory `path` (its parent must exist), owned and
/// labelled as asked, marked with the container id; or reuses it when it
/// carries this container's mark (a restarted container). Returns the
/// directory opened `O_RDONLY` (for [`JOURNAL_DONE_XATTR`]).
fn host_dir(
    path: &Path,
    mode: u32,
    owner: Option<Owner>,
    label: Option<&str>,
    marker: &str,
    undo: &mut Vec<Undo>,
) -> anyhow::Result<OwnedFd> {
    let parent = path.parent().context("no parent directory")?;
    if !parent.is_dir() {
        bail!(
            "{} does not exist; the hook does not create it (it would change how the host keeps its journal)",
            parent.display()
        );
    }
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => undo.push(Undo::RemoveDir {
            parent: rustix::fs::open(
                parent,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("open {}", parent.display()))?,
            name: path.file_name().context("no file name")?.to_owned(),
            shown: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // XATTR_SIZE_MAX: a marker of any length is read whole (ids over
            // 256 bytes once never matched their own mark).
            let mut buf = vec![0u8; 65536];
            let found: Vec<u8> = match rustix::fs::lgetxattr(path, JOURNAL_MARKER_XATTR, &mut buf) {
                Ok(n) => buf[..n].to_vec(),
                Err(_) => Vec::new(),
            };
            if found.is_empty() {
                bail!(
                    "{} exists and was not made for this container; not reusing it",
                    path.display()
                );
            }
            if found != marker.as_bytes() {
                // The journal directory belongs to the container that made
                // it: another one with the same machine-id (`container_uuid`)
                // gets none on the host.
                bail!(
                    "{} belongs to container {} (the same machine-id); not reusing it",
                    path.display(),
                    String::from_utf8_lossy(&found)
                        .chars()
                        .take(12)
                        .collect::<String>()
                );
            }
            if !std::fs::symlink_metadata(path)?.is_dir() {
                bail!("{} is not a directory", path.display());
            }
            return Ok(rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?);
        }
        Err(e) => return Err(e).with_context(|| format!("mkdir {}", path.display())),
    }
    let dir = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::lsetxattr(
        path,
        JOURNAL_MARKER_XATTR,
        marker.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .with_context(|| format!("mark {}", path.display()))?;
    if let Some(o) = owner {
        chown_to(dir.as_fd(), o).with_context(|| format!("chown {}", path.display()))?;
    }
    if let Some(l) = label {
        // xattrs cannot be set through an O_PATH fd; the path was just made by us.
        rustix::fs::lsetxattr(
            path,
            "security.selinux",
            l.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .with_context(|| format!("label {} {l}", path.display()))?;
    }
    Ok(dir)
}

/// What poststop does with a host journal directory it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftover {
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

/// Decides what a killed prestart left: `found` is the directory's
/// [`JOURNAL_MARKER_XATTR`] value, `done` whether it has
/// [`JOURNAL_DONE_XATTR`], `empty` whether it holds no entry.
fn leftover(found: Option<&[u8]>, marker: &str, done: bool, empty: bool) -> Leftover {
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

/// The value of xattr `name` on `fd`, `None` when it has none (or the file
/// system keeps none).
fn xattr(fd: BorrowedFd<'_>, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    // XATTR_SIZE_MAX: any value fits.
    let mut buf = vec![0u8; 65536];
    match rustix::fs::fgetxattr(fd, name, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read xattr {name}")),
    }
}

/// Poststop: removes the host directory `path` when a prestart of the
/// container `marker` made it and was killed before it finished (see
/// [`leftover`]). What else is on the host stays: the container's cgroup,
/// which a killed prestart may have chowned, is removed by the runtime
/// before poststop (runc's `destroy()`, crun's delete).
fn remove_unfinished_host_dir(path: &Path, marker: &str) -> anyhow::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("{} is not a directory path", path.display());
    };
    let parent = match rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("open {}", parent.display())),
    };
    let dir = match rustix::fs::openat(
        &parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // Absent, or not a directory the hook made.
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
    };
    let found = xattr(dir.as_fd(), JOURNAL_MARKER_XATTR)?;
    let done = xattr(dir.as_fd(), JOURNAL_DONE_XATTR)?.is_some();
    // An entry that cannot be read counts as a file: left alone.
    let empty = rustix::fs::Dir::read_from(&dir)?
        .all(|e| e.is_ok_and(|e| matches!(e.file_name().to_bytes(), b"." | b"..")));
    match leftover(found.as_deref(), marker, done, empty) {
        Leftover::NotOurs | Leftover::Finished => Ok(()),
        Leftover::HoldsFiles => {
            log::warn!(
                "{} was left by a prestart that did not finish but holds files; left alone",
                path.display()
            );
            Ok(())
        }
        Leftover::Remove => {
            match rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e).with_context(|| format!("rmdir {}", path.display())),
            }
            log::info!(
                "removed {}, left by a prestart that did not finish",
                path.display()
            );
            Ok(())
        }
    }
}

/// Most cgroups [`check_cgroup_is_the_containers`] reads: the container's
/// own and its descendants. At prestart a container has one (systemd has not
/// started yet); past this bound the hook refuses rather than leave some
/// unchecked.
pub const MAX_CGROUPS_CHECKED: usize = 4096;

/// Most bytes of `cgroup.procs` [`check_cgroup_is_the_containers`] reads,
/// all cgroups together (1 MiB: some 100 000 pids); past it the hook
/// refuses.
pub const MAX_PROCS_BYTES: u64 = 1 << 20;

/// Checks that every process in the cgroup `source` and in every cgroup
/// beneath it is in the container's mount namespace: a cgroup shared with
/// host processes (a container started with `--cgroups=disabled`, or a host
/// process placed in a child cgroup) must never be made writable or
/// delegated, or the container could move that process and make cgroups
/// under it. Which processes count as the container's:
/// [`cgroup::first_foreign`]. The subtree is walked with file descriptors
/// (`openat2` beneath each directory, no symlinks, no mount crossing),
/// bounded by [`MAX_CGROUPS_CHECKED`] and [`MAX_PROCS_BYTES`].
fn check_cgroup_is_the_containers(
    source: &HostSource,
    container: &Container,
) -> anyhow::Result<()> {
    let HostSource::Beneath { base, path } = source else {
        return Ok(());
    };
    let own = Root::open(base)?
        .resolve(path)?
        .reopen(OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)?;
    let mut todo: Vec<(OwnedFd, PathBuf)> = vec![(own.into(), path.clone())];
    let mut found = 1;
    let mut budget = MAX_PROCS_BYTES;
    while let Some((dir, rel)) = todo.pop() {
        let procs = mounts::open_beneath(dir.as_fd(), Path::new("cgroup.procs"))?;
        let mut text = String::new();
        Handle::from_fd(procs)
            .reopen(OpenFlags::O_RDONLY)?
            .take(budget + 1)
            .read_to_string(&mut text)?;
        budget = budget.checked_sub(text.len() as u64).with_context(|| {
            format!(
                "the cgroups beneath {} list more than {MAX_PROCS_BYTES} bytes of processes; refusing to make them writable unchecked",
                path.display()
            )
        })?;
        let members: Vec<(u32, Member)> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .map(|pid| (pid, member(pid)))
            .collect();
        if let Some(pid) = cgroup::first_foreign(container.mnt_ns_ino, &members) {
            bail!(
                "cgroup {} also holds process {pid}, which is not in the container; refusing to make it writable",
                rel.display()
            );
        }
        for entry in rustix::fs::Dir::read_from(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            if !matches!(entry.file_type(), FileType::Directory | FileType::Unknown) {
                continue;
            }
            let child = rustix::fs::openat2(
                &dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
            );
            match child {
                Ok(fd) => {
                    found += 1;
                    if found > MAX_CGROUPS_CHECKED {
                        bail!(
                            "cgroup {} has more than {MAX_CGROUPS_CHECKED} cgroups beneath it; refusing to make it writable unchecked",
                            path.display()
                        );
                    }
                    let name = std::ffi::OsStr::from_bytes(name.to_bytes());
                    todo.push((fd, rel.join(name)));
                }
                // Removed meanwhile, or not a directory.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("open a cgroup beneath {}", rel.display()));
                }
            }
        }
    }
    Ok(())
}

/// What `/proc` shows of process `pid` (in the hook's pid namespace): each
/// thread's mount namespace, or that it has exited (see [`Member`]).
fn member(pid: u32) -> Member {
    let tasks = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Member::Gone,
        Err(_) => return Member::Threads(Vec::new()),
    };
    let mut threads = Vec::new();
    for task in tasks {
        let Ok(task) = task else {
            threads.push(ThreadNs::Unreadable);
            continue;
        };
        let dir = task.path();
        threads.push(match std::fs::metadata(dir.join("ns/mnt")) {
            Ok(m) => ThreadNs::Mnt(m.ino()),
            Err(_) => match std::fs::read_to_string(dir.join("stat")) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => ThreadNs::Exited,
                Err(_) => ThreadNs::Unreadable,
                // The state letter follows the last ')' (the command name
                // may hold any character): proc_pid_stat(5).
                Ok(stat) => match stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next())
                {
                    Some('Z' | 'X' | 'x') => ThreadNs::Exited,
                    _ => ThreadNs::Unreadable,
                },
            },
        });
    }
    if threads.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
        return Member::Gone;
    }
    Member::Threads(threads)
}

/// Chowns the container's own cgroup directory and the given files in it
/// (resolved beneath it, no symlinks) to `owner`; nothing else. The previous
/// owners are recorded for the undo. The caller has checked with
/// [`check_cgroup_is_the_containers`] that the cgroup is the container's.
fn delegate_cgroup(
    source: &HostSource,
    files: &[String],
    owner: Owner,
    undo: &mut Vec<Undo>,
) -> anyhow::Result<()> {
    let HostSource::Beneath { base, path } = source else {
        bail!("a cgroup to delegate must be a path beneath its hierarchy");
    };
    let dir = Root::open(base)?.resolve(path)?;
    let mut targets = vec![OwnedFd::from(dir)];
    for f in files {
        let d = targets[0].as_fd();
        match mounts::open_beneath(d, Path::new(f)) {
            Ok(fd) => targets.push(fd),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("cgroup file {f} absent")
            }
            Err(e) => return Err(e).with_context(|| format!("open {f}")),
        }
    }
    for fd in targets {
        let st = rustix::fs::fstat(&fd)?;
        chown_to(fd.as_fd(), owner)?;
        undo.push(Undo::Chown {
            fd,
            uid: st.st_uid,
            gid: st.st_gid,
        });
    }
    Ok(())
}

fn open_host_source(source: &HostSource) -> anyhow::Result<OwnedFd> {
    match source {
        HostSource::Path(p) => {
            Ok(mounts::clone_path(p).with_context(|| format!("open_tree {}", p.display()))?)
        }
        HostSource::Beneath { base, path } => {
            let root = Root::open(base)?;
            let handle = root.resolve(path)?;
            Ok(mounts::clone_of(handle.as_fd())?)
        }
    }
}

/// Inside the container's mount namespace: the rootfs and where the hook may
/// create and write.
struct Namespace {
    root: Root,
    /// Mount ids the hook may create files and directories on.
    writable: Vec<u64>,
    /// The mount table, indexed by mount id: read after setns, and again
    /// before a tmpfs is mounted when the hook has mounted something since.
    table: Table,
    /// Whether the hook mounted something since `table` was read.
    stale: bool,
    /// Mount ids of the mounts the hook made.
    ours: Vec<u64>,
    /// The host, as seen before the setns.
    host: Host,
}

impl Namespace {
    /// Opens the rootfs: `rootfs` (absolute, as the runtime sees it) resolved
    /// inside `process_root`, the container process's root directory, with
    /// symlinks kept inside it as the runtime's own lookup would.
    fn open(
        process_root: BorrowedFd<'_>,
        rootfs: &Path,
        plan: &Plan,
        host: Host,
    ) -> anyhow::Result<Namespace> {
        let root = rustix::fs::openat2(
            process_root,
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
        .map(Root::from_fd)
        .map_err(|e| match e {
            // RESOLVE_IN_ROOT refuses to cross a magic link: a root.path
            // through /proc/<pid>/root or /proc/<pid>/fd names another
            // process's tree, never an image.
            rustix::io::Errno::XDEV => anyhow::anyhow!(
                "the rootfs {} is reached through a /proc magic link, an alias of another process's tree; refusing",
                rootfs.display()
            ),
            e => anyhow::Error::new(e).context(format!("open rootfs {}", rootfs.display())),
        })?;
        refuse_namespace_root(&root, rootfs, &host)?;
        let table = Table::read(None).context("read the container's mount table")?;
        let mut writable = vec![mnt_id(root.as_fd())?];
        let real_root = mounts::fd_path(root.as_fd())?;
        // config.json's own tmpfs mounts, and tmpfs mounts already at the
        // paths where the hook mounts one (a prestart run again): the topmost
        // mount at exactly that path, if it is a tmpfs.
        let hook_tmpfs = plan.actions.iter().filter_map(|a| match a {
            Action::Tmpfs { dest, .. } => Some(dest),
            _ => None,
        });
        for dest in plan.private_tmpfs.iter().chain(hook_tmpfs) {
            let at = real_root.join(dest.strip_prefix("/").unwrap_or(dest));
            if let Some(m) = table.topmost_at(&at)
                && m.fs_type == "tmpfs"
            {
                writable.push(m.id);
            }
        }
        Ok(Namespace {
            root,
            writable,
            table,
            stale: false,
            ours: Vec::new(),
            host,
        })
    }

    fn run(&mut self, action: &Action, source: Option<OwnedFd>) -> anyhow::Result<()> {
        match action {
            Action::HostDir { .. } | Action::DelegateCgroup { .. } => Ok(()),
            Action::Tmpfs {
                dest,
                options,
                copy_up,
            } => self.tmpfs(dest, options, *copy_up),
            Action::Mkdir { dest, mode } => self.mkdir(dest, *mode).map(drop),
            Action::Bind {
                dest,
                readonly,
                fallback,
                ..
            } => {
                let Some(source) = source else {
                    log::info!(
                        "{action}: skipped, its host directory was not made (see the warning above)"
                    );
                    return Ok(());
                };
                let dir = mounts::is_dir(source.as_fd())?;
                let target = match self.mount_point(dest, dir) {
                    Ok(t) => t,
                    Err(e) => match fallback {
                        Some(fb) => {
                            log::info!(
                                "cannot use {} ({e:#}); using {}",
                                dest.display(),
                                fb.display()
                            );
                            self.mount_point(fb, dir)?
                        }
                        None => return Err(e),
                    },
                };
                self.attach(source.as_fd(), target.as_fd())?;
                mounts::make_private(source.as_fd())?;
                mounts::set_flags(source.as_fd(), *readonly)?;
                Ok(())
            }
            Action::BindContents { dest, contents } => {
                let file = mounts::private_file(contents.as_bytes())?;
                let target = self.root.resolve(dest)?;
                regular_file(&target)?;
                self.attach(file.as_fd(), target.as_fd())?;
                mounts::make_private(file.as_fd())?;
                mounts::set_flags(file.as_fd(), true)?;
                Ok(())
            }
            Action::RemountReadOnly { dest } => {
                let handle = self.root.resolve(dest)?;
                mounts::set_flags(handle.as_fd(), true)?;
                Ok(())
            }
            Action::WriteFile {
                dest,
                contents,
                mode,
                owner,
            } => self.write_file(dest, contents.as_bytes(), *mode, *owner),
            Action::ClearFile { .. } | Action::RemoveUnfinishedHostDir { .. } => {
                bail!("not a prestart action")
            }
        }
    }

    /// Fails unless `fd` is on a mount the hook may write to.
    fn check_writable(&self, fd: BorrowedFd<'_>, what: &Path) -> anyhow::Result<()> {
        let id = mnt_id(fd)?;
        if self.writable.contains(&id) {
            return Ok(());
        }
        let on = self
            .table
            .get(id)
            .map(|m| {
                format!(
                    "{} mounted at {}",
                    m.fs_type.display(),
                    m.mount_point.display()
                )
            })
            .unwrap_or_else(|| format!("mount {id}"));
        bail!(
            "{} resolves onto {on}, not the image's own file system; refusing to write there",
            what.display()
        )
    }

    /// Attaches `mount` on `target` unless the target's mount is shared with
    /// another namespace (the new mount would propagate there, e.g. to the
    /// host).
    fn attach(&mut self, mount: BorrowedFd<'_>, target: BorrowedFd<'_>) -> anyhow::Result<()> {
        let on = mnt_id(target)?;
        if !self.ours.contains(&on)
            && let Some(m) = self.table.get(on)
            && m.is_shared()
        {
            bail!(
                "{} is on a shared mount ({}); a mount there would propagate out of the container",
                m.mount_point.display(),
                m.fs_type.display()
            );
        }
        mounts::attach(mount, target)?;
        self.stale = true;
        Ok(())
    }

    /// `dest` as a directory inside the rootfs, created (0755, with parents)
    /// where missing, but only on a file system the hook may write to.
    /// Symlinks are followed inside the rootfs only; a dangling one, a
    /// non-directory in the way, or the rootfs root itself is an error.
    fn mkdir(&self, dest: &Path, mode: u32) -> anyhow::Result<Handle> {
        let comps: Vec<&std::ffi::OsStr> = dest
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        // The longest prefix that exists.
        let mut found = None;
        for i in (0..=comps.len()).rev() {
            let prefix: PathBuf = std::iter::once(std::ffi::OsStr::new("/"))
                .chain(comps[..i].iter().copied())
                .collect();
            match self.root.resolve(&prefix) {
                Ok(h) => {
                    found = Some((i, h));
                    break;
                }
                Err(e) if is_enoent(&e) => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot resolve {} inside the rootfs (dangling symlink or non-directory in the way)", prefix.display())));
                }
            }
        }
        let (i, existing) = found.context("the rootfs root cannot be resolved")?;
        if i == comps.len() {
            return Ok(existing);
        }
        if !mounts::is_dir(existing.as_fd())? {
            bail!(
                "cannot make {}: a non-directory is in the way",
                dest.display()
            );
        }
        self.check_writable(existing.as_fd(), dest)?;
        let mut cur: OwnedFd = existing.into();
        for name in &comps[i..] {
            match rustix::fs::mkdirat(&cur, *name, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("mkdir {} inside the rootfs", dest.display()));
                }
            }
            cur = rustix::fs::openat2(
                &cur,
                *name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
            )
            .with_context(|| format!("cannot make {} a directory inside the rootfs (a non-directory or symlink in the way)", dest.display()))?;
        }
        Ok(Handle::from_fd(cur))
    }

    /// [`Namespace::mkdir`], then: a directory, and not the rootfs root.
    fn dir(&self, dest: &Path) -> anyhow::Result<Handle> {
        let target = self.mkdir(dest, 0o755)?;
        if !mounts::is_dir(target.as_fd())? {
            bail!(
                "{} exists inside the rootfs and is not a directory",
                dest.display()
            );
        }
        if identity(self.root.as_fd())? == identity(target.as_fd())? {
            bail!(
                "{} resolves to the rootfs root; refusing to mount over the whole image",
                dest.display()
            );
        }
        Ok(target)
    }

    /// A handle on `dest` to mount on: a directory (created if missing) or
    /// an existing file, or an empty file created where missing.
    fn mount_point(&self, dest: &Path, dir: bool) -> anyhow::Result<Handle> {
        if dir {
            return self.dir(dest);
        }
        match self.root.resolve(dest) {
            Ok(h) => Ok(h),
            Err(e) if is_enoent(&e) => {
                self.create_file(dest, 0o644, None)?;
                Ok(self.root.resolve(dest)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the regular file `dest` (its parent made if missing), on a
    /// writable file system only; never follows a symlink at `dest`.
    fn create_file(
        &self,
        dest: &Path,
        mode: u32,
        owner: Option<Owner>,
    ) -> anyhow::Result<std::fs::File> {
        let (parent, name) = match (dest.parent(), dest.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => bail!("{} is not a file path", dest.display()),
        };
        let dir = self.mkdir(parent, 0o755)?;
        self.create_in(&dir, name, dest, mode, owner)
    }

    /// Creates the regular file `name` in the directory `dir` (`dest` is its
    /// container path, for messages), on a writable file system only; never
    /// follows a symlink at `name`.
    fn create_in(
        &self,
        dir: &Handle,
        name: &std::ffi::OsStr,
        dest: &Path,
        mode: u32,
        owner: Option<Owner>,
    ) -> anyhow::Result<std::fs::File> {
        self.check_writable(dir.as_fd(), dest)?;
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .with_context(|| {
            format!(
                "cannot create {} inside the rootfs (dangling symlink?)",
                dest.display()
            )
        })?;
        if let Some(o) = owner {
            chown_to(fd.as_fd(), o)?;
        }
        // Make the mode exact whatever the umask.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        Ok(std::fs::File::from(fd))
    }

    fn tmpfs(&mut self, dest: &Path, options: &TmpfsOptions, copy_up: bool) -> anyhow::Result<()> {
        let target = self.dir(dest)?;
        let real = mounts::fd_path(target.as_fd())?;

        // Mounts already below dest (volumes, secrets, .containerenv): take a
        // handle on each before the tmpfs hides them.
        if self.stale {
            self.table = Table::read(None).context("read the container's mount table")?;
            self.stale = false;
        }
        let mut keep = Vec::new();
        for rel in mounts::top_submounts(&self.table.mounts, &real) {
            let fd = mounts::open_beneath(target.as_fd(), &rel)
                .with_context(|| format!("open mount {}", real.join(&rel).display()))?;
            let dir = mounts::is_dir(fd.as_fd())?;
            keep.push((rel, fd, dir));
        }

        let mnt = mounts::new_tmpfs(options).context("create tmpfs")?;
        if copy_up {
            // Only the image's own content (or a tmpfs the hook or
            // config.json made) is copied: never /proc, /sys or a volume that
            // a symlink in the image points at.
            self.check_writable(target.as_fd(), dest)
                .context("tmpcopyup")?;
            let src = target.reopen(OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)?;
            let dst = rustix::fs::openat(
                &mnt,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let stats = copyup::copy_tree(src.as_fd(), dst.as_fd(), &copyup::DEFAULT_LIMITS)?;
            log::debug!("tmpcopyup {}: {stats:?}", dest.display());
        }
        for (rel, _, dir) in &keep {
            mounts::make_mount_point(mnt.as_fd(), rel, *dir)
                .with_context(|| format!("mount point {}", rel.display()))?;
        }
        self.attach(mnt.as_fd(), target.as_fd())
            .context("attach tmpfs")?;
        let id = mnt_id(mnt.as_fd())?;
        self.ours.push(id);
        self.writable.push(id);
        for (rel, fd, _) in keep {
            let to = mounts::open_beneath(mnt.as_fd(), &rel)?;
            mounts::attach(fd.as_fd(), to.as_fd())
                .with_context(|| format!("move mount {} into the tmpfs", rel.display()))?;
        }
        Ok(())
    }

    fn write_file(
        &self,
        dest: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<Owner>,
    ) -> anyhow::Result<()> {
        let mut file = match self.root.resolve(dest) {
            Ok(h) => {
                regular_file(&h)?;
                self.check_writable(h.as_fd(), dest)?;
                match foreign_machine_id(
                    &file_facts(h.as_fd())?,
                    &self.writable,
                    self.host.machine_id,
                ) {
                    None => h.reopen(OpenFlags::O_WRONLY | OpenFlags::O_TRUNC)?,
                    Some(Foreign::Linked(n)) => {
                        // Never write through a hard link (e.g. to a file
                        // outside the image, or an ostree checkout's object):
                        // give the container a file of its own instead.
                        log::warn!(
                            "{} has {n} hard links; replaced by a file of the container's own, the other names are left as they are",
                            dest.display()
                        );
                        return self.replace_file(dest, contents, mode, owner);
                    }
                    Some(why) => bail!("{} {why}; refusing to write it", dest.display()),
                }
            }
            Err(e) if is_enoent(&e) => self.create_file(dest, mode, owner)?,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot resolve {} inside the rootfs (dangling symlink or non-directory in the way)",
                    dest.display()
                )));
            }
        };
        file.write_all(contents)?;
        Ok(())
    }

    /// Writes `contents` to a new file next to `dest` and renames it over
    /// `dest`: the file that was at `dest` is not opened, only unlinked from
    /// that name.
    fn replace_file(
        &self,
        dest: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<Owner>,
    ) -> anyhow::Result<()> {
        let (parent, name) = match (dest.parent(), dest.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => bail!("{} is not a file path", dest.display()),
        };
        let dir = self.root.resolve(parent)?;
        let mut tmp = std::ffi::OsString::from(".");
        tmp.push(name);
        tmp.push(format!(".oci-systemd-hook-{}", std::process::id()));
        let mut file = self.create_in(&dir, &tmp, dest, mode, owner)?;
        let written = file
            .write_all(contents)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(rustix::fs::renameat(&dir, &tmp, &dir, name)?));
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        }
        written.with_context(|| format!("replace {} inside the rootfs", dest.display()))
    }
}

fn regular_file(handle: &Handle) -> anyhow::Result<()> {
    let st = statx(handle.as_fd(), "", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
    let ft = FileType::from_raw_mode(u32::from(st.stx_mode));
    if ft != FileType::RegularFile {
        bail!("not a regular file ({ft:?})");
    }
    Ok(())
}

/// Empties the machine-id file `dest` in the rootfs if it holds `expected`;
/// leaves alone (with a warning) a file that is not the image's own (see
/// [`foreign_machine_id`]).
fn clear_file(
    root: &Root,
    root_mnt: u64,
    dest: &Path,
    expected: &str,
    host: &Host,
) -> anyhow::Result<()> {
    let handle = match root.resolve(dest) {
        Ok(h) => h,
        Err(e) if is_enoent(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    regular_file(&handle)?;
    if let Some(why) =
        foreign_machine_id(&file_facts(handle.as_fd())?, &[root_mnt], host.machine_id)
    {
        log::warn!("{} {why}; left alone", dest.display());
        return Ok(());
    }
    let mut contents = String::new();
    handle
        .reopen(OpenFlags::O_RDONLY)?
        .take(128)
        .read_to_string(&mut contents)?;
    if contents.trim() == expected {
        handle.reopen(OpenFlags::O_WRONLY | OpenFlags::O_TRUNC)?;
        log::debug!("emptied {}", dest.display());
    } else if !contents.trim().is_empty() {
        log::info!("{} holds another id; left alone", dest.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: FileId = FileId {
        dev: (8, 1),
        ino: 2,
    };
    const B: FileId = FileId {
        dev: (8, 1),
        ino: 77,
    };

    fn facts(id: FileId, mnt_id: u64, nlink: u32) -> FileFacts {
        FileFacts { id, mnt_id, nlink }
    }

    #[test]
    fn a_machine_id_is_the_images_own_only_on_its_mount_with_one_link_and_not_the_hosts() {
        assert_eq!(foreign_machine_id(&facts(B, 5, 1), &[5], Some(A)), None);
        assert_eq!(foreign_machine_id(&facts(B, 5, 1), &[4, 5], None), None);
        assert_eq!(
            foreign_machine_id(&facts(B, 6, 1), &[5], Some(A)),
            Some(Foreign::OtherMount)
        );
        assert_eq!(
            foreign_machine_id(&facts(B, 5, 2), &[5], Some(A)),
            Some(Foreign::Linked(2))
        );
        // The host's file is refused whatever mount it is reached through.
        assert_eq!(
            foreign_machine_id(&facts(A, 5, 1), &[5], Some(A)),
            Some(Foreign::HostMachineId)
        );
    }

    #[test]
    fn a_rootfs_is_a_root_alias_by_device_and_inode() {
        let host = Host {
            root: A,
            machine_id: None,
        };
        assert_eq!(root_alias(B, A, &host), None);
        assert_eq!(
            root_alias(A, A, &host),
            Some("the root of the mount namespace")
        );
        // The container's namespace has another root (after pivot_root, a
        // chroot'ed runtime), the rootfs is still the host's.
        let other = FileId {
            dev: (0, 40),
            ino: 2,
        };
        assert_eq!(
            root_alias(A, other, &host),
            Some("the host's root directory")
        );
        assert_eq!(root_alias(B, other, &host), None);
        // Same inode on another device is another directory.
        let same_ino = FileId {
            dev: (8, 2),
            ino: 2,
        };
        assert_eq!(root_alias(same_ino, other, &host), None);
    }

    #[test]
    fn what_poststop_does_with_a_journal_dir() {
        let id = "4f3c2a1b9e8d";
        let ours = Some(id.as_bytes());
        assert_eq!(leftover(ours, id, false, true), Leftover::Remove);
        assert_eq!(leftover(ours, id, false, false), Leftover::HoldsFiles);
        assert_eq!(leftover(ours, id, true, true), Leftover::Finished);
        assert_eq!(leftover(ours, id, true, false), Leftover::Finished);
        for found in [
            None,
            Some(&b"other"[..]),
            Some(&b""[..]),
            Some(&b"4f3c2a1b9e8"[..]),
        ] {
            for done in [false, true] {
                assert_eq!(leftover(found, id, done, true), Leftover::NotOurs);
            }
        }
    }
}
