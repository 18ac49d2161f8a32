//! `/proc/<pid>/mountinfo`, read as bytes.
//!
//! Format from `proc_pid_mountinfo(5)` and the kernel's `show_mountinfo`
//! (`fs/proc_namespace.c`): one mount per line,
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//! ```
//!
//! mount id, parent id, `major:minor`, root, mount point, per-mount options,
//! zero or more optional fields (`shared:N`, `master:N`, `propagate_from:N`,
//! `unbindable`), the separator `-`, file system type, source, super options.
//! Fields are separated by one space; in the root, the mount point, the type
//! and the source the kernel writes space, tab, newline and backslash as
//! `\ooo` octal escapes (`seq_path_root`, `seq_dentry`, `mangle`), and
//! option values written with `seq_show_option` also escape `,` and `=`.
//! Nothing else is escaped: a path may hold any other byte, so nothing here
//! assumes UTF-8 (the `procfs` crate reads this file with
//! `BufRead::lines()`, which fails on the whole table when one mount point
//! anywhere is not UTF-8).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Largest mountinfo file read, in bytes (64 MiB: about half a million mounts).
pub const MAX_MOUNTINFO_BYTES: u64 = 64 << 20;

/// One optional field (before the `-` separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionalField {
    /// `shared:N`: the mount is in peer group N.
    Shared(u64),
    /// `master:N`: the mount is a slave of peer group N.
    Master(u64),
    /// `propagate_from:N`: a slave that receives from peer group N.
    PropagateFrom(u64),
    /// `unbindable`.
    Unbindable,
    /// A field this parser does not know (a future kernel), kept as written.
    Other(OsString),
}

/// Comma-separated `key` or `key=value` options, each unescaped after
/// splitting (an escaped comma `\054` stays inside its value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options(pub Vec<(OsString, Option<OsString>)>);

impl Options {
    fn parse(field: &[u8]) -> Options {
        Options(
            field
                .split(|b| *b == b',')
                .filter(|o| !o.is_empty())
                .map(|o| match o.iter().position(|b| *b == b'=') {
                    Some(i) => (unescape(&o[..i]), Some(unescape(&o[i + 1..]))),
                    None => (unescape(o), None),
                })
                .collect(),
        )
    }

    /// Whether option `key` is present (with or without a value).
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// The first option `key`: `None` when absent, `Some(None)` when present
    /// without a value, `Some(Some(value))` otherwise.
    pub fn get(&self, key: &str) -> Option<Option<&OsStr>> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }
}

/// One line of mountinfo, with every escaped field decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// (1) The mount id (as `statx(STATX_MNT_ID)` gives it).
    pub id: u64,
    /// (2) The parent mount's id (the mount's own id for the namespace root).
    pub parent: u64,
    /// (3) The device's major number.
    pub major: u32,
    /// (3) The device's minor number.
    pub minor: u32,
    /// (4) The path inside the file system that is the mount's root.
    pub root: PathBuf,
    /// (5) The mount point, relative to the reading process's root.
    pub mount_point: PathBuf,
    /// (6) The per-mount options (`rw`, `nosuid`, `relatime`, …).
    pub options: Options,
    /// (7) The optional fields, in order.
    pub optional: Vec<OptionalField>,
    /// (9) The file system type (`tmpfs`, `fuse.sshfs`, …).
    pub fs_type: OsString,
    /// (10) The source (device, or any string the mounter chose; may be empty).
    pub source: OsString,
    /// (11) The super block options.
    pub super_options: Options,
}

impl Mount {
    /// Whether the mount is in a peer group (`shared:N`): a mount on it
    /// propagates to its peers.
    pub fn is_shared(&self) -> bool {
        self.optional
            .iter()
            .any(|f| matches!(f, OptionalField::Shared(_)))
    }
}

/// Why a mountinfo line cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {line}: {what}")]
pub struct ParseError {
    /// 1-based line number (1 for [`parse_line`]).
    pub line: usize,
    /// What is wrong with it.
    pub what: &'static str,
}

/// Decodes the kernel's `\ooo` octal escapes (three octal digits, at most
/// `\377`); any other backslash is kept as it is.
pub fn unescape(b: &[u8]) -> OsString {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(d) = b.get(i + 1..i + 4)
            && (b'0'..=b'3').contains(&d[0])
            && d[1..].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

fn number<T: std::str::FromStr>(b: &[u8], what: &'static str) -> Result<T, &'static str> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return Err(what);
    }
    std::str::from_utf8(b)
        .map_err(|_| what)?
        .parse()
        .map_err(|_| what)
}

fn optional_field(f: &[u8]) -> Result<OptionalField, &'static str> {
    let tagged = |tag: &[u8]| f.strip_prefix(tag);
    Ok(if let Some(n) = tagged(b"shared:") {
        OptionalField::Shared(number(n, "bad peer group in shared:N")?)
    } else if let Some(n) = tagged(b"master:") {
        OptionalField::Master(number(n, "bad peer group in master:N")?)
    } else if let Some(n) = tagged(b"propagate_from:") {
        OptionalField::PropagateFrom(number(n, "bad peer group in propagate_from:N")?)
    } else if f == b"unbindable" {
        OptionalField::Unbindable
    } else {
        OptionalField::Other(OsStr::from_bytes(f).to_os_string())
    })
}

/// Parses one line (without its newline).
///
/// # Errors
/// [`ParseError`] (with `line` 1) for a missing field, a number that is not
/// one, a missing `-` separator, or a field count after it other than three.
pub fn parse_line(line: &[u8]) -> Result<Mount, ParseError> {
    parse_line_inner(line).map_err(|what| ParseError { line: 1, what })
}

fn parse_line_inner(line: &[u8]) -> Result<Mount, &'static str> {
    if line.contains(&b'\n') {
        return Err("a newline inside a line");
    }
    let mut fields = line.split(|b| *b == b' ');
    let mut next = |what| fields.next().ok_or(what);
    let id = number(next("no mount id")?, "bad mount id")?;
    let parent = number(next("no parent id")?, "bad parent id")?;
    let dev = next("no major:minor")?;
    let colon = dev
        .iter()
        .position(|b| *b == b':')
        .ok_or("bad major:minor")?;
    let major = number(&dev[..colon], "bad major")?;
    let minor = number(&dev[colon + 1..], "bad minor")?;
    let root = PathBuf::from(unescape(next("no root")?));
    let mount_point = PathBuf::from(unescape(next("no mount point")?));
    let options = Options::parse(next("no mount options")?);
    let mut optional = Vec::new();
    loop {
        match next("no `-` separator")? {
            b"-" => break,
            f => optional.push(optional_field(f)?),
        }
    }
    let fs_type = unescape(next("no file system type")?);
    let source = unescape(next("no source")?);
    let super_options = Options::parse(next("no super options")?);
    if fields.next().is_some() {
        return Err("more than three fields after `-`");
    }
    if root.as_os_str().is_empty() || mount_point.as_os_str().is_empty() {
        return Err("empty root or mount point");
    }
    Ok(Mount {
        id,
        parent,
        major,
        minor,
        root,
        mount_point,
        options,
        optional,
        fs_type,
        source,
        super_options,
    })
}

/// Parses a whole mountinfo file: one mount per `\n`-terminated line (a
/// missing final newline is accepted; empty lines are not).
///
/// # Errors
/// The first malformed line, with its number.
pub fn parse(data: &[u8]) -> Result<Vec<Mount>, ParseError> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    if data.is_empty() {
        return Ok(Vec::new());
    }
    data.split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| parse_line_inner(l).map_err(|what| ParseError { line: i + 1, what }))
        .collect()
}

/// The first read of a mount table, in bytes (a table of about 400 mounts).
const READ_CHUNK: usize = 64 * 1024;

/// Reads and parses `/proc/<pid>/mountinfo`, or `/proc/self/mountinfo` for
/// `None`: the mount table of that process's mount namespace, as seen from
/// its root.
///
/// # Errors
/// The file cannot be read (the process is gone), is larger than
/// [`MAX_MOUNTINFO_BYTES`], or a line is malformed (`InvalidData`).
pub fn read(pid: Option<i32>) -> std::io::Result<Vec<Mount>> {
    use std::io::Read;
    let path = match pid {
        Some(p) => format!("/proc/{p}/mountinfo"),
        None => "/proc/self/mountinfo".to_string(),
    };
    // One read for most tables: procfs files have no size, and an empty
    // Vec would make read_to_end start with 32-byte reads.
    let mut data = Vec::with_capacity(READ_CHUNK);
    std::fs::File::open(&path)?
        .take(MAX_MOUNTINFO_BYTES + 1)
        .read_to_end(&mut data)?;
    if data.len() as u64 > MAX_MOUNTINFO_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path} is larger than {MAX_MOUNTINFO_BYTES} bytes"),
        ));
    }
    parse(&data)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{path}: {e}")))
}

/// A mount table indexed by mount id.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The mounts in file order (parents before children, later mounts on
    /// top of earlier ones at the same mount point).
    pub mounts: Vec<Mount>,
    by_id: HashMap<u64, usize>,
}

impl Table {
    /// Indexes `mounts`.
    pub fn new(mounts: Vec<Mount>) -> Table {
        let by_id = mounts.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
        Table { mounts, by_id }
    }

    /// [`read`] into a table.
    ///
    /// # Errors
    /// As [`read`].
    pub fn read(pid: Option<i32>) -> std::io::Result<Table> {
        read(pid).map(Table::new)
    }

    /// Adds a mount the reader has just made, so that the table stays
    /// current without reading mountinfo again: `id` (from
    /// `statx(STATX_MNT_ID)`) on mount `parent` at `mount_point` (as
    /// mountinfo would show it to the reader), of `fs_type`, in no peer
    /// group (no optional fields: a mount attached on a mount that is not
    /// shared is private), with no device, root `/`, source `fs_type` and no
    /// options. Appended last: on top of any earlier mount at the same point.
    pub fn insert_made(&mut self, id: u64, parent: u64, mount_point: PathBuf, fs_type: &str) {
        self.by_id.insert(id, self.mounts.len());
        self.mounts.push(Mount {
            id,
            parent,
            major: 0,
            minor: 0,
            root: PathBuf::from("/"),
            mount_point,
            options: Options(Vec::new()),
            optional: Vec::new(),
            fs_type: fs_type.into(),
            source: fs_type.into(),
            super_options: Options(Vec::new()),
        });
    }

    /// The mount with id `id`.
    pub fn get(&self, id: u64) -> Option<&Mount> {
        self.by_id.get(&id).map(|i| &self.mounts[*i])
    }

    /// The topmost mount at exactly `path` (the last one in file order).
    pub fn topmost_at(&self, path: &Path) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| m.mount_point == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn a_made_mount_is_found_by_id_and_path() {
        let mut t = Table::new(parse(b"1 1 0:1 / / rw - ext4 /dev/x rw\n").unwrap());
        t.insert_made(7, 1, PathBuf::from("/run"), "tmpfs");
        let m = t.get(7).expect("inserted");
        assert_eq!((m.parent, m.fs_type.as_os_str()), (1, OsStr::new("tmpfs")));
        assert!(!m.is_shared());
        assert_eq!(t.topmost_at(Path::new("/run")).map(|m| m.id), Some(7));
        assert_eq!(
            crate::mounts::top_submounts(&t.mounts, Path::new("/")),
            [PathBuf::from("run")]
        );
    }

    #[test]
    fn a_full_line() {
        let m = parse_line(
            b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!((m.id, m.parent, m.major, m.minor), (36, 35, 98, 0));
        assert_eq!(m.root, Path::new("/mnt1"));
        assert_eq!(m.mount_point, Path::new("/mnt2"));
        assert!(m.options.contains("rw") && m.options.contains("noatime"));
        assert!(!m.options.contains("ro"));
        assert_eq!(m.optional, vec![OptionalField::Master(1)]);
        assert!(!m.is_shared());
        assert_eq!(m.fs_type, "ext3");
        assert_eq!(m.source, "/dev/root");
        assert_eq!(
            m.super_options.get("errors"),
            Some(Some(OsStr::new("continue")))
        );
        assert_eq!(m.super_options.get("rw"), Some(None));
        assert_eq!(m.super_options.get("ro"), None);
    }

    #[test]
    fn optional_fields() {
        let m = parse_line(
            b"1 2 0:1 / /a rw shared:7 master:3 propagate_from:4 unbindable future:x - tmpfs tmpfs rw",
        )
        .unwrap();
        assert_eq!(
            m.optional,
            vec![
                OptionalField::Shared(7),
                OptionalField::Master(3),
                OptionalField::PropagateFrom(4),
                OptionalField::Unbindable,
                OptionalField::Other(os("future:x")),
            ]
        );
        assert!(m.is_shared());
        let m = parse_line(b"1 2 0:1 / /a rw - tmpfs tmpfs rw").unwrap();
        assert!(m.optional.is_empty() && !m.is_shared());
    }

    #[test]
    fn escapes_are_decoded() {
        let m = parse_line(
            br"100 1 0:1 /r\134oot /c/root\040fs/run/a\011b\012c\134d rw - fuse.my\040fs sr\040c rw",
        )
        .unwrap();
        assert_eq!(m.root, Path::new(r"/r\oot"));
        assert_eq!(m.mount_point, Path::new("/c/root fs/run/a\tb\nc\\d"));
        assert_eq!(m.fs_type, "fuse.my fs");
        assert_eq!(m.source, "sr c");
        // Not an escape: kept as written.
        for (raw, want) in [
            (r"/c/trailing\04", r"/c/trailing\04"),
            (r"/c/x\9999", r"/c/x\9999"),
            (r"/c/x\477", r"/c/x\477"),
            (r"/c/x\", r"/c/x\"),
            (r"/c/\0401", "/c/ 1"),
        ] {
            let line = format!("1 1 0:1 / {raw} rw - tmpfs tmpfs rw");
            assert_eq!(
                parse_line(line.as_bytes()).unwrap().mount_point,
                Path::new(want)
            );
        }
    }

    #[test]
    fn paths_that_are_not_utf8() {
        let m = parse_line(b"5 1 0:1 /\xff /tmp/x\xff\\040y rw - tmpfs t\xfe rw,a=\xfd").unwrap();
        assert_eq!(m.root.as_os_str().as_bytes(), b"/\xff");
        assert_eq!(m.mount_point.as_os_str().as_bytes(), b"/tmp/x\xff y");
        assert_eq!(m.source.as_bytes(), b"t\xfe");
        assert_eq!(
            m.super_options.get("a").flatten().map(OsStr::as_bytes),
            Some(&b"\xfd"[..])
        );
    }

    #[test]
    fn option_values_with_escaped_commas_and_equals() {
        let m = parse_line(
            br"1 1 0:1 / /o rw - overlay overlay rw,lowerdir=/a\054b:/c\075d,upperdir=/u",
        )
        .unwrap();
        assert_eq!(
            m.super_options.get("lowerdir"),
            Some(Some(OsStr::new("/a,b:/c=d")))
        );
        assert_eq!(
            m.super_options.get("upperdir"),
            Some(Some(OsStr::new("/u")))
        );
        assert_eq!(m.super_options.0.len(), 3);
    }

    #[test]
    fn the_separator_is_the_first_lone_dash() {
        // A source that is "-" and an empty source (`mount -t tmpfs "" /x`).
        let m = parse_line(b"22 13 0:19 / /dev/shm rw - tmpfs - rw").unwrap();
        assert_eq!(m.source, "-");
        let m = parse_line(b"22 13 0:19 / /x rw - tmpfs  rw").unwrap();
        assert_eq!(m.source, "");
        assert_eq!(m.fs_type, "tmpfs");
        // A dash inside a path is no separator.
        let m = parse_line(b"22 13 0:19 / /a-b rw - tmpfs a-b rw").unwrap();
        assert_eq!(m.mount_point, Path::new("/a-b"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            &b""[..],
            b"x 1 0:1 / /a rw - tmpfs tmpfs rw",
            b"1 x 0:1 / /a rw - tmpfs tmpfs rw",
            b"1 1 01 / /a rw - tmpfs tmpfs rw",
            b"1 1 0: / /a rw - tmpfs tmpfs rw",
            b"1 1 0:1 / /a rw tmpfs tmpfs rw",
            b"1 1 0:1 / /a rw -",
            b"1 1 0:1 / /a rw - tmpfs",
            b"1 1 0:1 / /a rw - tmpfs tmpfs",
            b"1 1 0:1 / /a rw - tmpfs tmpfs rw extra",
            b"1 1 0:1 / /a rw shared:x - tmpfs tmpfs rw",
            b"1 1 0:1  /a rw - tmpfs tmpfs rw",
            b"-1 1 0:1 / /a rw - tmpfs tmpfs rw",
            b"99999999999999999999999 1 0:1 / /a rw - tmpfs tmpfs rw",
            b"1 1 0:1 / /a rw - tmpfs tmpfs rw\n",
        ] {
            assert!(
                parse_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_file_and_its_line_numbers() {
        let text =
            b"1 0 0:1 / / rw - ext4 /dev/sda rw\n2 1 0:2 / /run rw shared:1 - tmpfs tmpfs rw\n";
        let t = Table::new(parse(text).unwrap());
        assert_eq!(t.mounts.len(), 2);
        assert_eq!(t.get(2).unwrap().mount_point, Path::new("/run"));
        assert!(t.get(3).is_none());
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b"1 0 0:1 / / rw - ext4 x rw").unwrap().len(), 1);
        let e = parse(b"1 0 0:1 / / rw - ext4 x rw\n\n3 1 0:1 / /a rw - t t rw\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse(b"1 0 0:1 / / rw - ext4 x rw\nbroken\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("mountinfo line 2: "));
    }

    #[test]
    fn topmost_mount_at_a_path() {
        let text = b"1 0 0:1 / / rw - ext4 x rw\n2 1 0:2 / /run rw - tmpfs t rw\n3 2 0:3 / /run rw - proc p rw\n";
        let t = Table::new(parse(text).unwrap());
        assert_eq!(t.topmost_at(Path::new("/run")).unwrap().id, 3);
        assert!(t.topmost_at(Path::new("/tmp")).is_none());
    }

    #[test]
    fn this_process_table_reads() {
        let t = Table::read(None).unwrap();
        assert!(t.mounts.iter().any(|m| m.mount_point == Path::new("/")));
        let me = rustix::fs::statx(
            rustix::fs::CWD,
            "/proc/self",
            rustix::fs::AtFlags::empty(),
            rustix::fs::StatxFlags::MNT_ID,
        )
        .unwrap();
        assert_eq!(t.get(me.stx_mnt_id).unwrap().fs_type, "proc");
    }
}
