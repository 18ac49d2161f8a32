//! The image's systemd version, read as systemd-nspawn reads it
//! (`systemd_installation_has_version` in systemd's `src/shared/`): the
//! number after `libsystemd-shared-` in a `libsystemd-shared-<N>….so` in one
//! of the image's library directories. Every path is resolved inside the
//! rootfs (`pathrs`, openat2 `RESOLVE_IN_ROOT`): a symlink in the image never
//! leads out of it.

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context;
use pathrs::Root;
use pathrs::flags::OpenFlags;
use rustix::fs::{Mode, OFlags, ResolveFlags};

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

/// The highest systemd version found in the image rooted at `root`, `None`
/// when there is none. Directories that are missing or unreadable are
/// passed over.
pub fn systemd_version(root: &Root) -> Option<u32> {
    let mut dirs: Vec<String> = LIB_DIRS.iter().map(|d| d.to_string()).collect();
    for name in dir_names(root, Path::new(MULTIARCH_PARENT)) {
        if let Ok(s) = std::str::from_utf8(&name)
            && s.contains("-linux-")
        {
            dirs.push(format!("{MULTIARCH_PARENT}/{s}/systemd"));
        }
    }
    dirs.iter()
        .flat_map(|d| dir_names(root, Path::new(d)))
        .filter_map(|n| version_from_name(&n))
        .max()
}

/// The names in directory `dir` inside `root` (at most
/// [`MAX_DIR_ENTRIES`]); empty when it cannot be read.
fn dir_names(root: &Root, dir: &Path) -> Vec<Vec<u8>> {
    let Ok(handle) = root.resolve(dir) else {
        return Vec::new();
    };
    let Ok(file) = handle.reopen(OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY) else {
        return Vec::new();
    };
    let Ok(entries) = rustix::fs::Dir::read_from(file.as_fd()) else {
        return Vec::new();
    };
    entries
        .take(MAX_DIR_ENTRIES)
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_bytes().to_vec())
        .collect()
}

/// The systemd version of the image whose rootfs is `rootfs`: resolved
/// inside the root directory of process `pid` (`/proc/<pid>/root`, the
/// runtime's view at prestart, as `apply` opens it), else from the hook's
/// own root; never through a `/proc` magic link.
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
    let fd = rustix::fs::openat2(
        &base,
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve | ResolveFlags::NO_MAGICLINKS,
    )
    .with_context(|| {
        format!(
            "open rootfs {} to read its systemd version",
            rootfs.display()
        )
    })?;
    Ok(systemd_version(&Root::from_fd(fd)))
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
