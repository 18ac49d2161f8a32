//! Carrying out a [`Plan`]: the only module that changes the system.
//!
//! Prestart (runtime-spec `config.md#prestart`: called after the container's
//! namespaces are created, before pivot_root):
//! 1. pin the container's init with a pidfd and its mount namespace with an
//!    fd, check that the namespace is not the hook's own and that the pidfd
//!    still names a live process (so the pid was not reused in between);
//! 2. in the hook's own (host) mount namespace: create host directories,
//!    delegate the container's cgroup, take detached copies
//!    (`open_tree(OPEN_TREE_CLONE)`) of every host object to bind, kept by
//!    [`ObjectId`](crate::plan::ObjectId) for the binds;
//! 3. join the container's mount namespace (`setns`), open the rootfs
//!    (`root.path`) with `pathrs`, refuse a rootfs that is the namespace's
//!    root, and carry out each action, resolving every container path inside
//!    the rootfs.
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
//! vanish with it.
//!
//! By concern: `host` (pin, cgroup delegation, the host objects, the undo,
//! the poststop host steps), `hostdir` (the host journal directory's life),
//! `members` (who is in the container's cgroup tree), `container` (the
//! namespace work; `container::files` for files), `rootfs` (the poststop
//! steps on the rootfs), [`guard`] (the safety policy, pure). A refusal of
//! the policy is an [`ApplyError::Refused`], anything else an
//! [`ApplyError::Failed`].

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use anyhow::Context;
use pathrs::error::ErrorKind;
use pathrs::{Handle, Root};
use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, StatxFlags, Uid, chownat, statx,
};

use crate::config::Owner;
use crate::plan::{Plan, PoststopPlan};
use guard::HostIds;

mod cgroup2;
mod container;
pub mod guard;
mod host;
mod hostdir;
mod machine;
mod members;
mod rootfs;

pub use guard::Refusal;
pub use guard::{MAX_CGROUPS_CHECKED, MAX_PROCS_BYTES};
pub use hostdir::{JOURNAL_DONE_XATTR, JOURNAL_MARKER_XATTR};
pub use machine::{Registration, SYSTEM_BUS_SOCKET};

/// Why applying a plan failed: refused on purpose by the safety policy, or
/// failed. Either way the message (`{:#}`-style, outermost step first) names
/// the step and the path.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A safety rule refused a step; `refusal` is which, `error` the whole
    /// chain with the step.
    #[error("{error:#}")]
    Refused {
        refusal: Refusal,
        error: anyhow::Error,
    },
    /// A system call or a read failed.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl ApplyError {
    /// The refusal, when the policy refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ApplyError::Refused { refusal, .. } => Some(refusal),
            ApplyError::Failed(_) => None,
        }
    }

    /// Whether the policy refused (as opposed to a failure).
    pub fn is_refusal(&self) -> bool {
        self.refusal().is_some()
    }
}

impl From<anyhow::Error> for ApplyError {
    fn from(error: anyhow::Error) -> ApplyError {
        match error.downcast_ref::<Refusal>() {
            Some(r) => ApplyError::Refused {
                refusal: r.clone(),
                error,
            },
            None => ApplyError::Failed(error),
        }
    }
}

/// Runs a prestart plan for the container whose init process is `pid` and
/// whose rootfs is at `rootfs` (absolute, as in its mount namespace): the
/// host steps, then the container steps in its mount namespace.
///
/// Returns what became of the machine registration, when the plan has a
/// [`HostStep::RegisterMachine`](crate::plan::HostStep::RegisterMachine);
/// it never fails prestart.
///
/// # Errors
/// The first failing step, with the step and the path in the message; a
/// [`Refusal`] is [`ApplyError::Refused`]. Host changes made before the
/// failure are undone.
pub fn prestart(plan: &Plan, pid: i32, rootfs: &Path) -> Result<Option<Registration>, ApplyError> {
    let mut undo = host::Undo::default();
    let result = prestart_inner(plan, pid, rootfs, &mut undo);
    if result.is_err() {
        undo.run();
    }
    Ok(result?)
}

fn prestart_inner(
    plan: &Plan,
    pid: i32,
    rootfs: &Path,
    undo: &mut host::Undo,
) -> anyhow::Result<Option<Registration>> {
    // 1. Pin and check the container; note what the host's root and
    // machine-id are before leaving its namespace.
    let container = host::pin_container(pid)?;
    let host_ids = host::host_ids()?;
    // 2. Host side.
    let host::HostDone {
        mut objects,
        unfinished,
        machine,
    } = host::run(&plan.host, &container, undo)?;
    // 3. Join the container's mount namespace and work under the rootfs;
    // the system log first, while /dev/log is still the host's.
    crate::log::connect();
    rustix::thread::move_into_link_name_space(
        container.mnt_ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Mount),
    )
    .with_context(|| format!("setns into the mount namespace of {pid}"))?;
    let mut ns = container::Namespace::open(container.root.as_fd(), rootfs, plan, host_ids)?;
    for step in &plan.container {
        log::debug!(oci_action = step.kind(); "{step}");
        ns.run(step, &mut objects)
            .with_context(|| step.to_string())?;
    }
    // 4. Done: from here on poststop keeps the host directories.
    unfinished.mark_done()?;
    // 5. Last, as it starts the D-Bus client's threads (see `machine`).
    Ok(machine.map(|m| match m {
        Ok(pending) => machine::register(pending, container.pidfd.as_fd(), pid),
        Err(registration) => registration,
    }))
}

/// Runs a poststop plan: its host steps, then its rootfs steps against the
/// rootfs as the host sees it.
///
/// # Errors
/// The first failing step. A rootfs that no longer exists is not an error:
/// its steps are skipped.
pub fn poststop(plan: &PoststopPlan, rootfs: &Path) -> Result<(), ApplyError> {
    Ok(poststop_inner(plan, rootfs)?)
}

fn poststop_inner(plan: &PoststopPlan, rootfs: &Path) -> anyhow::Result<()> {
    for step in &plan.host {
        log::debug!(oci_action = step.kind(); "{step}");
        host::run_poststop(step).with_context(|| step.to_string())?;
    }
    if plan.rootfs.is_empty() {
        return Ok(());
    }
    // As the runtime sees it: from the hook's own root, never through a
    // /proc magic link (prestart refuses those too).
    let root = match open_rootfs(rustix::fs::CWD, rootfs, ResolveFlags::empty()) {
        Ok(r) => r,
        Err(e) if e.downcast_ref::<rustix::io::Errno>() == Some(&rustix::io::Errno::NOENT) => {
            log::info!("rootfs {} is gone; nothing to clean", rootfs.display());
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let host_ids = host::host_ids()?;
    let root_mnt = refuse_namespace_root(&root, rootfs, &host_ids)?.mnt_id;
    for step in &plan.rootfs {
        log::debug!(oci_action = step.kind(); "{step}");
        rootfs::run(step, &root, root_mnt, &host_ids).with_context(|| step.to_string())?;
    }
    Ok(())
}

/// How often [`open_rootfs`] retries a scoped lookup that the kernel
/// answered with `EAGAIN` (a rename or mount elsewhere on the system while
/// it crossed a `..`; openat2(2)).
const ROOTFS_OPEN_TRIES: usize = 16;

/// Opens the rootfs `rootfs` (an absolute path) from `dir` with `resolve`
/// added to `RESOLVE_NO_MAGICLINKS`: prestart resolves it inside the
/// container process's root (`RESOLVE_IN_ROOT`), poststop from the hook's own
/// root. A path through a `/proc` magic link (`/proc/<pid>/root`,
/// `/proc/<pid>/fd/N`) names another process's tree and is refused
/// ([`Refusal::MagicLinkRootfs`]); `EAGAIN` from a scoped lookup is retried.
///
/// # Errors
/// The refusal, or the `Errno` (as the error's source, `ENOENT` when the
/// rootfs is gone) with the path as context.
fn open_rootfs(dir: impl AsFd, rootfs: &Path, resolve: ResolveFlags) -> anyhow::Result<Root> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            dir.as_fd(),
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => return Ok(Root::from_fd(fd)),
            Err(rustix::io::Errno::AGAIN) if tries + 1 < ROOTFS_OPEN_TRIES => tries += 1,
            // ELOOP: NO_MAGICLINKS met a magic link; EXDEV: IN_ROOT did.
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => {
                return Err(Refusal::MagicLinkRootfs {
                    rootfs: rootfs.to_path_buf(),
                }
                .into());
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("open rootfs {}", rootfs.display()))
                );
            }
        }
    }
}

fn is_enoent(e: &pathrs::error::Error) -> bool {
    e.kind() == ErrorKind::OsError(Some(libc::ENOENT))
}

/// `e`, from resolving `path` inside the rootfs, with the path: a
/// [`Refusal::Unresolvable`] when the image's shape is the cause (a dangling
/// symlink, a loop, a non-directory in the way, a resolution libpathrs found
/// unsafe), else a failure.
fn unresolvable(e: pathrs::error::Error, path: &Path) -> anyhow::Error {
    let refusal = Refusal::Unresolvable {
        path: path.to_path_buf(),
    };
    let shape = matches!(
        e.kind(),
        ErrorKind::SafetyViolation
            | ErrorKind::OsError(Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP))
    );
    if shape {
        anyhow::Error::new(e).context(refusal)
    } else {
        anyhow::Error::new(e).context(refusal.to_string())
    }
}

/// Refuses a rootfs that is the root of the current mount namespace or the
/// host's root directory (a config.json whose `root.path` is `/` or an alias
/// of it): the hook would work on the host. Returns the rootfs root's
/// facts (one `statx`; the fd's mount and inode never change).
fn refuse_namespace_root(
    root: &Root,
    rootfs: &Path,
    host: &HostIds,
) -> anyhow::Result<guard::FileFacts> {
    let slash = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let facts = file_facts(root.as_fd())?;
    guard::check_rootfs(rootfs, facts.id, file_facts(slash.as_fd())?.id, host)?;
    Ok(facts)
}

/// Refuses anything but a regular file.
fn regular_file(handle: &Handle) -> anyhow::Result<()> {
    let st = statx(handle.as_fd(), "", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
    refuse_unless_regular(FileType::from_raw_mode(u32::from(st.stx_mode)))
}

/// Refuses a file type `ft` that is not a regular file.
fn refuse_unless_regular(ft: FileType) -> anyhow::Result<()> {
    if ft != FileType::RegularFile {
        return Err(Refusal::NotRegularFile {
            kind: format!("{ft:?}"),
        }
        .into());
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

fn file_facts(fd: BorrowedFd<'_>) -> rustix::io::Result<guard::FileFacts> {
    Ok(type_and_facts(fd)?.1)
}

/// The file type and the [`guard::FileFacts`] of `fd`, from one `statx`.
fn type_and_facts(fd: BorrowedFd<'_>) -> rustix::io::Result<(FileType, guard::FileFacts)> {
    let st = statx(
        fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::TYPE | StatxFlags::INO | StatxFlags::NLINK | StatxFlags::MNT_ID,
    )?;
    let facts = guard::FileFacts {
        id: guard::FileId {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
        },
        mnt_id: st.stx_mnt_id,
        nlink: st.stx_nlink,
    };
    Ok((FileType::from_raw_mode(u32::from(st.stx_mode)), facts))
}

fn mnt_id(fd: BorrowedFd<'_>) -> anyhow::Result<u64> {
    Ok(statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)?.stx_mnt_id)
}

/// The file type and the [`guard::Identity`] of `fd`, from one `statx`.
fn type_and_identity(fd: BorrowedFd<'_>) -> anyhow::Result<(FileType, guard::Identity)> {
    let st = statx(
        fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::TYPE | StatxFlags::INO | StatxFlags::MNT_ID,
    )?;
    Ok((
        FileType::from_raw_mode(u32::from(st.stx_mode)),
        (
            st.stx_mnt_id,
            st.stx_ino,
            st.stx_dev_major,
            st.stx_dev_minor,
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_from_failures_with_the_message_unchanged() {
        let refusal = Refusal::NotRegularFile {
            kind: "Fifo".into(),
        };
        let e = ApplyError::from(
            anyhow::Error::new(refusal.clone()).context("write /etc/machine-id mode 444"),
        );
        assert_eq!(e.refusal(), Some(&refusal));
        assert_eq!(
            e.to_string(),
            "write /etc/machine-id mode 444: not a regular file (Fifo)"
        );
        // A refusal given as the context of an OS error, under a step.
        let io = std::io::Error::from_raw_os_error(libc::ELOOP);
        let e = ApplyError::from(
            anyhow::Error::new(io)
                .context(Refusal::Unresolvable {
                    path: "/etc/machine-id".into(),
                })
                .context("write /etc/machine-id mode 444"),
        );
        assert!(e.is_refusal());
        let e = ApplyError::from(
            anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EIO))
                .context("write /etc/machine-id mode 444"),
        );
        assert!(!e.is_refusal());
        assert!(
            e.to_string()
                .starts_with("write /etc/machine-id mode 444: ")
        );
    }
}
