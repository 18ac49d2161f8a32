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

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use pathrs::error::ErrorKind;
use pathrs::flags::OpenFlags;
use pathrs::{Handle, Root};
use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, StatxFlags, Uid, chownat, statx,
};

use crate::config::Owner;
use crate::copyup;
use crate::mountinfo::Table;
use crate::mounts;
use crate::plan::{Action, HostSource, Plan, TmpfsOptions};

/// The xattr on a host journal directory that names the container it was
/// made for. `trusted.*`: only host root can set it, never the container.
pub const JOURNAL_MARKER_XATTR: &str = "trusted.oci-systemd-hook.id";

fn is_enoent(e: &pathrs::error::Error) -> bool {
    e.kind() == ErrorKind::OsError(Some(libc::ENOENT))
}

/// A host change to undo if prestart fails.
enum Undo {
    RemoveDir(PathBuf),
    Chown { fd: OwnedFd, uid: u32, gid: u32 },
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
                Undo::RemoveDir(dir) => {
                    if let Err(e) = std::fs::remove_dir(&dir) {
                        log::warn!(
                            "cannot remove {} after a failed prestart: {e}",
                            dir.display()
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
    Ok(Container { mnt_ns, mnt_ns_ino })
}

fn prestart_inner<'a>(
    plan: &'a Plan,
    pid: i32,
    rootfs: &Path,
    undo: &mut Vec<Undo>,
) -> anyhow::Result<()> {
    // 1. Pin and check the container.
    let container = pin_container(pid)?;

    // 2. Host side.
    let mut sources: Vec<Option<OwnedFd>> = Vec::with_capacity(plan.actions.len());
    let mut skipped_dirs: Vec<&Path> = Vec::new();
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
                    Ok(()) => {}
                    Err(e) if *optional => {
                        log::warn!("{action}: {e:#}; skipped (no host journal for this container)");
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
    let mut ns = Namespace::open(rootfs, plan)?;
    for (action, source) in plan.actions.iter().zip(sources) {
        log::debug!(oci_action = action.kind(); "{action}");
        ns.run(action, source).with_context(|| action.to_string())?;
    }
    Ok(())
}

/// Runs a poststop plan against the rootfs as the host sees it.
///
/// # Errors
/// The first failing step. A rootfs that no longer exists is not an error.
pub fn poststop(plan: &Plan, rootfs: &Path) -> anyhow::Result<()> {
    if plan.actions.is_empty() {
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
    refuse_namespace_root(&root, rootfs)?;
    let root_mnt = mnt_id(root.as_fd())?;
    for action in &plan.actions {
        match action {
            Action::ClearFile { dest, expected } => {
                clear_file(&root, root_mnt, dest, expected).with_context(|| action.to_string())?
            }
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

/// Refuses a rootfs that is the root of the current mount namespace (a
/// config.json whose `root.path` is `/`): the hook would work on the host.
fn refuse_namespace_root(root: &Root, rootfs: &Path) -> anyhow::Result<()> {
    let slash = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if identity(root.as_fd())? == identity(slash.as_fd())? {
        bail!(
            "the rootfs {} is the root of the mount namespace; refusing",
            rootfs.display()
        );
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
    undo: &mut Vec<Undo>,
) -> anyhow::Result<()> {
    let parent = path.parent().context("no parent directory")?;
    if !parent.is_dir() {
        bail!(
            "{} does not exist; the hook does not create it (it would change how the host keeps its journal)",
            parent.display()
        );
    }
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => undo.push(Undo::RemoveDir(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // One byte more than the marker: a longer value (ERANGE) or a
            // shorter one is another container's.
            let mut buf = vec![0u8; marker.len() + 1];
            let ours = rustix::fs::lgetxattr(path, JOURNAL_MARKER_XATTR, &mut buf)
                .is_ok_and(|n| buf[..n] == *marker.as_bytes());
            if !ours {
                bail!(
                    "{} exists and was not made for this container; not reusing it",
                    path.display()
                );
            }
            if !std::fs::symlink_metadata(path)?.is_dir() {
                bail!("{} is not a directory", path.display());
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
    for pid in text.split_whitespace() {
        let ns = std::fs::metadata(format!("/proc/{pid}/ns/mnt"));
        match ns {
            Ok(m) if m.ino() == container.mnt_ns_ino => {}
            Ok(_) => bail!(
                "cgroup {} also holds process {pid}, which is not in the container; refusing to make it writable",
                path.display()
            ),
            Err(_) => {} // exited meanwhile
        }
    }
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
}

impl Namespace {
    fn open(rootfs: &Path, plan: &Plan) -> anyhow::Result<Namespace> {
        let root =
            Root::open(rootfs).with_context(|| format!("open rootfs {}", rootfs.display()))?;
        refuse_namespace_root(&root, rootfs)?;
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
            Action::ClearFile { .. } => bail!("not a prestart action"),
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
        self.check_writable(dir.as_fd(), dest)?;
        let fd = rustix::fs::openat(
            &dir,
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
                h.reopen(OpenFlags::O_WRONLY | OpenFlags::O_TRUNC)?
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
}

fn regular_file(handle: &Handle) -> anyhow::Result<()> {
    let st = statx(handle.as_fd(), "", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
    let ft = FileType::from_raw_mode(u32::from(st.stx_mode));
    if ft != FileType::RegularFile {
        bail!("not a regular file ({ft:?})");
    }
    Ok(())
}

fn clear_file(root: &Root, root_mnt: u64, dest: &Path, expected: &str) -> anyhow::Result<()> {
    let handle = match root.resolve(dest) {
        Ok(h) => h,
        Err(e) if is_enoent(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    regular_file(&handle)?;
    if mnt_id(handle.as_fd())? != root_mnt {
        log::warn!(
            "{} resolves out of the image's own file system; left alone",
            dest.display()
        );
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
