//! The host side, in the hook's own mount namespace: at prestart pin the
//! container, create host directories (`hostdir`), check and delegate the
//! container's cgroup (`members`), take the host objects the container steps
//! bind, and undo all of it when prestart fails later; at poststop the host
//! steps of the poststop plan.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pathrs::Root;
use rustix::fs::{AtFlags, Mode, OFlags};

use super::guard::{HostIds, Refusal};
use super::{cgroup2, chown_to, file_facts, hostdir, machine, members};
use crate::config::Owner;
use crate::mounts;
use crate::plan::{HostSource, HostStep, ObjectId, PoststopHostStep};

/// A host change to undo if prestart fails.
pub(super) enum Change {
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
    /// Move the processes of the cgroup `name` of the cgroup2 mount `mnt`
    /// back to its root, then remove `name`.
    Cgroup2 {
        mnt: OwnedFd,
        name: String,
    },
}

/// The host changes made so far, undone in reverse order by [`Undo::run`].
#[derive(Default)]
pub(super) struct Undo(Vec<Change>);

impl Undo {
    /// Records a change.
    pub(super) fn push(&mut self, change: Change) {
        self.0.push(change);
    }

    /// Undoes every recorded change, newest first; failures are logged.
    pub(super) fn run(self) {
        for u in self.0.into_iter().rev() {
            match u {
                Change::RemoveDir {
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
                Change::Chown { fd, uid, gid } => {
                    if let Err(e) = chown_to(fd.as_fd(), Owner { uid, gid }) {
                        log::warn!("cannot restore an owner after a failed prestart: {e}");
                    }
                }
                Change::Cgroup2 { mnt, name } => {
                    if let Err(e) = cgroup2::undo(mnt.as_fd(), &name) {
                        log::warn!("cannot remove cgroup2 /{name} after a failed prestart: {e:#}");
                    }
                }
            }
        }
    }
}

/// The container's mount namespace, pinned.
pub(super) struct Container {
    pub(super) mnt_ns: OwnedFd,
    pub(super) mnt_ns_ino: u64,
    /// The root directory of the container's init process as the runtime
    /// left it (`/proc/<pid>/root`, before pivot_root): `root.path` is
    /// resolved inside it. Normally the namespace's root; when the runtime
    /// runs in a plain chroot, that chroot — which `setns` would otherwise
    /// lose, since it resets the hook's root to the namespace's real root.
    pub(super) root: OwnedFd,
    /// A pidfd of the container's init: the leader machined pins.
    pub(super) pidfd: OwnedFd,
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
        return Err(Refusal::HookNamespace { pid }.into());
    }
    Ok(Container {
        mnt_ns,
        mnt_ns_ino,
        root,
        pidfd,
    })
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

/// What the host steps leave for the rest of prestart.
pub(super) struct HostDone {
    /// The host objects the container steps bind.
    pub(super) objects: HostObjects,
    /// The host directories to mark done when the whole prestart finished
    /// ([`hostdir::Unfinished::mark_done`]).
    pub(super) unfinished: hostdir::Unfinished,
    /// The machine registration to finish last, or what already ended it
    /// (no bus); `None` without a [`HostStep::RegisterMachine`].
    pub(super) machine: Option<Result<machine::Pending, machine::Registration>>,
}

/// Runs the host steps in order. Changes are recorded in `undo`.
///
/// # Errors
/// The first failing step, with the step in the message.
pub(super) fn run(
    steps: &[HostStep],
    container: &Container,
    undo: &mut Undo,
) -> anyhow::Result<HostDone> {
    let mut objects = HostObjects::default();
    let mut unfinished = hostdir::Unfinished::default();
    let mut pending = None;
    // The cgroup2 a MakeCgroup2 step mounted, detached.
    let mut own_cgroup2: Option<OwnedFd> = None;
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
            } => match hostdir::make(path, *mode, *owner, label.as_deref(), marker, undo) {
                Ok(dir) => unfinished.push(dir, marker),
                Err(e) if *optional => {
                    log::warn!(
                        "{step}: {e:#}; skipped: no host journal for this container, journald keeps its journal inside it"
                    );
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
            HostStep::MakeCgroup2 {
                name,
                members,
                owner,
            } => {
                check_once(members, &mut checked, container).with_context(|| step.to_string())?;
                let mnt =
                    cgroup2::make(name, members, *owner, undo).with_context(|| step.to_string())?;
                own_cgroup2 = Some(mnt);
            }
            HostStep::Open { object, source } => {
                let fd = match source {
                    HostSource::HookCgroup2 => Some(
                        own_cgroup2
                            .as_ref()
                            .context("no cgroup2 was mounted by the hook")
                            .and_then(|m| Ok(m.try_clone()?)),
                    ),
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
            // Only the socket here: the call comes after the container steps.
            HostStep::RegisterMachine(m) => pending = Some(machine::connect(m)),
        }
    }
    Ok(HostDone {
        objects,
        unfinished,
        machine: pending,
    })
}

/// Runs one poststop host step (whether or not the rootfs is still there).
pub(super) fn run_poststop(step: &PoststopHostStep) -> anyhow::Result<()> {
    match step {
        PoststopHostStep::RemoveUnfinishedHostDir { path, marker } => {
            hostdir::remove_unfinished(path, marker)
        }
        PoststopHostStep::RemoveCgroup2 { name } => cgroup2::remove(name),
        // Never an error: at most one warning.
        PoststopHostStep::TerminateMachine(m) => {
            match machine::terminate(m) {
                Ok(machine::Termination::Terminated) => {
                    log::info!("terminated machine {} in systemd-machined", m.name)
                }
                Ok(machine::Termination::Gone(why)) => {
                    log::debug!("machine {} is not in systemd-machined: {why}", m.name)
                }
                Ok(machine::Termination::Foreign) => log::info!(
                    "machine {} in systemd-machined has another id or root directory; left alone",
                    m.name
                ),
                Err(e) => log::warn!(
                    "cannot terminate machine {} in systemd-machined: {e}",
                    m.name
                ),
            }
            Ok(())
        }
    }
}

/// [`members::check_cgroup_is_the_containers`], once per cgroup and
/// prestart.
fn check_once<'a>(
    source: &'a HostSource,
    checked: &mut Vec<&'a HostSource>,
    container: &Container,
) -> anyhow::Result<()> {
    if !checked.contains(&source) {
        members::check_cgroup_is_the_containers(source, container)?;
        checked.push(source);
    }
    Ok(())
}

/// Chowns the container's own cgroup directory and the given files in it
/// (resolved beneath it, no symlinks) to `owner`; nothing else. The previous
/// owners are recorded for the undo. The caller has checked with
/// [`members::check_cgroup_is_the_containers`] that the cgroup is the
/// container's.
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
        undo.push(Change::Chown {
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
        HostSource::HookCgroup2 => bail!("the hook's cgroup2 is opened by its MakeCgroup2 step"),
    }
}
