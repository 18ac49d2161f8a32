//! Whether a cgroup is the container's alone: every process in it and in
//! every cgroup beneath it is in the container's mount namespace, read from
//! `/proc`. The rule is [`guard::first_foreign`]; this module gathers what it
//! needs, walking the cgroup tree with file descriptors.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use pathrs::Root;
use pathrs::flags::OpenFlags;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use super::guard::{self, MAX_CGROUPS_CHECKED, MAX_PROCS_BYTES, Member, Refusal, ThreadNs};
use super::host::Container;
use crate::plan::HostSource;

/// Checks that every process in the cgroup `source` and in every cgroup
/// beneath it is in the container's mount namespace: a cgroup shared with
/// host processes (a container started with `--cgroups=disabled`, or a host
/// process placed in a child cgroup) must never be made writable or
/// delegated, or the container could move that process and make cgroups
/// under it. Which processes count as the container's:
/// [`guard::first_foreign`]. The subtree is walked with file descriptors
/// (`openat2` beneath each directory, no symlinks, no mount crossing),
/// bounded by [`MAX_CGROUPS_CHECKED`] and [`MAX_PROCS_BYTES`].
pub(super) fn check_cgroup_is_the_containers(
    source: &HostSource,
    container: &Container,
) -> anyhow::Result<()> {
    let HostSource::Beneath { base, path } = source else {
        return Ok(());
    };
    // Opened for reading by pathrs in one lookup (openat2 inside `base`),
    // not as an O_PATH handle reopened through /proc.
    let own = Root::open(base)?.open_subpath(path, OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)?;
    let mut todo: Vec<(OwnedFd, PathBuf)> = vec![(own.into(), path.clone())];
    let mut found = 1;
    let mut budget = MAX_PROCS_BYTES;
    while let Some((dir, rel)) = todo.pop() {
        let procs = rustix::fs::openat2(
            &dir,
            "cgroup.procs",
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?;
        let mut text = String::new();
        std::fs::File::from(procs)
            .take(budget + 1)
            .read_to_string(&mut text)?;
        budget = budget
            .checked_sub(text.len() as u64)
            .ok_or_else(|| Refusal::TooManyProcs {
                cgroup: path.clone(),
            })?;
        let members: Vec<(u32, Member)> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .map(|pid| (pid, member(pid)))
            .collect();
        guard::check_cgroup_members(&rel, container.mnt_ns_ino, &members)?;
        // The fd itself is read (no reopen); `dir` below is its borrow.
        let mut entries = rustix::fs::Dir::new(dir)?;
        while let Some(entry) = entries.next() {
            let entry = entry?;
            let dir = entries.fd()?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            if !matches!(entry.file_type(), FileType::Directory | FileType::Unknown) {
                continue;
            }
            let child = rustix::fs::openat2(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
            );
            match child {
                Ok(fd) => {
                    found += 1;
                    if found > MAX_CGROUPS_CHECKED {
                        return Err(Refusal::TooManyCgroups {
                            cgroup: path.clone(),
                        }
                        .into());
                    }
                    let name = std::ffi::OsStr::from_bytes(name.to_bytes());
                    todo.push((fd, rel.join(name)));
                }
                // Removed meanwhile, or not a directory.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("open a cgroup beneath {}", rel.display()));
                }
            }
        }
    }
    Ok(())
}

/// What `/proc` shows of process `pid` (in the hook's pid namespace): each
/// thread's mount namespace, or that it has exited (see [`Member`]).
fn member(pid: u32) -> Member {
    let tasks = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Member::Gone,
        Err(_) => return Member::Threads(Vec::new()),
    };
    let mut threads = Vec::new();
    for task in tasks {
        let Ok(task) = task else {
            threads.push(ThreadNs::Unreadable);
            continue;
        };
        let dir = task.path();
        threads.push(match std::fs::metadata(dir.join("ns/mnt")) {
            Ok(m) => ThreadNs::Mnt(m.ino()),
            Err(_) => match std::fs::read_to_string(dir.join("stat")) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => ThreadNs::Exited,
                Err(_) => ThreadNs::Unreadable,
                // The state letter follows the last ')' (the command name
                // may hold any character): proc_pid_stat(5).
                Ok(stat) => match stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next())
                {
                    Some('Z' | 'X' | 'x') => ThreadNs::Exited,
                    _ => ThreadNs::Unreadable,
                },
            },
        });
    }
    if threads.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
        return Member::Gone;
    }
    Member::Threads(threads)
}
