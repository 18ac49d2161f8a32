//! Mount primitives on file descriptors, with the new mount API
//! (`fsopen`/`fsmount`/`open_tree`/`move_mount`, Linux 5.2+), so that no
//! mount target is ever named by a string path inside the rootfs.
//!
//! Targets are O_PATH handles resolved by `pathrs` (openat2
//! `RESOLVE_IN_ROOT`) or by `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` inside a tmpfs the hook made.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxFlags, mkdirat, openat2, statx,
};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, fsconfig_create, fsconfig_set_string, fsmount, fsopen, mount_change,
    mount_remount, move_mount, open_tree,
};

use crate::mountinfo::Mount;
use crate::plan::TmpfsOptions;

/// Creates a detached tmpfs mount (nosuid, nodev) with the options of
/// [`TmpfsOptions::pairs`] (mode, size, uid/gid, SELinux context), each set
/// with `fsconfig(FSCONFIG_SET_STRING)`.
pub fn new_tmpfs(options: &TmpfsOptions) -> io::Result<OwnedFd> {
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (key, value) in options.pairs() {
        fsconfig_set_string(&fs, key, value).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("tmpfs option {key}: {e}"),
            )
        })?;
    }
    fsconfig_create(&fs)?;
    Ok(fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )?)
}

/// A new cgroup2 mount (nosuid, nodev, noexec), detached: never attached in
/// the hook's namespace. Its root is the root of the cgroup2 hierarchy of
/// the caller's cgroup namespace.
pub fn new_cgroup2() -> io::Result<OwnedFd> {
    let fs = fsopen("cgroup2", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_create(&fs)?;
    Ok(fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?)
}

/// A detached, read-only-to-be bind of a new file holding `contents`, on a
/// private tmpfs that is never attached anywhere: attach the result where the
/// file should appear.
pub fn private_file(contents: &[u8]) -> io::Result<OwnedFd> {
    let mnt = new_tmpfs(&TmpfsOptions {
        mode: 0o755,
        size: Some(64 * 1024),
        ..Default::default()
    })?;
    let fd = rustix::fs::openat(
        &mnt,
        "file",
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o444),
    )?;
    std::io::Write::write_all(&mut std::fs::File::from(fd), contents)?;
    Ok(open_tree(
        &mnt,
        "file",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?)
}

/// A detached copy (bind) of the mount at the object `fd` refers to.
pub fn clone_of(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(open_tree(
        fd,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )?)
}

/// A detached copy (bind) of the trusted host path `path`.
pub fn clone_path(path: &Path) -> io::Result<OwnedFd> {
    Ok(open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?)
}

/// Attaches (or moves) the mount whose root `mount` refers to onto `target`.
pub fn attach(mount: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    Ok(move_mount(
        mount,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

/// Sets the per-mount flags of the attached mount whose root `mount` refers
/// to: always nosuid, nodev, noexec; read-only when `readonly`.
/// (`MS_REMOUNT | MS_BIND` through `/proc/self/fd`, as runc does, since
/// rustix has no `mount_setattr`.)
pub fn set_flags(mount: BorrowedFd<'_>, readonly: bool) -> io::Result<()> {
    let mut flags = MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if readonly {
        flags |= MountFlags::RDONLY;
    }
    Ok(mount_remount(fd_proc_path(mount), flags, "")?)
}

/// Makes the attached mount whose root `mount` refers to private. A clone
/// from `open_tree(OPEN_TREE_CLONE)` of a shared host mount (systemd hosts
/// make `/`, `/sys/fs/cgroup` and `/var` shared) joins the host's peer group:
/// without this, anything later mounted on it in the container would appear
/// on the host, and host mounts would appear in the container.
pub fn make_private(mount: BorrowedFd<'_>) -> io::Result<()> {
    Ok(mount_change(
        fd_proc_path(mount),
        MountPropagationFlags::PRIVATE,
    )?)
}

fn fd_proc_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The kernel's path for an fd (readlink of `/proc/self/fd/N`).
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    std::fs::read_link(fd_proc_path(fd))
}

/// Whether `fd` refers to a directory.
pub fn is_dir(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let st = statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
    Ok(FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::Directory)
}

/// How often [`open_in_root`] tries a lookup that the kernel answered with
/// `EAGAIN` (a rename or mount elsewhere on the system while it crossed a
/// `..`; openat2(2)), as pathrs tries it.
pub const IN_ROOT_TRIES: usize = 128;

/// Opens `path` inside the tree rooted at `root` with `flags` (`O_CLOEXEC`
/// added): the one `openat2` (`RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`,
/// `EAGAIN` retried) that `pathrs::Root::resolve` and `open_subpath` make
/// with libpathrs' openat2 resolver, so symlinks stay inside `root`. For
/// lookups that may miss: pathrs' error for a missing path reads `/proc` to
/// name the root (9 system calls), this one costs the `openat2` alone.
///
/// # Errors
/// The `Errno` of the last `openat2`.
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(rustix::io::Errno::AGAIN) if tries + 1 < IN_ROOT_TRIES => tries += 1,
            r => return r,
        }
    }
}

/// Opens `rel` beneath `dir` (O_PATH), refusing symlinks and `..` escapes.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    Ok(openat2(
        dir,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Creates the mount point `rel` (a directory, or an empty file when
/// `!dir`) beneath `base`, creating missing parent directories (0755). Never
/// follows a symlink.
pub fn make_mount_point(base: BorrowedFd<'_>, rel: &Path, dir: bool) -> io::Result<OwnedFd> {
    let mut cur = open_beneath(base, Path::new("."))?;
    let comps: Vec<_> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for (i, name) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        if !last || dir {
            match mkdirat(&cur, *name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            match openat2(
                &cur,
                *name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            ) {
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        cur = open_beneath(cur.as_fd(), Path::new(name))?;
    }
    Ok(cur)
}

/// The mounts strictly below `dir` that are not below another of them, as
/// paths relative to `dir`, sorted (component-wise) and without repeats.
/// `mounts` is a mount table of the namespace `dir` is a path in. Moving
/// these moves everything below `dir`.
///
/// O(n log n) in the number of mounts below `dir`: sorted component-wise,
/// every path below a mount point `p` comes right after `p`, so one pass
/// that skips what lies below the last kept path finds the top ones.
pub fn top_submounts(mounts: &[Mount], dir: &Path) -> Vec<PathBuf> {
    let mut below: Vec<&Path> = mounts
        .iter()
        .filter_map(|m| m.mount_point.strip_prefix(dir).ok())
        .filter(|rel| !rel.as_os_str().is_empty())
        .collect();
    below.sort_unstable();
    let mut top: Vec<PathBuf> = Vec::new();
    for rel in below {
        if top.last().is_none_or(|t| !rel.starts_with(t)) {
            top.push(rel.to_path_buf());
        }
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(points: &[&str]) -> Vec<Mount> {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let line = format!("{} 1 0:{i} / {p} rw - tmpfs tmpfs rw", 100 + i);
                crate::mountinfo::parse_line(line.as_bytes()).unwrap()
            })
            .collect()
    }

    #[test]
    fn submounts_are_top_level_and_component_wise() {
        let m = mounts(&[
            "/c/rootfs",
            "/c/rootfs/run",
            "/c/rootfs/run/secrets",
            "/c/rootfs/run/secrets/inner",
            "/c/rootfs/run/.containerenv",
            "/c/rootfs/runner",
            "/c/rootfs/run/a/b",
            "/c/rootfs/tmp/x",
        ]);
        assert_eq!(
            top_submounts(&m, Path::new("/c/rootfs/run")),
            vec![
                PathBuf::from(".containerenv"),
                PathBuf::from("a/b"),
                PathBuf::from("secrets")
            ]
        );
        assert_eq!(
            top_submounts(&m, Path::new("/c/rootfs/tmp")),
            vec![PathBuf::from("x")]
        );
        assert!(top_submounts(&m, Path::new("/c/rootfs/etc")).is_empty());
    }

    #[test]
    fn submounts_with_escaped_and_odd_names() {
        let ms = mounts(&[
            r"/c/sp\040ace/run",
            r"/c/sp\040ace/run/a\040b",
            r"/c/sp\040ace/run/a\040b/c",
            "/c/sp\\040ace/run/a",
            "/c/sp\\040ace/run/a/b",
            "/c/sp\\040ace/run/a.b",
            "/c/sp\\040ace/run/a\u{e9}",
            "/c/sp\\040ace/run/a\u{e9}/x",
            "/c/sp\\040ace/run/a/b",
        ]);
        let want: Vec<PathBuf> = ["a", "a b", "a.b", "a\u{e9}"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(top_submounts(&ms, Path::new("/c/sp ace/run")), want);
    }

    #[test]
    fn submounts_match_the_quadratic_definition() {
        // The one-pass result equals "below dir and below no other mount
        // below dir" on a table with nesting, repeats and siblings that share
        // a prefix string but not a component.
        let names = [
            "a", "a/b", "a/b/c", "ab", "a-b", "a/b", "b/c", "b", "b/c/d", "c/d",
        ];
        let points: Vec<String> = names.iter().map(|n| format!("/r/run/{n}")).collect();
        let mut refs: Vec<&str> = points.iter().map(String::as_str).collect();
        refs.push("/r/run");
        refs.push("/r/runner/x");
        let m = mounts(&refs);
        let dir = Path::new("/r/run");
        let below: Vec<&Path> = m
            .iter()
            .map(|m| m.mount_point.as_path())
            .filter(|p| p.starts_with(dir) && *p != dir)
            .collect();
        let mut want: Vec<PathBuf> = below
            .iter()
            .filter(|p| !below.iter().any(|o| o != *p && p.starts_with(o)))
            .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
            .collect();
        want.sort();
        want.dedup();
        assert_eq!(top_submounts(&m, dir), want);
        assert_eq!(
            want,
            ["a", "a-b", "ab", "b", "c/d"]
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn mount_points_never_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let base = t.path().join("base");
        std::fs::create_dir(&base).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("link")).unwrap();
        let fd = openat2(
            rustix::fs::CWD,
            &base,
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
            ResolveFlags::empty(),
        )
        .unwrap();
        assert!(make_mount_point(fd.as_fd(), Path::new("link/x"), true).is_err());
        assert!(
            make_mount_point(fd.as_fd(), Path::new("../x"), true).is_err()
                || !t.path().join("x").exists()
        );
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing created outside"
        );
        make_mount_point(fd.as_fd(), Path::new("a/b/sock"), false).unwrap();
        assert!(base.join("a/b/sock").is_file());
        make_mount_point(fd.as_fd(), Path::new("d/e"), true).unwrap();
        assert!(base.join("d/e").is_dir());
    }
}
