//! Carrying out a [`Plan`]: the only module that changes the system.
//!
//! Prestart (runtime-spec `config.md#prestart`: called after the container's
//! namespaces are created, before pivot_root):
//! 1. in the hook's own (host) mount namespace: create host directories and
//!    take detached copies (`open_tree(OPEN_TREE_CLONE)`) of every host
//!    object to bind;
//! 2. join the container's mount namespace (`setns` on a pidfd), after
//!    checking it is not the hook's own;
//! 3. open the rootfs (`root.path`) with `pathrs` and carry out each action,
//!    resolving every container path inside it.
//!
//! Mounts made in step 3 live in the container's mount namespace and vanish
//! with it; if a step fails, the host directories made in step 1 are removed
//! again, so nothing half-done stays on the host.

use std::fs::Permissions;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pathrs::error::ErrorKind;
use pathrs::flags::OpenFlags;
use pathrs::{Handle, Root};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, StatxFlags, Uid, chownat, statx};

use crate::config::Owner;
use crate::copyup;
use crate::mounts;
use crate::plan::{Action, HostSource, Plan, TmpfsOptions};

fn is_enoent(e: &pathrs::error::Error) -> bool {
    e.kind() == ErrorKind::OsError(Some(libc::ENOENT))
}

/// Runs a prestart plan for the container whose init process is `pid` and
/// whose rootfs is at `rootfs` (absolute, as in its mount namespace).
///
/// # Errors
/// The first failing step, with the action and the path in the message.
/// Host directories created before the failure are removed again.
pub fn prestart(plan: &Plan, pid: i32, rootfs: &Path) -> anyhow::Result<()> {
    let mut created = Vec::new();
    let result = prestart_inner(plan, pid, rootfs, &mut created);
    if result.is_err() {
        for dir in created.iter().rev() {
            if let Err(e) = std::fs::remove_dir(dir) {
                log::warn!(
                    "cannot remove {} after a failed prestart: {e}",
                    dir.display()
                );
            }
        }
    }
    result
}

fn prestart_inner(
    plan: &Plan,
    pid: i32,
    rootfs: &Path,
    created: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    // 1. Host side.
    let mut sources: Vec<Option<OwnedFd>> = Vec::with_capacity(plan.actions.len());
    let mut skipped_dirs: Vec<&Path> = Vec::new();
    for action in &plan.actions {
        sources.push(match action {
            Action::HostDir {
                path,
                mode,
                owner,
                label,
                optional,
            } => {
                match create_host_dir(path, *mode, created) {
                    Ok(()) => label_and_own(path, *owner, label.as_deref())
                        .with_context(|| action.to_string())?,
                    Err(e) if *optional && is_denied(&e) => {
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
                delegate_cgroup(source, files, *owner).with_context(|| action.to_string())?;
                None
            }
            Action::Bind {
                source: HostSource::Path(p),
                ..
            } if skipped_dirs.contains(&p.as_path()) => None,
            Action::Bind { source, .. } => {
                Some(open_host_source(source).with_context(|| action.to_string())?)
            }
            _ => None,
        });
    }

    // 2. Join the container's mount namespace.
    join_mount_namespace(pid)?;

    // 3. Inside the container's mount namespace, under the rootfs.
    let root = Root::open(rootfs).with_context(|| format!("open rootfs {}", rootfs.display()))?;
    for (action, source) in plan.actions.iter().zip(sources) {
        log::debug!(oci_action = action.kind(); "{action}");
        run_in_rootfs(&root, action, source).with_context(|| action.to_string())?;
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
    for action in &plan.actions {
        match action {
            Action::ClearFile { dest, expected } => {
                clear_file(&root, dest, expected).with_context(|| action.to_string())?
            }
            other => bail!("{other}: not a poststop action"),
        }
    }
    Ok(())
}

fn create_host_dir(path: &Path, mode: u32, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    // Create missing ancestors one by one so that exactly what we made is known.
    let mut missing = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for dir in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(mode).create(&dir) {
            Ok(()) => created.push(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("mkdir {}", dir.display())),
        }
    }
    if !std::fs::symlink_metadata(path)?.is_dir() {
        bail!("{} exists and is not a directory", path.display());
    }
    Ok(())
}

/// Whether creating a host directory failed because the hook may not (a
/// rootless hook, a read-only /var): the cases where an optional step is
/// skipped instead of failing the container.
fn is_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| matches!(n, libc::EACCES | libc::EPERM | libc::EROFS))
    })
}

/// Gives a host directory the hook made to `owner` and the SELinux `label`.
fn label_and_own(path: &Path, owner: Option<Owner>, label: Option<&str>) -> anyhow::Result<()> {
    let dir = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if let Some(o) = owner {
        chownat(
            &dir,
            "",
            Some(Uid::from_raw(o.uid)),
            Some(Gid::from_raw(o.gid)),
            AtFlags::EMPTY_PATH,
        )
        .with_context(|| format!("chown {}", path.display()))?;
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

/// Chowns the container's own cgroup directory and the given files in it
/// (resolved beneath it, no symlinks) to `owner`; nothing else.
fn delegate_cgroup(source: &HostSource, files: &[String], owner: Owner) -> anyhow::Result<()> {
    let HostSource::Beneath { base, path } = source else {
        bail!("a cgroup to delegate must be a path beneath its hierarchy");
    };
    let dir = Root::open(base)?.resolve(path)?;
    let (uid, gid) = (
        Some(Uid::from_raw(owner.uid)),
        Some(Gid::from_raw(owner.gid)),
    );
    chownat(dir.as_fd(), "", uid, gid, AtFlags::EMPTY_PATH)?;
    for f in files {
        match mounts::open_beneath(dir.as_fd(), Path::new(f)) {
            Ok(fd) => chownat(&fd, "", uid, gid, AtFlags::EMPTY_PATH)
                .with_context(|| format!("chown {f}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::debug!("cgroup file {f} absent")
            }
            Err(e) => return Err(e).with_context(|| format!("open {f}")),
        }
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

fn join_mount_namespace(pid: i32) -> anyhow::Result<()> {
    let ours = std::fs::metadata("/proc/self/ns/mnt")
        .context("stat /proc/self/ns/mnt")?
        .ino();
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .with_context(|| format!("the container process {pid} is gone"))?
        .ino();
    if ours == theirs {
        bail!("process {pid} shares the hook's mount namespace; refusing to mount on the host");
    }
    let pid_t = rustix::process::Pid::from_raw(pid).context("invalid pid")?;
    let pidfd = rustix::process::pidfd_open(pid_t, rustix::process::PidfdFlags::empty())
        .with_context(|| format!("pidfd_open {pid}"))?;
    rustix::thread::move_into_thread_name_spaces(
        pidfd.as_fd(),
        rustix::thread::ThreadNameSpaceType::MOUNT,
    )
    .with_context(|| format!("setns into the mount namespace of {pid}"))?;
    Ok(())
}

fn run_in_rootfs(root: &Root, action: &Action, source: Option<OwnedFd>) -> anyhow::Result<()> {
    match action {
        Action::HostDir { .. } | Action::DelegateCgroup { .. } => Ok(()),
        Action::Tmpfs {
            dest,
            options,
            copy_up,
        } => tmpfs(root, dest, options, *copy_up),
        Action::Mkdir { dest, mode } => {
            root.mkdir_all(dest, &Permissions::from_mode(*mode))
                .with_context(|| {
                    format!(
                        "cannot make {} a directory inside the rootfs",
                        dest.display()
                    )
                })?;
            Ok(())
        }
        Action::Bind {
            dest,
            readonly,
            fallback,
            ..
        } => {
            let Some(source) = source else {
                log::warn!("{action}: skipped, its host directory could not be made");
                return Ok(());
            };
            let dir = mounts::is_dir(source.as_fd())?;
            let target = match mount_point(root, dest, dir) {
                Ok(t) => t,
                Err(e) => match fallback {
                    Some(fb) => {
                        log::info!(
                            "cannot use {} ({e:#}); using {}",
                            dest.display(),
                            fb.display()
                        );
                        mount_point(root, fb, dir)?
                    }
                    None => return Err(e),
                },
            };
            mounts::attach(source.as_fd(), target.as_fd())?;
            mounts::set_flags(source.as_fd(), *readonly)?;
            Ok(())
        }
        Action::BindInside {
            src,
            dest,
            readonly,
        } => {
            let handle = root.resolve(src)?;
            let source = mounts::clone_of(handle.as_fd())?;
            let target = mount_point(root, dest, mounts::is_dir(source.as_fd())?)?;
            mounts::attach(source.as_fd(), target.as_fd())?;
            mounts::set_flags(source.as_fd(), *readonly)?;
            Ok(())
        }
        Action::RemountReadOnly { dest } => {
            let handle = root.resolve(dest)?;
            mounts::set_flags(handle.as_fd(), true)?;
            Ok(())
        }
        Action::WriteFile {
            dest,
            contents,
            mode,
            owner,
        } => write_file(root, dest, contents.as_bytes(), *mode, *owner),
        Action::ClearFile { .. } => bail!("not a prestart action"),
    }
}

/// A handle on `dest` inside the rootfs to mount on: a directory (created if
/// missing) or a file (an empty one created if missing).
fn mount_point(root: &Root, dest: &Path, dir: bool) -> anyhow::Result<Handle> {
    if dir {
        return dir_in_root(root, dest);
    }
    match root.resolve(dest) {
        Ok(h) => Ok(h),
        Err(e) if is_enoent(&e) => {
            if let Some(parent) = dest.parent() {
                dir_in_root(root, parent)?;
            }
            root.create_file(
                dest,
                OpenFlags::O_WRONLY | OpenFlags::O_EXCL,
                &Permissions::from_mode(0o644),
            )?;
            Ok(root.resolve(dest)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuses a mount target that resolved to the rootfs root itself (an image
/// whose `/run` is a symlink to `/` or `../..`): mounting there would cover
/// the whole image.
fn not_the_root(root: &Root, target: &Handle, dest: &Path) -> anyhow::Result<()> {
    let id = |fd| -> anyhow::Result<(u64, u64, u32, u32)> {
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
    };
    if id(root.as_fd())? == id(target.as_fd())? {
        bail!(
            "{} resolves to the rootfs root; refusing to mount over the whole image",
            dest.display()
        );
    }
    Ok(())
}

/// `dest` as a directory inside the rootfs, created (0755, with parents)
/// when missing. Symlinks are followed inside the rootfs only; a dangling
/// one, a non-directory in the way, or a path that resolves to the rootfs
/// root itself is an error.
fn dir_in_root(root: &Root, dest: &Path) -> anyhow::Result<Handle> {
    let target = root.mkdir_all(dest, &Permissions::from_mode(0o755)).with_context(|| {
        format!("cannot make {} a directory inside the rootfs (dangling symlink or non-directory in the way)", dest.display())
    })?;
    if !mounts::is_dir(target.as_fd())? {
        bail!(
            "{} exists inside the rootfs and is not a directory",
            dest.display()
        );
    }
    not_the_root(root, &target, dest)?;
    Ok(target)
}

fn tmpfs(root: &Root, dest: &Path, options: &TmpfsOptions, copy_up: bool) -> anyhow::Result<()> {
    let target = dir_in_root(root, dest)?;
    let real = mounts::fd_path(target.as_fd())?;

    // Mounts already below dest (volumes, secrets, .containerenv): take a
    // handle on each before the tmpfs hides them.
    let table = procfs::process::Process::myself()?.mountinfo()?;
    let mut keep = Vec::new();
    for rel in mounts::top_submounts(&table.0, &real) {
        let fd = mounts::open_beneath(target.as_fd(), &rel)
            .with_context(|| format!("open mount {}", real.join(&rel).display()))?;
        let dir = mounts::is_dir(fd.as_fd())?;
        keep.push((rel, fd, dir));
    }

    let mnt = mounts::new_tmpfs(options).context("create tmpfs")?;
    if copy_up {
        let src = target.reopen(OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)?;
        let dst = rustix::fs::openat(
            &mnt,
            ".",
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let stats = copyup::copy_tree(src.as_fd(), dst.as_fd(), &copyup::DEFAULT_LIMITS)?;
        log::debug!("tmpcopyup {}: {stats:?}", dest.display());
    }
    for (rel, _, dir) in &keep {
        mounts::make_mount_point(mnt.as_fd(), rel, *dir)
            .with_context(|| format!("mount point {}", rel.display()))?;
    }
    mounts::attach(mnt.as_fd(), target.as_fd()).context("attach tmpfs")?;
    for (rel, fd, _) in keep {
        let to = mounts::open_beneath(mnt.as_fd(), &rel)?;
        mounts::attach(fd.as_fd(), to.as_fd())
            .with_context(|| format!("move mount {} into the tmpfs", rel.display()))?;
    }
    Ok(())
}

fn regular_file(handle: &Handle) -> anyhow::Result<()> {
    let st = statx(handle.as_fd(), "", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
    let ft = FileType::from_raw_mode(u32::from(st.stx_mode));
    if ft != FileType::RegularFile {
        bail!("not a regular file ({ft:?})");
    }
    Ok(())
}

fn write_file(
    root: &Root,
    dest: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> anyhow::Result<()> {
    let mut file = match root.resolve(dest) {
        Ok(h) => {
            regular_file(&h)?;
            h.reopen(OpenFlags::O_WRONLY | OpenFlags::O_TRUNC)?
        }
        Err(e) if is_enoent(&e) => {
            if let Some(parent) = dest.parent() {
                dir_in_root(root, parent)?;
            }
            let file = root
                .create_file(
                    dest,
                    OpenFlags::O_WRONLY | OpenFlags::O_EXCL,
                    &Permissions::from_mode(mode),
                )
                .with_context(|| {
                    format!(
                        "cannot create {} inside the rootfs (dangling symlink?)",
                        dest.display()
                    )
                })?;
            if let Some(o) = owner {
                rustix::fs::fchown(
                    &file,
                    Some(Uid::from_raw(o.uid)),
                    Some(Gid::from_raw(o.gid)),
                )?;
            }
            file
        }
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

fn clear_file(root: &Root, dest: &Path, expected: &str) -> anyhow::Result<()> {
    let handle = match root.resolve(dest) {
        Ok(h) => h,
        Err(e) if is_enoent(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    regular_file(&handle)?;
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
