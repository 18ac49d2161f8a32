//! tmpcopyup: copy what the image holds at a path into the tmpfs that is about
//! to cover it (podman's `tmpcopyup` mount option, as the original hook's
//! README promised for /run and /tmp).
//!
//! Safety rules, all enforced by the code, not by the caller:
//! - every entry is opened relative to its parent directory fd, by a single
//!   name from `readdir` (never a path), `O_PATH | O_NOFOLLOW`; its type is
//!   read from that fd and only a directory or regular file is then opened
//!   through it (the same inode, whatever a concurrent writer renames):
//!   symlinks are recreated as symlinks, never followed, so nothing outside
//!   the rootfs is read;
//! - entries on another mount (user mounts under /run, /tmp) are skipped: they
//!   are moved, not copied;
//! - device nodes, FIFOs and sockets are skipped, never opened for I/O
//!   (a FIFO would block, a device could act on its open);
//! - the copy is bounded by [`Limits`]; past a bound it fails with an error
//!   instead of copying half.
//!
//! Ownership and permission bits (including setgid/sticky) are kept.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::chownat;
use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, StatxFlags, Uid, fchmod, fchown, mkdirat, openat,
    readlinkat, statx, symlinkat,
};

/// Bounds on one copy-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries (files, directories, symlinks) copied.
    pub max_entries: u64,
    /// Most bytes of regular-file content copied.
    pub max_bytes: u64,
    /// Deepest directory nesting below the copied directory.
    pub max_depth: u32,
}

/// The bounds the hook uses: 10 000 entries, 32 MiB, depth 32. A /run or /tmp
/// in an image is normally empty or a few small files.
pub const DEFAULT_LIMITS: Limits = Limits {
    max_entries: 10_000,
    max_bytes: 32 * 1024 * 1024,
    max_depth: 32,
};

/// What one copy-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries created in the destination.
    pub entries: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
    /// Device nodes, FIFOs and sockets left out.
    pub skipped_special: u64,
    /// Entries left out because they are on another mount.
    pub skipped_mounts: u64,
}

/// Why a copy-up failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("copy-up exceeds its bound of {0}")]
    Bound(String),
    #[error("copy-up of {name:?}")]
    Io { name: String, source: io::Error },
}

fn io_err(name: &std::ffi::OsStr, source: impl Into<io::Error>) -> CopyError {
    CopyError::Io {
        name: name.to_string_lossy().into_owned(),
        source: source.into(),
    }
}

/// Copies the content of directory `src` into directory `dst` (both opened
/// `O_RDONLY | O_DIRECTORY`; `src` is read through and closed). `src_mnt`:
/// `src`'s mount id when the caller has it (an fd's mount never changes),
/// else read here. `dst` is expected to be empty.
///
/// # Errors
/// [`CopyError::Bound`] when a [`Limits`] bound is passed, [`CopyError::Io`]
/// for any failing system call (with the entry's name).
pub fn copy_tree(
    src: OwnedFd,
    src_mnt: Option<u64>,
    dst: BorrowedFd<'_>,
    limits: &Limits,
) -> Result<Stats, CopyError> {
    let mnt_id = match src_mnt {
        Some(m) => m,
        None => {
            statx(&src, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)
                .map_err(|e| io_err("".as_ref(), e))?
                .stx_mnt_id
        }
    };
    let mut stats = Stats::default();
    copy_dir(src, dst, mnt_id, limits, 0, &mut stats)?;
    Ok(stats)
}

fn copy_dir(
    src: OwnedFd,
    dst: BorrowedFd<'_>,
    mnt_id: u64,
    limits: &Limits,
    depth: u32,
    stats: &mut Stats,
) -> Result<(), CopyError> {
    if depth > limits.max_depth {
        return Err(CopyError::Bound(format!(
            "{} directory levels",
            limits.max_depth
        )));
    }
    // The fd itself is read (no reopen); `src` below is its borrow.
    let mut dir = Dir::new(src).map_err(|e| io_err("".as_ref(), e))?;
    while let Some(entry) = dir.next() {
        let src = dir.fd().map_err(|e| io_err("".as_ref(), e))?;
        let entry = entry.map_err(|e| io_err("".as_ref(), e))?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let os_name: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(name.to_bytes());
        let (st, opened) = match open_entry(src, name, mnt_id).map_err(|e| io_err(os_name, e))? {
            Entry::OtherMount => {
                stats.skipped_mounts += 1;
                continue;
            }
            Entry::Special(ftype) => {
                log::debug!("copy-up skips {os_name:?}: {ftype:?}");
                stats.skipped_special += 1;
                continue;
            }
            Entry::Copy(owner, opened) => (owner, opened),
        };
        let (mode, uid, gid) = (st.mode, Some(st.uid), Some(st.gid));
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(CopyError::Bound(format!("{} entries", limits.max_entries)));
        }
        match opened {
            Opened::Dir(s) => {
                mkdirat(dst, name, Mode::from_raw_mode(0o700)).map_err(|e| io_err(os_name, e))?;
                let d = openat(
                    dst,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err(os_name, e))?;
                copy_dir(s, d.as_fd(), mnt_id, limits, depth + 1, stats)?;
                fchown(&d, uid, gid).map_err(|e| io_err(os_name, e))?;
                fchmod(&d, mode).map_err(|e| io_err(os_name, e))?;
            }
            Opened::File(s) => {
                let d: OwnedFd = openat(
                    dst,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err(os_name, e))?;
                let left = limits.max_bytes - stats.bytes;
                let out = File::from(d);
                // sendfile(2) until the end (std's io::copy would first
                // statx both files and try copy_file_range, which fails
                // across the tmpfs boundary).
                // A file system without splice support: std's copy, which
                // falls back to read and write.
                let mut n: u64 = 0;
                loop {
                    let want = usize::try_from(left + 1 - n).unwrap_or(usize::MAX);
                    let got = match rustix::fs::sendfile(&out, &s, None, want) {
                        Ok(got) => got,
                        Err(
                            rustix::io::Errno::INVAL
                            | rustix::io::Errno::NOSYS
                            | rustix::io::Errno::OPNOTSUPP,
                        ) if n == 0 => {
                            n = io::copy(&mut (&s).take(left + 1), &mut &out)
                                .map_err(|e| io_err(os_name, e))?;
                            break;
                        }
                        Err(e) => return Err(io_err(os_name, e)),
                    };
                    n += got as u64;
                    if got == 0 || n > left {
                        break;
                    }
                }
                if n > left {
                    return Err(CopyError::Bound(format!("{} bytes", limits.max_bytes)));
                }
                stats.bytes += n;
                fchown(&out, uid, gid).map_err(|e| io_err(os_name, e))?;
                fchmod(&out, mode).map_err(|e| io_err(os_name, e))?;
            }
            Opened::Symlink(target) => {
                symlinkat(target.as_c_str(), dst, name).map_err(|e| io_err(os_name, e))?;
                chownat(dst, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err(os_name, e))?;
            }
        }
    }
    Ok(())
}

/// One directory entry as [`open_entry`] found it.
enum Entry {
    /// On another mount than the copied directory: moved, not copied.
    OtherMount,
    /// A device node, FIFO or socket: never opened for I/O, skipped.
    Special(FileType),
    /// To copy: its owner and permission bits, and what to copy it from.
    Copy(Owner, Opened),
}

/// Owner and permission bits (`st_mode & 0o7777`) of an entry.
#[derive(Debug, Clone, Copy)]
struct Owner {
    mode: Mode,
    uid: Uid,
    gid: Gid,
}

/// A directory entry opened for copying, after its type was checked.
enum Opened {
    Dir(OwnedFd),
    File(File),
    Symlink(std::ffi::CString),
}

/// Opens the entry `name` of directory `dir` without following a symlink
/// and without opening a device node, FIFO or socket, even when another
/// process swaps the entry meanwhile: the entry is first opened `O_PATH |
/// O_NOFOLLOW` (which never opens the object itself), its type and mount are
/// read from that fd, and only then is that same inode opened for reading:
/// a directory through `openat(fd, ".")`, a regular file by pathrs' procfs
/// reopen ([`crate::reopen::reopen`]), a symlink read with `readlinkat(fd, "")`.
fn open_entry(dir: BorrowedFd<'_>, name: &CStr, mnt_id: u64) -> io::Result<Entry> {
    let path = openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = statx(
        &path,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?;
    if st.stx_mnt_id != mnt_id {
        return Ok(Entry::OtherMount);
    }
    let opened = match FileType::from_raw_mode(u32::from(st.stx_mode)) {
        FileType::Directory => Opened::Dir(openat(
            &path,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?),
        FileType::RegularFile => Opened::File(
            crate::reopen::reopen(&path, OFlags::RDONLY)
                .map_err(|e| io::Error::other(format!("{e:#}")))?,
        ),
        FileType::Symlink => Opened::Symlink(readlinkat(&path, "", Vec::new())?),
        other => return Ok(Entry::Special(other)),
    };
    let owner = Owner {
        mode: Mode::from_raw_mode(u32::from(st.stx_mode) & 0o7777),
        uid: Uid::from_raw(st.stx_uid),
        gid: Gid::from_raw(st.stx_gid),
    };
    Ok(Entry::Copy(owner, opened))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn open_dir(p: &std::path::Path) -> OwnedFd {
        openat(
            rustix::fs::CWD,
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn copies_files_dirs_symlinks_with_modes_and_skips_fifos() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(src.join("a.txt"), b"hello").unwrap();
        std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::fs::set_permissions(src.join("sub"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::write(src.join("sub/deeper/b"), b"x").unwrap();
        symlink("/etc/passwd", src.join("escape")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();

        let stats = copy_tree(
            open_dir(&src),
            None,
            open_dir(&dst).as_fd(),
            &DEFAULT_LIMITS,
        )
        .unwrap();
        assert_eq!(std::fs::read(dst.join("a.txt")).unwrap(), b"hello");
        assert_eq!(
            std::fs::metadata(dst.join("a.txt")).unwrap().mode() & 0o7777,
            0o640
        );
        assert_eq!(
            std::fs::metadata(dst.join("sub")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert_eq!(std::fs::read(dst.join("sub/deeper/b")).unwrap(), b"x");
        assert_eq!(
            std::fs::read_link(dst.join("escape")).unwrap(),
            std::path::Path::new("/etc/passwd")
        );
        assert!(!dst.join("fifo").exists());
        assert_eq!(
            stats,
            Stats {
                entries: 5,
                bytes: 6,
                skipped_special: 1,
                skipped_mounts: 0
            }
        );
    }

    #[test]
    fn bounds_fail_instead_of_copying_half() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(src.join("big"), vec![0u8; 100]).unwrap();
        let tight = Limits {
            max_bytes: 99,
            ..DEFAULT_LIMITS
        };
        assert!(matches!(
            copy_tree(open_dir(&src), None, open_dir(&dst).as_fd(), &tight),
            Err(CopyError::Bound(_))
        ));

        let dst2 = t.path().join("dst2");
        std::fs::create_dir(&dst2).unwrap();
        let few = Limits {
            max_entries: 0,
            ..DEFAULT_LIMITS
        };
        assert!(matches!(
            copy_tree(open_dir(&src), None, open_dir(&dst2).as_fd(), &few),
            Err(CopyError::Bound(_))
        ));

        let deep = t.path().join("deep");
        std::fs::create_dir_all(deep.join("a/b/c")).unwrap();
        let dst3 = t.path().join("dst3");
        std::fs::create_dir(&dst3).unwrap();
        let shallow = Limits {
            max_depth: 1,
            ..DEFAULT_LIMITS
        };
        assert!(matches!(
            copy_tree(open_dir(&deep), None, open_dir(&dst3).as_fd(), &shallow),
            Err(CopyError::Bound(_))
        ));
    }

    /// IN_OPEN events on the entries of the directory an inotify fd
    /// watches, by entry name.
    fn opens(inotify: &OwnedFd) -> Vec<String> {
        use rustix::fs::inotify::{ReadFlags, Reader};
        let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
        let mut reader = Reader::new(inotify, &mut buf);
        let mut names = Vec::new();
        loop {
            match reader.next() {
                Ok(ev) => {
                    if ev.events().contains(ReadFlags::OPEN) {
                        let n = ev.file_name().map(|n| n.to_string_lossy().into_owned());
                        names.push(n.unwrap_or_default());
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return names,
                Err(e) => panic!("inotify read: {e}"),
            }
        }
    }

    #[test]
    fn open_entry_never_opens_a_fifo_or_socket_and_opens_the_inode_it_checked() {
        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("file"), b"data").unwrap();
        std::fs::create_dir(d.join("dir")).unwrap();
        symlink("/etc/passwd", d.join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(d.join("socket")).unwrap();
        let dir = open_dir(d);
        let mnt_id = statx(&dir, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)
            .unwrap()
            .stx_mnt_id;
        let ino = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
        inotify::add_watch(&ino, d, WatchFlags::OPEN).unwrap();

        let open = |name: &str| {
            let c = std::ffi::CString::new(name).unwrap();
            open_entry(dir.as_fd(), &c, mnt_id).unwrap()
        };
        // A FIFO opened for reading without O_NONBLOCK would hang here.
        assert!(matches!(open("fifo"), Entry::Special(FileType::Fifo)));
        assert!(matches!(open("socket"), Entry::Special(FileType::Socket)));
        assert!(opens(&ino).is_empty(), "a special file was opened");
        match open("file") {
            Entry::Copy(_, Opened::File(mut f)) => {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                assert_eq!(s, "data");
            }
            _ => panic!("file"),
        }
        // The watch sees opens: the regular file's reopen is one.
        assert_eq!(opens(&ino), vec!["file".to_string()]);
        assert!(matches!(open("dir"), Entry::Copy(_, Opened::Dir(_))));
        match open("link") {
            Entry::Copy(_, Opened::Symlink(t)) => assert_eq!(t.as_bytes(), b"/etc/passwd"),
            _ => panic!("link"),
        }
        assert!(!opens(&ino).contains(&"link".to_string()));
    }
}
