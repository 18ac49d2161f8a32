//! The container side: in the container's mount namespace, under its
//! rootfs (tmpfs mounts, binds, the copy-up, the machine-id). Every container
//! path is resolved inside the rootfs with `pathrs`; every create and write
//! is checked against the safety policy ([`super::guard`]) first. Creating
//! and writing files: `files`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use pathrs::{Handle, Root};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use super::guard::{self, HostIds, Refusal};
use super::host::HostObjects;
use super::{mnt_id, refuse_namespace_root, regular_file, type_and_identity, unresolvable};
mod files;

use crate::mountinfo::Table;
use crate::plan::{ContainerStep, Plan, TmpfsOptions};
use crate::{copyup, mounts};

/// Inside the container's mount namespace: the rootfs and where the hook may
/// create and write.
pub(super) struct Namespace {
    root: Root,
    /// Mount ids the hook may create files and directories on.
    writable: Vec<u64>,
    /// The mount table, indexed by mount id: read after setns; each tmpfs
    /// the hook mounts is added to it ([`Table::insert_made`]); read again
    /// before a tmpfs when a bind was attached since (`stale`).
    table: Table,
    /// Whether the hook attached something since `table` was read that
    /// `table` does not show.
    stale: bool,
    /// Mount ids of the mounts the hook made.
    ours: Vec<u64>,
    /// The host, as seen before the setns.
    host: HostIds,
    /// The rootfs root's identity (read once: `root` stays the same fd).
    root_id: guard::Identity,
}

impl Namespace {
    /// Opens the rootfs (after setns) and works out where the hook may write.
    /// Opens the rootfs: `rootfs` (absolute, as the runtime sees it) resolved
    /// inside `process_root`, the container process's root directory, with
    /// symlinks kept inside it as the runtime's own lookup would.
    pub(super) fn open(
        process_root: BorrowedFd<'_>,
        rootfs: &Path,
        plan: &Plan,
        host: HostIds,
    ) -> anyhow::Result<Namespace> {
        let root = super::open_rootfs(process_root, rootfs, ResolveFlags::IN_ROOT)?;
        let facts = refuse_namespace_root(&root, rootfs, &host)?;
        let table = Table::read(None).context("read the container's mount table")?;
        let real_root = mounts::fd_path(root.as_fd())?;
        // config.json's own tmpfs mounts, and tmpfs mounts already at the
        // paths where the hook mounts one (a prestart run again).
        let hook_tmpfs = plan.container.iter().filter_map(|s| match s {
            ContainerStep::Tmpfs { dest, .. } => Some(dest.as_path()),
            _ => None,
        });
        let dests = plan.private_tmpfs.iter().map(PathBuf::as_path);
        let writable =
            guard::writable_mounts(&table, &real_root, facts.mnt_id, dests.chain(hook_tmpfs));
        let root_id = (facts.mnt_id, facts.id.ino, facts.id.dev.0, facts.id.dev.1);
        Ok(Namespace {
            root_id,
            root,
            writable,
            table,
            stale: false,
            ours: Vec::new(),
            host,
        })
    }

    /// Carries out one container step; binds take their host object from
    /// `objects`.
    pub(super) fn run(
        &mut self,
        step: &ContainerStep,
        objects: &mut HostObjects,
    ) -> anyhow::Result<()> {
        match step {
            ContainerStep::Tmpfs {
                dest,
                options,
                copy_up,
            } => self.tmpfs(dest, options, *copy_up),
            ContainerStep::Mkdir { dest, mode } => self.mkdir(dest, *mode).map(drop),
            ContainerStep::Bind {
                object,
                dest,
                readonly,
                fallback,
                ..
            } => {
                let Some(source) = objects.take(*object)? else {
                    log::info!(
                        "{step}: skipped, its host directory was not made (see the warning above)"
                    );
                    return Ok(());
                };
                self.bind(source, dest, *readonly, fallback.as_deref())
            }
            ContainerStep::BindContents { dest, contents } => {
                let file = mounts::private_file(contents.as_bytes())?;
                let target = self.root.resolve(dest)?;
                regular_file(&target)?;
                self.attach(file.as_fd(), target.as_fd(), None)?;
                mounts::make_private(file.as_fd())?;
                mounts::set_flags(file.as_fd(), true)?;
                Ok(())
            }
            ContainerStep::BindWritable { dest } => {
                let (target, target_mnt) = self.dir(dest)?;
                let clone = mounts::clone_of(target.as_fd())?;
                self.attach(clone.as_fd(), target.as_fd(), Some(target_mnt))?;
                mounts::make_private(clone.as_fd())?;
                mounts::set_flags(clone.as_fd(), false)?;
                Ok(())
            }
            ContainerStep::RemountReadOnly { dest } => {
                let handle = self.root.resolve(dest)?;
                mounts::set_flags(handle.as_fd(), true)?;
                Ok(())
            }
            ContainerStep::WriteFile {
                dest,
                contents,
                mode,
                owner,
            } => self.write_file(dest, contents.as_bytes(), *mode, *owner),
        }
    }

    fn bind(
        &mut self,
        source: OwnedFd,
        dest: &Path,
        readonly: bool,
        fallback: Option<&Path>,
    ) -> anyhow::Result<()> {
        let dir = mounts::is_dir(source.as_fd())?;
        let (target, target_mnt) = match self.mount_point(dest, dir) {
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
        self.attach(source.as_fd(), target.as_fd(), target_mnt)?;
        mounts::make_private(source.as_fd())?;
        mounts::set_flags(source.as_fd(), readonly)?;
        Ok(())
    }

    /// `path` inside the rootfs as an `O_PATH` handle, `None` when it does
    /// not exist: the lookup `Root::resolve` makes
    /// ([`mounts::open_in_root`]), without building pathrs' error for a
    /// missing path (it reads `/proc`: 9 system calls, and `mkdir` looks up
    /// each missing parent). Any other failure is pathrs' own lookup and
    /// error, as before.
    fn lookup(&self, path: &Path) -> Result<Option<Handle>, pathrs::error::Error> {
        match mounts::open_in_root(self.root.as_fd(), path, OFlags::PATH) {
            Ok(fd) => Ok(Some(Handle::from_fd(fd))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(_) => self.root.resolve(path).map(Some),
        }
    }

    /// Fails unless `fd` is on a mount the hook may write to; `mnt`: its
    /// mount id when already read (an fd's mount never changes), else read.
    fn check_writable(
        &self,
        fd: BorrowedFd<'_>,
        mnt: Option<u64>,
        what: &Path,
    ) -> anyhow::Result<()> {
        let mnt = match mnt {
            Some(m) => m,
            None => mnt_id(fd)?,
        };
        guard::check_writable(&self.table, &self.writable, mnt, what)?;
        Ok(())
    }

    /// Attaches `mount` on `target` unless the target's mount is shared with
    /// another namespace (the new mount would propagate there, e.g. to the
    /// host). `target_mnt`: the target fd's mount id when already read (it
    /// never changes for an fd), else read here.
    fn attach(
        &mut self,
        mount: BorrowedFd<'_>,
        target: BorrowedFd<'_>,
        target_mnt: Option<u64>,
    ) -> anyhow::Result<()> {
        let on = match target_mnt {
            Some(m) => m,
            None => mnt_id(target)?,
        };
        guard::check_attach(&self.table, &self.ours, on)?;
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
            match self.lookup(&prefix) {
                Ok(Some(h)) => {
                    found = Some((i, h));
                    break;
                }
                Ok(None) => continue,
                Err(e) => return Err(unresolvable(e, &prefix)),
            }
        }
        let (i, existing) = found.context("the rootfs root cannot be resolved")?;
        if i == comps.len() {
            return Ok(existing);
        }
        // Type and mount id from one statx.
        let (ft, (mnt, ..)) = type_and_identity(existing.as_fd())?;
        if ft != FileType::Directory {
            return Err(Refusal::NonDirectoryInTheWay {
                dest: dest.to_path_buf(),
            }
            .into());
        }
        self.check_writable(existing.as_fd(), Some(mnt), dest)?;
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
            .map_err(|e| {
                let refusal = Refusal::NotMadeADirectory {
                    dest: dest.to_path_buf(),
                };
                match e {
                    rustix::io::Errno::LOOP
                    | rustix::io::Errno::NOTDIR
                    | rustix::io::Errno::XDEV => anyhow::Error::new(e).context(refusal),
                    _ => anyhow::Error::new(e).context(refusal.to_string()),
                }
            })?;
        }
        Ok(Handle::from_fd(cur))
    }

    /// [`Namespace::mkdir`], then: a directory, and not the rootfs root.
    /// Returns it with its mount id (from the same `statx`).
    fn dir(&self, dest: &Path) -> anyhow::Result<(Handle, u64)> {
        let target = self.mkdir(dest, 0o755)?;
        let (ft, id) = type_and_identity(target.as_fd())?;
        if ft != FileType::Directory {
            return Err(Refusal::NotADirectory {
                dest: dest.to_path_buf(),
            }
            .into());
        }
        guard::check_not_root(
            id,
            self.root_id,
            Refusal::RootfsRoot {
                dest: dest.to_path_buf(),
            },
        )?;
        Ok((target, id.0))
    }

    /// A handle on `dest` to mount on: a directory (created if missing) or
    /// an existing file, or an empty file created where missing; with its
    /// mount id when it was read on the way.
    fn mount_point(&self, dest: &Path, dir: bool) -> anyhow::Result<(Handle, Option<u64>)> {
        if dir {
            return self.dir(dest).map(|(h, m)| (h, Some(m)));
        }
        match self.lookup(dest) {
            Ok(Some(h)) => Ok((h, None)),
            Ok(None) => {
                self.create_file(dest, 0o644, None)?;
                Ok((self.root.resolve(dest)?, None))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn tmpfs(&mut self, dest: &Path, options: &TmpfsOptions, copy_up: bool) -> anyhow::Result<()> {
        let (target, target_mnt) = self.dir(dest)?;
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
            self.check_writable(target.as_fd(), Some(target_mnt), dest)
                .context("tmpcopyup")?;
            // The directory itself, opened for reading through its own
            // handle: "." never crosses a mount or follows a link.
            let src = rustix::fs::openat(
                &target,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let dst = rustix::fs::openat(
                &mnt,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let stats =
                copyup::copy_tree(src, Some(target_mnt), dst.as_fd(), &copyup::DEFAULT_LIMITS)
                    .map_err(|e| match e {
                        copyup::CopyError::Bound(b) => Refusal::CopyUpBound(b).into(),
                        e => anyhow::Error::new(e),
                    })?;
            log::debug!("tmpcopyup {}: {stats:?}", dest.display());
        }
        for (rel, _, dir) in &keep {
            mounts::make_mount_point(mnt.as_fd(), rel, *dir)
                .with_context(|| format!("mount point {}", rel.display()))?;
        }
        self.attach(mnt.as_fd(), target.as_fd(), Some(target_mnt))
            .context("attach tmpfs")?;
        let id = mnt_id(mnt.as_fd())?;
        // The table was current before the attach (read above when stale);
        // the tmpfs is the one mount it adds: the kept mounts moved into it
        // below keep their ids and mount points.
        self.table.insert_made(id, target_mnt, real, "tmpfs");
        self.stale = false;
        self.ours.push(id);
        self.writable.push(id);
        for (rel, fd, _) in keep {
            let to = mounts::open_beneath(mnt.as_fd(), &rel)?;
            mounts::attach(fd.as_fd(), to.as_fd())
                .with_context(|| format!("move mount {} into the tmpfs", rel.display()))?;
        }
        Ok(())
    }
}
