//! The host side of prestart, in the hook's own mount namespace: pin the
//! container, create host directories, delegate the container's cgroup, take
//! the host objects the container steps bind; and undo all of it when
//! prestart fails later.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pathrs::flags::OpenFlags;
use pathrs::{Handle, Root};
use rustix::fs::{Mode, OFlags};

use super::guard::{self, HostIds, Refusal};
use super::{chown_to, file_facts};
use crate::config::Owner;
use crate::mounts;
use crate::plan::{HostSource, HostStep, ObjectId, PoststopHostStep};

/// The xattr on a host journal directory that names the container it was
/// made for. `trusted.*`: only host root can set it, never the container.
pub const JOURNAL_MARKER_XATTR: &str = "trusted.oci-systemd-hook.id";

/// A host change to undo if prestart fails.
enum Change {
    RemoveDir(PathBuf),
    Chown { fd: OwnedFd, uid: u32, gid: u32 },
}

/// The host changes made so far, undone in reverse order by [`Undo::run`].
#[derive(Default)]
pub(super) struct Undo(Vec<Change>);

impl Undo {
    /// Undoes every recorded change, newest first; failures are logged.
    pub(super) fn run(self) {
        for u in self.0.into_iter().rev() {
            match u {
                Change::RemoveDir(dir) => {
                    if let Err(e) = std::fs::remove_dir(&dir) {
                        log::warn!(
                            "cannot remove {} after a failed prestart: {e}",
                            dir.display()
                        );
                    }
                }
                Change::Chown { fd, uid, gid } => {
                    if let Err(e) = chown_to(fd.as_fd(), Owner { uid, gid }) {
                        log::warn!("cannot restore an owner after a failed prestart: {e}");
                    }
                }
            }
        }
    }
}

/// The container's mount namespace, pinned.
pub(super) struct Container {
    pub(super) mnt_ns: OwnedFd,
    mnt_ns_ino: u64,
}

fn ns_ino(fd: BorrowedFd<'_>) -> anyhow::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_ino)
}

/// Pins the container's mount namespace and checks it: not the hook's own,
/// and the pidfd still names a live process (so the pid was not reused).
pub(super) fn pin_container(pid: i32) -> anyhow::Result<Container> {
    let pid_t = rustix::process::Pid::from_raw(pid).context("invalid pid")?;
    let pidfd = rustix::process::pidfd_open(pid_t, rustix::process::PidfdFlags::empty())
        .with_context(|| format!("the container process {pid} is gone"))?;
    let mnt_ns = rustix::fs::open(
        format!("/proc/{pid}/ns/mnt"),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("the container process {pid} is gone"))?;
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
        return Err(Refusal::HookNamespace { pid }.into());
    }
    Ok(Container { mnt_ns, mnt_ns_ino })
}

/// The host's root directory and machine-id, by device and inode, read in
/// the hook's own mount namespace (before the setns at prestart).
pub(super) fn host_ids() -> anyhow::Result<HostIds> {
    let open = |p: &str| {
        rustix::fs::open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .and_then(|fd| file_facts(fd.as_fd()))
            .map(|f| f.id)
    };
    Ok(HostIds {
        root: open("/").context("stat the host's /")?,
        machine_id: open("/etc/machine-id").ok(),
    })
}

/// What the host steps produced for the container steps: the detached
/// copies of host objects, by the [`ObjectId`] their bind names. `None`
/// marks an object left out (its host directory was skipped).
#[derive(Default)]
pub(super) struct HostObjects(BTreeMap<ObjectId, Option<OwnedFd>>);

impl HostObjects {
    /// Takes the object `id`: `Ok(None)` when it was left out.
    ///
    /// # Errors
    /// No host step opened `id` (a plan whose bind has no open).
    pub(super) fn take(&mut self, id: ObjectId) -> anyhow::Result<Option<OwnedFd>> {
        self.0
            .remove(&id)
            .with_context(|| format!("host object {id} was never opened"))
    }
}

/// Runs the host steps in order. Changes are recorded in `undo`.
///
/// # Errors
/// The first failing step, with the step in the message.
pub(super) fn run(
    steps: &[HostStep],
    container: &Container,
    undo: &mut Undo,
) -> anyhow::Result<HostObjects> {
    let mut objects = HostObjects::default();
    let mut skipped_dirs: Vec<&Path> = Vec::new();
    // The own cgroup is both delegated and bound: check its processes once.
    let mut checked: Vec<&HostSource> = Vec::new();
    for step in steps {
        log::debug!(oci_action = step.kind(); "{step}");
        match step {
            HostStep::HostDir {
                path,
                mode,
                owner,
                label,
                optional,
                marker,
            } => match host_dir(path, *mode, *owner, label.as_deref(), marker, undo) {
                Ok(()) => {}
                Err(e) if *optional => {
                    log::warn!("{step}: {e:#}; skipped (no host journal for this container)");
                    skipped_dirs.push(path);
                }
                Err(e) => return Err(e.context(step.to_string())),
            },
            HostStep::DelegateCgroup {
                source,
                files,
                owner,
            } => {
                check_once(source, &mut checked, container).with_context(|| step.to_string())?;
                delegate_cgroup(source, files, *owner, undo).with_context(|| step.to_string())?;
            }
            HostStep::Open { object, source } => {
                let fd = match source {
                    HostSource::Path(p) if skipped_dirs.contains(&p.as_path()) => None,
                    HostSource::Path(_) => Some(open_host_source(source)),
                    HostSource::Beneath { .. } => {
                        check_once(source, &mut checked, container)
                            .with_context(|| step.to_string())?;
                        Some(open_host_source(source))
                    }
                };
                let fd = fd.transpose().with_context(|| step.to_string())?;
                objects.0.insert(*object, fd);
            }
        }
    }
    Ok(objects)
}

/// Runs one poststop host step (whether or not the rootfs is still there).
pub(super) fn run_poststop(step: &PoststopHostStep) -> anyhow::Result<()> {
    match *step {}
}

/// [`check_cgroup_is_the_containers`], once per cgroup and prestart.
fn check_once<'a>(
    source: &'a HostSource,
    checked: &mut Vec<&'a HostSource>,
    container: &Container,
) -> anyhow::Result<()> {
    if !checked.contains(&source) {
        check_cgroup_is_the_containers(source, container)?;
        checked.push(source);
    }
    Ok(())
}

/// Creates the host directory `path` (its parent must exist), owned and
/// labelled as asked, marked with the container id; or reuses it when it
/// carries this container's mark (a restarted container).
fn host_dir(
    path: &Path,
    mode: u32,
    owner: Option<Owner>,
    label: Option<&str>,
    marker: &str,
    undo: &mut Undo,
) -> anyhow::Result<()> {
    let parent = path.parent().context("no parent directory")?;
    if !parent.is_dir() {
        return Err(Refusal::NoHostParent {
            parent: parent.to_path_buf(),
        }
        .into());
    }
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => undo.0.push(Change::RemoveDir(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut buf = vec![0u8; 256];
            let found = rustix::fs::lgetxattr(path, JOURNAL_MARKER_XATTR, &mut buf)
                .ok()
                .map(|n| &buf[..n]);
            guard::check_marker(path, found, marker)?;
            if !std::fs::symlink_metadata(path)?.is_dir() {
                return Err(Refusal::HostDirNotDir {
                    path: path.to_path_buf(),
                }
                .into());
            }
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("mkdir {}", path.display())),
    }
    let dir = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
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
    Ok(())
}

/// Checks that every process in the cgroup `source` is in the container's
/// mount namespace: a cgroup shared with host processes (a container started
/// with `--cgroups=disabled`) must never be made writable or delegated.
fn check_cgroup_is_the_containers(
    source: &HostSource,
    container: &Container,
) -> anyhow::Result<()> {
    let HostSource::Beneath { base, path } = source else {
        return Ok(());
    };
    let dir = Root::open(base)?.resolve(path)?;
    let procs = mounts::open_beneath(dir.as_fd(), Path::new("cgroup.procs"))?;
    let mut text = String::new();
    Handle::from_fd(procs)
        .reopen(OpenFlags::O_RDONLY)?
        .take(1 << 20)
        .read_to_string(&mut text)?;
    guard::check_cgroup_procs(path, &text, container.mnt_ns_ino, |pid| {
        std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
            .ok()
            .map(|m| m.ino())
    })?;
    Ok(())
}

/// Chowns the container's own cgroup directory and the given files in it
/// (resolved beneath it, no symlinks) to `owner`; nothing else. The previous
/// owners are recorded for the undo. The caller has checked with
/// [`check_cgroup_is_the_containers`] that the cgroup is the container's.
fn delegate_cgroup(
    source: &HostSource,
    files: &[String],
    owner: Owner,
    undo: &mut Undo,
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
        undo.0.push(Change::Chown {
            fd,
            uid: st.st_uid,
            gid: st.st_gid,
        });
    }
    Ok(())
}

/// A detached copy of the host object `source`.
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
