//! The cgroup2 the hook provides on a legacy host (no cgroup2 mounted
//! anywhere) for an image whose systemd has no v1 support: mounted detached
//! (`fsopen`/`fsmount`, never attached on the host), a cgroup made at its
//! root for the container and the container's processes moved into it, as
//! systemd-nspawn ≤ 257 did in `sync_cgroup`. A failed prestart moves them
//! back and removes it; poststop removes it with what systemd made beneath
//! it.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pathrs::Root;
use pathrs::flags::OpenFlags;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::chown_to;
use super::guard::Refusal;
use super::host::{Change, Undo};
use crate::config::Owner;
use crate::mounts;
use crate::plan::HostSource;

/// The files in its own cgroup that systemd writes (the delegation set of
/// the kernel's cgroup-v2 documentation).
const DELEGATED: &[&str] = &["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"];

/// How deep and how many cgroups [`remove`] walks beneath the container's.
const MAX_DEPTH: usize = 32;
const MAX_CGROUPS: usize = 4096;

/// How often an `rmdir` that the kernel answers with `EBUSY` (the last
/// process of the cgroup is still being torn down) is tried, 20 ms apart.
const BUSY_TRIES: usize = 100;

fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Mounts cgroup2 detached, creates the cgroup `name` at its root (refused
/// when it exists: another container's), gives it to `owner` when given and
/// moves every process of `members` (a v1 cgroup the caller has checked)
/// into it. The removal is recorded in `undo` at once. Returns the mount.
pub(super) fn make(
    name: &str,
    members: &HostSource,
    owner: Option<Owner>,
    undo: &mut Undo,
) -> anyhow::Result<OwnedFd> {
    let HostSource::Beneath { base, path } = members else {
        bail!("the container's processes must come from a cgroup beneath a hierarchy");
    };
    let mnt = mounts::new_cgroup2().context("mount cgroup2 (detached)")?;
    match rustix::fs::mkdirat(&mnt, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            return Err(Refusal::NotOurHostDir {
                path: PathBuf::from(format!("cgroup2 /{name}")),
            }
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("mkdir cgroup2 /{name}")),
    }
    undo.push(Change::Cgroup2 {
        mnt: mnt.try_clone()?,
        name: name.to_string(),
    });
    let dir = open_dir(mnt.as_fd(), OsStr::new(name))?;
    if let Some(o) = owner {
        chown_to(dir.as_fd(), o).with_context(|| format!("chown cgroup2 /{name}"))?;
        for f in DELEGATED {
            let fd = mounts::open_beneath(dir.as_fd(), Path::new(f))?;
            chown_to(fd.as_fd(), o).with_context(|| format!("chown cgroup2 /{name}/{f}"))?;
        }
    }
    let mut pids = String::new();
    Root::open(base)?
        .resolve(path.join("cgroup.procs"))?
        .reopen(OpenFlags::O_RDONLY)?
        .take(super::MAX_PROCS_BYTES)
        .read_to_string(&mut pids)?;
    move_pids(dir.as_fd(), &pids).with_context(|| format!("move processes to cgroup2 /{name}"))?;
    log::debug!("moved the container's processes into cgroup2 /{name}");
    Ok(mnt)
}

/// Writes each pid of `pids` (a `cgroup.procs` text) into `cgroup.procs` of
/// the cgroup `dir`; a process that exited meanwhile is passed over.
fn move_pids(dir: BorrowedFd<'_>, pids: &str) -> anyhow::Result<()> {
    let procs = rustix::fs::openat(
        dir,
        "cgroup.procs",
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut procs = std::fs::File::from(procs);
    for pid in pids.split_whitespace() {
        match procs.write_all(pid.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e).with_context(|| format!("move process {pid}")),
        }
    }
    Ok(())
}

/// A failed prestart: moves the processes of `name` back to the root of the
/// cgroup2 `mnt` and removes `name`.
pub(super) fn undo(mnt: BorrowedFd<'_>, name: &str) -> anyhow::Result<()> {
    let dir = open_dir(mnt, OsStr::new(name))?;
    let procs = rustix::fs::openat(
        &dir,
        "cgroup.procs",
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut pids = String::new();
    std::fs::File::from(procs).read_to_string(&mut pids)?;
    move_pids(mnt, &pids)?;
    remove_tree(mnt, OsStr::new(name), 0, &mut 0)
}

/// Poststop: removes the cgroup `name` of cgroup2 (mounted detached for
/// this) and every cgroup beneath it, deepest first. Absent: nothing to do.
pub(super) fn remove(name: &str) -> anyhow::Result<()> {
    // Where the hook may not mount cgroup2 (rootless), prestart could not
    // have made the cgroup either.
    let mnt = match mounts::new_cgroup2() {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            log::debug!("cannot mount cgroup2 ({e}): no cgroup2 /{name} to remove");
            return Ok(());
        }
        Err(e) => return Err(e).context("mount cgroup2 (detached)"),
    };
    match open_dir(mnt.as_fd(), OsStr::new(name)) {
        Ok(_) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("open cgroup2 /{name}")),
    }
    remove_tree(mnt.as_fd(), OsStr::new(name), 0, &mut 0)
        .with_context(|| format!("remove cgroup2 /{name}"))?;
    log::info!("removed cgroup2 /{name}");
    Ok(())
}

fn remove_tree(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    depth: usize,
    count: &mut usize,
) -> anyhow::Result<()> {
    *count += 1;
    if depth > MAX_DEPTH || *count > MAX_CGROUPS {
        bail!("more than {MAX_CGROUPS} cgroups or {MAX_DEPTH} levels beneath it");
    }
    let dir = open_dir(parent, name)?;
    let mut children = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." && entry.file_type() == FileType::Directory {
            children.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    for child in children {
        remove_tree(dir.as_fd(), &child, depth + 1, count)?;
    }
    for _ in 0..BUSY_TRIES {
        match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::BUSY) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return Err(e.into()),
        }
    }
    bail!("{} still has processes", Path::new(name).display())
}
