//! Reopening an `O_PATH` handle (from a `pathrs` lookup) for reading or
//! writing, the way `pathrs::Handle::reopen` does it: by opening the
//! handle's `/proc/self/fd/N` magic link in a procfs that pathrs found safe,
//! after checking that nothing is mounted over that link (pathrs'
//! `ProcfsHandle::open_follow`).
//!
//! `Handle::reopen` does all of it again on every call: it asks pathrs for
//! its procfs handle (and pathrs checks the cached one again: procfs root,
//! detached, `subset=pid`), tries the link as a plain path first (`ELOOP`,
//! and building that error reads `/proc` once more), opens `self` and `fd`
//! again with their checks: about 28 system calls per reopen. The hook
//! reopens several handles per prestart, so it takes the `fd` directory
//! once, through pathrs (`ProcfsHandle::open`: `openat2` confined to the
//! procfs, no magic links, same-mount and procfs checks), and then does per
//! reopen what pathrs does last: the mount id of the link must be the
//! directory's (nothing mounted over it), then `openat` follows it. Three
//! system calls per reopen.
//!
//! The directory is `/proc/self/fd` of pathrs' detached `subset=pid` procfs
//! mount: it stays this process's fd table after the hook joins a
//! container's mount namespace. `/proc/self/fd` and pathrs'
//! `/proc/thread-self/fd` are the same table in this single-threaded
//! program.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::OnceLock;

use anyhow::Context;
use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags, statx};

/// `/proc/self/fd` as pathrs opened it, and its mount id.
struct FdDir {
    dir: OwnedFd,
    mnt_id: u64,
}

fn fd_dir() -> anyhow::Result<&'static FdDir> {
    static DIR: OnceLock<FdDir> = OnceLock::new();
    if let Some(d) = DIR.get() {
        return Ok(d);
    }
    let procfs = ProcfsHandle::new().context("get a safe procfs handle")?;
    let dir: OwnedFd = procfs
        .open(
            ProcfsBase::ProcSelf,
            "fd",
            OpenFlags::O_PATH | OpenFlags::O_DIRECTORY,
        )
        .context("open /proc/self/fd in the safe procfs")?
        .into();
    let mnt_id = mnt_id_at(dir.as_fd(), "", AtFlags::EMPTY_PATH)?;
    Ok(DIR.get_or_init(|| FdDir { dir, mnt_id }))
}

fn mnt_id_at(dir: impl AsFd, name: &str, flags: AtFlags) -> anyhow::Result<u64> {
    let st = statx(
        dir,
        name,
        flags | AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::MNT_ID,
    )?;
    Ok(st.stx_mnt_id)
}

/// Opens the file `fd` refers to again with `flags` (`O_CLOEXEC` and
/// `O_NOCTTY` added, `O_NOFOLLOW` dropped), as `pathrs::Handle::reopen`
/// does: the same inode, whatever happened to its path since. A symlink
/// handle is refused (`ELOOP`), as pathrs refuses it; a magic link with
/// something mounted over it is refused (`EXDEV`), as pathrs refuses it.
///
/// # Errors
/// Those refusals, or the procfs set-up or the open failed (the `Errno` or
/// the `pathrs::error::Error` as the source).
pub fn reopen(fd: impl AsFd, flags: OFlags) -> anyhow::Result<File> {
    let fd = fd.as_fd();
    let st = rustix::fs::fstat(fd)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        anyhow::bail!(rustix::io::Errno::LOOP);
    }
    let d = fd_dir()?;
    let name = fd.as_raw_fd().to_string();
    if mnt_id_at(&d.dir, &name, AtFlags::empty())? != d.mnt_id {
        return Err(anyhow::Error::new(rustix::io::Errno::XDEV)
            .context(format!("/proc/self/fd/{name} is not on the procfs mount")));
    }
    let flags = (flags | OFlags::CLOEXEC | OFlags::NOCTTY) - OFlags::NOFOLLOW;
    Ok(rustix::fs::openat(&d.dir, name.as_str(), flags, Mode::empty())?.into())
}
