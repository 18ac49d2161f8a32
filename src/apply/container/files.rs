//! Files the hook creates or writes inside the rootfs (the machine-id, a
//! mount point file): only on a file system it may write to, never through
//! a symlink at the last component, never through a hard link.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{Context, bail};
use pathrs::Handle;
use rustix::fs::{AtFlags, Mode, OFlags};

use super::Namespace;
use crate::apply::guard::{self, Foreign, Refusal};
use crate::apply::{chown_to, is_enoent, refuse_unless_regular, type_and_facts, unresolvable};
use crate::config::Owner;
use crate::reopen::reopen;

impl Namespace {
    /// Creates the regular file `dest` (its parent made if missing), on a
    /// writable file system only; never follows a symlink at `dest`.
    pub(super) fn create_file(
        &self,
        dest: &Path,
        mode: u32,
        owner: Option<Owner>,
    ) -> anyhow::Result<std::fs::File> {
        let (parent, name) = split_file_path(dest)?;
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
        self.check_writable(dir.as_fd(), None, dest)?;
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| {
            let refusal = Refusal::CannotCreate {
                dest: dest.to_path_buf(),
            };
            match e {
                rustix::io::Errno::EXIST | rustix::io::Errno::LOOP => {
                    anyhow::Error::new(e).context(refusal)
                }
                _ => anyhow::Error::new(e).context(refusal.to_string()),
            }
        })?;
        if let Some(o) = owner {
            chown_to(fd.as_fd(), o)?;
        }
        // Make the mode exact whatever the umask.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        Ok(std::fs::File::from(fd))
    }

    pub(super) fn write_file(
        &self,
        dest: &Path,
        contents: &[u8],
        mode: u32,
        owner: Option<Owner>,
    ) -> anyhow::Result<()> {
        let mut file = match self.root.resolve(dest) {
            Ok(h) => {
                // One statx for the type, the mount and the links.
                let (ft, facts) = type_and_facts(h.as_fd())?;
                refuse_unless_regular(ft)?;
                self.check_writable(h.as_fd(), Some(facts.mnt_id), dest)?;
                match guard::foreign_machine_id(&facts, &self.writable, self.host.machine_id) {
                    None => reopen(&h, OFlags::WRONLY | OFlags::TRUNC)?,
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
                    Some(why) => {
                        return Err(Refusal::ForeignMachineId {
                            dest: dest.to_path_buf(),
                            why,
                        }
                        .into());
                    }
                }
            }
            Err(e) if is_enoent(&e) => self.create_file(dest, mode, owner)?,
            Err(e) => return Err(unresolvable(e, dest)),
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
        let (parent, name) = split_file_path(dest)?;
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

/// `dest` as its parent directory and file name.
///
/// # Errors
/// A path with no file name (`/`, `..`).
fn split_file_path(dest: &Path) -> anyhow::Result<(&Path, &std::ffi::OsStr)> {
    match (dest.parent(), dest.file_name()) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => bail!("{} is not a file path", dest.display()),
    }
}
