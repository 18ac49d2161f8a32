//! The mountinfo parser on arbitrary bytes: never panics; what it accepts
//! has one mount per line, survives re-escaping (the kernel's `\ooo` for
//! space, tab, newline, backslash) unchanged, and gives the same top
//! submounts as the quadratic definition.
#![no_main]
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use oci_systemd_hook::mountinfo::{self, Mount};
use oci_systemd_hook::mounts::top_submounts;

fn escape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for &c in b {
        match c {
            b' ' | b'\t' | b'\n' | b'\\' => out.extend(format!("\\{c:03o}").bytes()),
            _ => out.push(c),
        }
    }
    out
}

fn roundtrip(m: &Mount) {
    let mut line = format!("{} {} {}:{} ", m.id, m.parent, m.major, m.minor).into_bytes();
    for f in [m.root.as_os_str(), m.mount_point.as_os_str()] {
        line.extend(escape(f.as_bytes()));
        line.push(b' ');
    }
    line.extend_from_slice(b"rw - ");
    line.extend(escape(m.fs_type.as_bytes()));
    line.push(b' ');
    line.extend(escape(m.source.as_bytes()));
    line.extend_from_slice(b" rw");
    let again = mountinfo::parse_line(&line).expect("a re-escaped line parses");
    assert_eq!(
        (&again.root, &again.mount_point, &again.fs_type, &again.source),
        (&m.root, &m.mount_point, &m.fs_type, &m.source)
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(mounts) = mountinfo::parse(data) else {
        return;
    };
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let lines = if body.is_empty() { 0 } else { body.split(|b| *b == b'\n').count() };
    assert_eq!(mounts.len(), lines);
    for m in &mounts {
        assert!(!m.root.as_os_str().is_empty() && !m.mount_point.as_os_str().is_empty());
        roundtrip(m);
    }
    if let Some(dir) = mounts.first().map(|m| m.mount_point.clone())
        && mounts.len() <= 200
    {
        let below: Vec<&Path> = mounts
            .iter()
            .map(|m| m.mount_point.as_path())
            .filter(|p| p.starts_with(&dir) && *p != dir)
            .collect();
        let mut want: Vec<PathBuf> = below
            .iter()
            .filter(|p| !below.iter().any(|o| o != *p && p.starts_with(o)))
            .filter_map(|p| p.strip_prefix(&dir).ok().map(Path::to_path_buf))
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        want.sort();
        want.dedup();
        assert_eq!(top_submounts(&mounts, &dir), want);
    }
});
