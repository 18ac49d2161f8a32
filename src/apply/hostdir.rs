//! The host journal directory's life: made (or reused) at prestart, marked
//! with the container id, marked done when prestart finished; at poststop
//! removed again when a killed prestart left it empty. Decisions are in
//! [`super::guard`] ([`guard::check_marker`], [`guard::leftover`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{Context, bail};
use rustix::fs::{AtFlags, Mode, OFlags};

use super::chown_to;
use super::guard::{self, Leftover, Refusal};
use super::host::{Change, Undo};
use crate::config::Owner;

/// The xattr on a host journal directory that names the container it was
/// made for. `trusted.*`: only host root can set it, never the container.
pub const JOURNAL_MARKER_XATTR: &str = "trusted.oci-systemd-hook.id";

/// The xattr set on a host journal directory (value: the container id) at
/// the very end of a prestart that finished. A directory that carries this
/// container's [`JOURNAL_MARKER_XATTR`] but not this one was left by a
/// prestart that was killed: poststop removes it when it is empty.
/// `trusted.*` like the marker.
pub const JOURNAL_DONE_XATTR: &str = "trusted.oci-systemd-hook.done";

/// The host directories a prestart made or reused, to mark done
/// ([`JOURNAL_DONE_XATTR`]) once everything else succeeded.
#[derive(Default)]
pub(super) struct Unfinished(Vec<(OwnedFd, String)>);

impl Unfinished {
    /// Records the directory `dir` (opened `O_RDONLY`) made for `marker`.
    pub(super) fn push(&mut self, dir: OwnedFd, marker: &str) {
        self.0.push((dir, marker.to_string()));
    }

    /// Marks every directory done: from here on poststop keeps them.
    pub(super) fn mark_done(self) -> anyhow::Result<()> {
        for (dir, marker) in self.0 {
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
}

/// Creates the host directory `path` (its parent must exist), owned and
/// labelled as asked, marked with the container id; or reuses it when it
/// carries this container's mark (a restarted container). Returns the
/// directory opened `O_RDONLY` (for [`JOURNAL_DONE_XATTR`]).
pub(super) fn make(
    path: &Path,
    mode: u32,
    owner: Option<Owner>,
    label: Option<&str>,
    marker: &str,
    undo: &mut Undo,
) -> anyhow::Result<OwnedFd> {
    let parent = path.parent().context("no parent directory")?;
    if !parent.is_dir() {
        return Err(Refusal::NoHostParent {
            parent: parent.to_path_buf(),
        }
        .into());
    }
    let open_dir = || {
        rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // XATTR_SIZE_MAX: a marker of any length is read whole.
            let mut buf = vec![0u8; 65536];
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
            return Ok(open_dir()?);
        }
        Err(e) => return Err(e).with_context(|| format!("mkdir {}", path.display())),
    }
    // Made here: from now on any failure removes it again at once (an
    // optional directory's failure is swallowed by the caller, so the undo
    // list would never run), through the parent's fd.
    let parent_fd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {}", parent.display()));
    let name = path.file_name().context("no file name")?.to_owned();
    let set_up = || -> anyhow::Result<OwnedFd> {
        let dir = open_dir()?;
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
    };
    match parent_fd.and_then(|parent_fd| set_up().map(|dir| (parent_fd, dir))) {
        Ok((parent_fd, dir)) => {
            undo.push(Change::RemoveDir {
                parent: parent_fd,
                name,
                shown: path.to_path_buf(),
            });
            Ok(dir)
        }
        Err(e) => {
            if let Err(rm) = std::fs::remove_dir(path) {
                log::warn!(
                    "cannot remove {} after its set-up failed: {rm}",
                    path.display()
                );
            }
            Err(e)
        }
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
/// [`guard::leftover`]). What else is on the host stays: the container's
/// cgroup, which a killed prestart may have chowned, is removed by the
/// runtime before poststop (runc's `destroy()`, crun's delete).
pub(super) fn remove_unfinished(path: &Path, marker: &str) -> anyhow::Result<()> {
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
    match guard::leftover(found.as_deref(), marker, done, empty) {
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
