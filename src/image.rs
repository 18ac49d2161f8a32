//! The image's systemd version, read as systemd-nspawn reads it
//! (`systemd_installation_has_version` in systemd's `src/shared/`): the
//! number after `libsystemd-shared-` in a `libsystemd-shared-<N>….so` in one
//! of the image's library directories. Every path is resolved inside the
//! rootfs (openat2 `RESOLVE_IN_ROOT`, as `pathrs` resolves): a symlink in the
//! image never leads out of it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::Context;
use rustix::fs::{FileType, Mode, OFlags, RawDir, ResolveFlags};

/// The directories that hold `libsystemd-shared-<N>.so`, as nspawn lists
/// them; `/usr/lib/*-linux-*/systemd` (Debian and Ubuntu multiarch) is
/// looked for under [`MULTIARCH_PARENT`].
pub const LIB_DIRS: &[&str] = &[
    "/usr/lib/systemd",
    "/lib/systemd",
    "/usr/lib64/systemd",
    "/lib64/systemd",
];

/// Where multiarch directories (`<triplet>/systemd`, a name holding
/// `-linux-`) are looked for.
pub const MULTIARCH_PARENT: &str = "/usr/lib";

/// How many entries of one directory are read at most: an image with more
/// files than that in a library directory is not searched further there.
pub const MAX_DIR_ENTRIES: usize = 100_000;

/// The version in a file name `libsystemd-shared-<N>[anything].so`: the
/// leading digits after the prefix (Debian `libsystemd-shared-252.so`,
/// Fedora `libsystemd-shared-256.11-1.fc41.so`). `None` for anything else.
pub fn version_from_name(name: &[u8]) -> Option<u32> {
    let rest = name.strip_prefix(b"libsystemd-shared-")?;
    if !rest.ends_with(b".so") {
        return None;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Opens directory `path` inside `root` for reading
/// ([`crate::mounts::open_in_root`]: the `openat2` pathrs makes, without
/// pathrs' error for a missing directory, which reads `/proc`: 9 system
/// calls for each library directory an image does not have). `None` when
/// it cannot be opened.
fn open_dir(root: BorrowedFd<'_>, path: &str) -> Option<OwnedFd> {
    crate::mounts::open_in_root(
        root,
        Path::new(path),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOCTTY,
    )
    .ok()
}

/// Calls `each` with the name and type of every entry of the directory
/// `dir` (at most [`MAX_DIR_ENTRIES`], `.` and `..` left out), read with a
/// 32 KiB buffer: two `getdents64` for a directory of a few hundred
/// entries. A read error ends the listing.
fn for_each_entry(dir: OwnedFd, mut each: impl FnMut(&[u8], FileType)) {
    let mut buf = Vec::with_capacity(32 * 1024);
    let mut entries = RawDir::new(dir, buf.spare_capacity_mut());
    let mut n = 0;
    while let Some(Ok(e)) = entries.next() {
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        n += 1;
        if n > MAX_DIR_ENTRIES {
            break;
        }
        each(name, e.file_type());
    }
}

/// The highest systemd version in the library directory `dir` inside `root`.
fn version_in(root: BorrowedFd<'_>, dir: &str) -> Option<u32> {
    let mut best = None;
    if let Some(fd) = open_dir(root, dir) {
        for_each_entry(fd, |name, _| best = best.max(version_from_name(name)));
    }
    best
}

/// The highest systemd version found in the image rooted at `root` (an fd
/// on the rootfs directory, every lookup resolved inside it), `None` when
/// there is none. Each library directory is read once; directories that
/// are missing or unreadable are passed over. `/usr/lib` is read first, for
/// its multiarch directories and to know whether it has a `systemd` one.
pub fn systemd_version(root: BorrowedFd<'_>) -> Option<u32> {
    let mut dirs: Vec<String> = Vec::new();
    let mut usr_lib_systemd = true;
    if let Some(fd) = open_dir(root, MULTIARCH_PARENT) {
        usr_lib_systemd = false;
        for_each_entry(fd, |name, ft| {
            // A symlink may lead to a directory: looked up like one.
            if !matches!(
                ft,
                FileType::Directory | FileType::Symlink | FileType::Unknown
            ) {
                return;
            }
            if name == b"systemd" {
                usr_lib_systemd = true;
            } else if let Ok(s) = std::str::from_utf8(name)
                && s.contains("-linux-")
            {
                dirs.push(format!("{MULTIARCH_PARENT}/{s}/systemd"));
            }
        });
    }
    LIB_DIRS
        .iter()
        .filter(|d| usr_lib_systemd || **d != LIB_DIRS[0])
        .map(|d| version_in(root, d))
        .chain(dirs.iter().map(|d| version_in(root, d)))
        .max()
        .flatten()
}

/// The systemd version of the image whose rootfs is `rootfs`: resolved
/// inside the root directory of process `pid` (`/proc/<pid>/root`, the
/// runtime's view at prestart, as `apply` opens it), else from the hook's
/// own root; never through a `/proc` magic link. When `rootfs` is not there
/// the process has already entered its rootfs (a created or running
/// container, `explain --pid`: the runtime has done its `pivot_root`), so
/// its root directory is the rootfs. At prestart `rootfs` is there (hooks
/// run before `pivot_root`), or `apply` fails on the same lookup.
///
/// # Errors
/// The rootfs cannot be opened.
pub fn image_systemd(pid: Option<i32>, rootfs: &Path) -> anyhow::Result<Option<u32>> {
    let (base, resolve) = match pid {
        Some(pid) => (
            rustix::fs::open(
                format!("/proc/{pid}/root"),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("open the root directory of process {pid}"))?,
            ResolveFlags::IN_ROOT,
        ),
        None => (
            rustix::fs::open(
                "/",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?,
            ResolveFlags::empty(),
        ),
    };
    let fd = match rustix::fs::openat2(
        &base,
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) if pid.is_some() => base,
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "open rootfs {} to read its systemd version",
                    rootfs.display()
                )
            });
        }
    };
    Ok(systemd_version(fd.as_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(version_from_name(b"libsystemd-shared-252.so"), Some(252));
        assert_eq!(
            version_from_name(b"libsystemd-shared-256.11-1.fc41.so"),
            Some(256)
        );
        assert_eq!(
            version_from_name(b"libsystemd-shared-262~rc1.so"),
            Some(262)
        );
        assert_eq!(version_from_name(b"libsystemd-shared-252.so.1"), None);
        assert_eq!(version_from_name(b"libsystemd-shared-.so"), None);
        assert_eq!(version_from_name(b"libsystemd-core-252.so"), None);
        assert_eq!(version_from_name(b"libsystemd-shared-x.so"), None);
    }

    fn tree(files: &[&str], links: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for f in files {
            let p = t.path().join(f.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        for (at, to) in links {
            let p = t.path().join(at.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(to, p).unwrap();
        }
        t
    }

    fn version(t: &tempfile::TempDir) -> Option<u32> {
        image_systemd(None, t.path()).unwrap()
    }

    #[test]
    fn found_in_each_library_dir() {
        for f in [
            "/usr/lib/systemd/libsystemd-shared-252.so",
            "/lib/systemd/libsystemd-shared-247.so",
            "/usr/lib64/systemd/libsystemd-shared-256.11-1.fc41.so",
            "/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-262.so",
        ] {
            let t = tree(&[f], &[]);
            assert!(version(&t).is_some(), "{f}");
        }
        let t = tree(
            &[
                "/usr/lib/systemd/libsystemd-shared-252.so",
                "/usr/lib/systemd/libsystemd-core-262.so",
                "/usr/lib/aarch64-linux-gnu/systemd/libsystemd-shared-257.so",
            ],
            &[],
        );
        assert_eq!(version(&t), Some(257), "the highest one");
        assert_eq!(version(&tree(&["/usr/lib/os-release"], &[])), None);
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        // A host-like directory outside the image, and an image whose
        // library dir points at it with an absolute and a relative link.
        let outside = tree(&["/usr/lib/systemd/libsystemd-shared-300.so"], &[]);
        let abs = outside.path().join("usr/lib/systemd");
        let t = tree(
            &[],
            &[
                ("/usr/lib/systemd", abs.to_str().unwrap()),
                ("/lib", "../../../../../../../../usr/lib"),
            ],
        );
        assert_eq!(version(&t), None);
        // A link that stays inside is followed.
        let t = tree(
            &["/usr/lib/systemd/libsystemd-shared-257.so"],
            &[("/lib", "usr/lib")],
        );
        assert_eq!(version(&t), Some(257));
    }
}
