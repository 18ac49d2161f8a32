//! Hostile images: each test builds a normal rootfs with one trick (a
//! symlink out of the rootfs, a file where a directory belongs, a FIFO or a
//! device where a file belongs) and checks that prestart and poststop never
//! write, mount, chown or unlink outside the rootfs: a sentinel tree on the
//! host, which the tricks point at, must stay byte-for-byte the same, and
//! the host's mount table too. Needs root (see tests/privileged.rs).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

/// A directory on the host that the tricks point at, holding a file named
/// like each target the hook writes (machine-id with the container's own id,
/// so that a poststop that followed a link out would empty it).
struct Sentinel {
    dir: tempfile::TempDir,
}

impl Sentinel {
    fn new(machine_id: &str) -> Sentinel {
        let dir = tempfile::Builder::new()
            .prefix("osh-sentinel-")
            .tempdir_in("/var/tmp")
            .unwrap();
        for d in [
            "run/lock",
            "tmp",
            "etc",
            "var/log/journal",
            "sys/fs/cgroup/systemd",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("etc/machine-id"), format!("{machine_id}\n")).unwrap();
        std::fs::write(dir.path().join("machine-id"), format!("{machine_id}\n")).unwrap();
        std::fs::write(dir.path().join("run/precious"), b"host data").unwrap();
        std::fs::write(dir.path().join("tmp/precious"), b"host data").unwrap();
        Sentinel { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every entry below the sentinel: type, mode, owner, size and content.
    fn snapshot(&self) -> Snapshot {
        snapshot(self.path())
    }
}

type Snapshot = BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)>;

/// Every entry below `root`: type, mode, owner and content.
fn snapshot(root: &Path) -> Snapshot {
    fn walk(p: &Path, out: &mut Snapshot) {
        let md = std::fs::symlink_metadata(p).unwrap();
        let content = if md.is_file() {
            std::fs::read(p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(p.to_path_buf(), (md.mode(), md.uid(), md.gid(), content));
        if md.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &mut out);
    out
}

/// Replaces `rel` in the rootfs with a symlink to `target`.
fn link(sb: &Sandbox, rel: &str, target: &Path) {
    let p = sb.rootfs.join(rel);
    if p.is_dir() && !p.is_symlink() {
        std::fs::remove_dir_all(&p).unwrap();
    } else if p.exists() || p.is_symlink() {
        std::fs::remove_file(&p).unwrap();
    }
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, &p).unwrap();
}

/// Runs prestart and poststop on a sandbox prepared by `trick`; asserts the
/// sentinel and the host mount table are unchanged, no panic, and either
/// success or one clear error line with exit code 1. Returns the prestart
/// exit code.
fn run_trick(name: &str, config: serde_json::Value, trick: impl FnOnce(&Sandbox, &Path)) -> i32 {
    let sb = Sandbox::new(config);
    let sentinel = Sentinel::new(sb.machine_id());
    trick(&sb, sentinel.path());
    let before = sentinel.snapshot();
    let mounts_before = host_mounts();

    let pre = sb.prestart();
    let code = pre.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&pre.stderr);
    assert!(!stderr.contains("panicked"), "{name}: panic: {stderr}");
    assert!(code == 0 || code == 1, "{name}: exit {code}: {stderr}");
    if code == 1 {
        let errors: Vec<_> = stderr.lines().filter(|l| l.contains(": error: ")).collect();
        assert_eq!(errors.len(), 1, "{name}: one error line: {stderr}");
        assert!(
            line_is_refusal(errors[0]),
            "{name}: a refusal, not a failure: {stderr}"
        );
        assert!(
            !sb.host_journal().exists(),
            "{name}: journal dir left after a failed prestart"
        );
    }
    let post = sb.poststop();
    assert!(
        !String::from_utf8_lossy(&post.stderr).contains("panicked"),
        "{name}"
    );
    assert_eq!(
        sentinel.snapshot(),
        before,
        "{name}: the host sentinel changed"
    );
    assert_eq!(
        host_mounts(),
        mounts_before,
        "{name}: the host mount table changed"
    );
    eprintln!(
        "{name}: prestart exit {code}; {}",
        stderr.lines().last().unwrap_or("")
    );
    code
}

#[test]
#[serial_test::serial]
fn symlinks_out_of_the_rootfs_are_followed_inside_it_or_refused() {
    // Each entry: which rootfs path becomes a symlink, and to where (host
    // sentinel path absolute, or relative with enough `..` to leave any root).
    type Target = Box<dyn Fn(&Path) -> PathBuf>;
    let cases: Vec<(&str, Target)> = vec![
        ("run", Box::new(|s| s.join("run"))),
        ("run", Box::new(|_| PathBuf::from("/"))),
        (
            "run",
            Box::new(|_| PathBuf::from("../../../../../../../../..")),
        ),
        ("run/lock", Box::new(|s| s.join("run/lock"))),
        ("tmp", Box::new(|s| s.join("tmp"))),
        (
            "tmp",
            Box::new(|s| {
                PathBuf::from(format!(
                    "../../../../../../../..{}",
                    s.join("tmp").display()
                ))
            }),
        ),
        ("etc", Box::new(|s| s.join("etc"))),
        ("etc/machine-id", Box::new(|s| s.join("machine-id"))),
        (
            "etc/machine-id",
            Box::new(|s| {
                PathBuf::from(format!(
                    "../../../../../../../..{}",
                    s.join("machine-id").display()
                ))
            }),
        ),
        ("var", Box::new(|s| s.join("var"))),
        ("var/log", Box::new(|s| s.join("var/log"))),
        ("var/log/journal", Box::new(|s| s.join("var/log/journal"))),
        (
            "var/log/journal",
            Box::new(|_| PathBuf::from("/var/log/journal")),
        ),
        ("sys/fs/cgroup", Box::new(|s| s.join("sys/fs/cgroup"))),
        ("sys", Box::new(|s| s.join("sys"))),
    ];
    let n = cases.len();
    for (rel, target) in cases {
        run_trick(&format!("{rel} -> link"), json!({}), |sb, s| {
            link(sb, rel, &target(s))
        });
    }
    eprintln!("{n} symlink tricks tried");
}

#[test]
#[serial_test::serial]
fn wrong_file_types_are_refused_cleanly() {
    // A file where a directory belongs.
    for rel in ["run", "tmp", "etc", "var/log", "var/log/journal"] {
        let code = run_trick(&format!("{rel} is a file"), json!({}), |sb, _| {
            let p = sb.rootfs.join(rel);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            }
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"not a directory").unwrap();
        });
        if rel.starts_with("var") {
            assert_eq!(code, 0, "journal falls back to /run/log/journal");
        } else {
            assert_eq!(code, 1, "{rel}");
        }
    }
    // A directory, a FIFO, a device node where /etc/machine-id belongs: never
    // opened for writing (a FIFO would block, a device would be written).
    for (what, make) in [("directory", 0u8), ("fifo", 1u8), ("char device", 2u8)] {
        let code = run_trick(
            &format!("/etc/machine-id is a {what}"),
            json!({}),
            |sb, _| {
                let p = sb.rootfs.join("etc/machine-id");
                std::fs::remove_file(&p).unwrap();
                match make {
                    0 => std::fs::create_dir(&p).unwrap(),
                    1 => rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &p,
                        rustix::fs::FileType::Fifo,
                        rustix::fs::Mode::from_raw_mode(0o644),
                        0,
                    )
                    .unwrap(),
                    _ => rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &p,
                        rustix::fs::FileType::CharacterDevice,
                        rustix::fs::Mode::from_raw_mode(0o666),
                        rustix::fs::makedev(1, 3),
                    )
                    .unwrap(),
                }
            },
        );
        assert_eq!(code, 1, "{what}");
    }
}

#[test]
#[serial_test::serial]
fn copy_up_never_follows_links_or_opens_special_files() {
    let code = run_trick("copy-up tricks", json!({}), |sb, s| {
        symlink(s.join("run/precious"), sb.rootfs.join("run/escape-abs")).unwrap();
        symlink(
            "../../../../../../../../etc/shadow",
            sb.rootfs.join("run/escape-rel"),
        )
        .unwrap();
        symlink(s.join("run"), sb.rootfs.join("run/escape-dir")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            sb.rootfs.join("run/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            sb.rootfs.join("tmp/zero"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 5),
        )
        .unwrap();
    });
    assert_eq!(code, 0);
}

#[test]
#[serial_test::serial]
fn copy_up_over_its_bound_fails_without_leaving_anything() {
    let code = run_trick("copy-up too large", json!({}), |sb, _| {
        let f = std::fs::File::create(sb.rootfs.join("tmp/huge")).unwrap();
        f.set_len(64 * 1024 * 1024).unwrap(); // sparse: 64 MiB > the 32 MiB bound
    });
    assert_eq!(code, 1);
}

/// Mounts the sentinel directory at `rel` in the sandbox's namespace, as a
/// runtime mounts a volume before prestart.
fn volume(sb: &Sandbox, sentinel: &Path, rel: &str) {
    let at = sb.rootfs.join(rel);
    std::fs::create_dir_all(&at).unwrap();
    sb.nsenter(&[
        "mount",
        "--bind",
        sentinel.to_str().unwrap(),
        at.to_str().unwrap(),
    ]);
}

#[test]
#[serial_test::serial]
fn writes_never_follow_a_link_onto_another_mount_in_the_rootfs() {
    // At prestart the runtime has mounted /proc, /sys, cgroupfs and volumes
    // inside the rootfs. A link in the image must not make the hook write
    // through them: here a volume stands for all of them.
    let code = run_trick("machine-id -> file on a volume", json!({}), |sb, s| {
        volume(sb, s, "data");
        link(sb, "etc/machine-id", Path::new("/data/machine-id"));
    });
    assert_eq!(code, 1);
    let code = run_trick(
        "/var/log -> a volume (journal mkdir)",
        json!({}),
        |sb, s| {
            volume(sb, s, "data");
            link(sb, "var/log", Path::new("/data/var/log"));
        },
    );
    assert_eq!(code, 0, "the journal falls back to /run/log/journal");
    let code = run_trick("/tmp -> a volume (copy-up source)", json!({}), |sb, s| {
        volume(sb, s, "data");
        link(sb, "tmp", Path::new("/data/tmp"));
    });
    assert_eq!(code, 1);
}

#[test]
#[serial_test::serial]
fn machine_id_link_into_a_mounted_proc_does_not_reach_the_kernel() {
    let before = std::fs::read("/proc/sys/kernel/domainname").unwrap();
    let code = run_trick(
        "machine-id -> /proc/sys/kernel/domainname",
        json!({}),
        |sb, _| {
            sb.nsenter(&[
                "mount",
                "-t",
                "proc",
                "proc",
                sb.rootfs.join("proc").to_str().unwrap(),
            ]);
            link(
                sb,
                "etc/machine-id",
                Path::new("/proc/sys/kernel/domainname"),
            );
        },
    );
    assert_eq!(code, 1);
    assert_eq!(
        std::fs::read("/proc/sys/kernel/domainname").unwrap(),
        before
    );
}

#[test]
#[serial_test::serial]
fn a_shared_rootfs_mount_is_refused() {
    // Mounts on a shared mount would propagate to its peers (the host).
    let code = run_trick("shared rootfs", json!({}), |sb, _| {
        let r = sb.rootfs.to_str().unwrap();
        sb.nsenter(&["mount", "--bind", r, r]);
        sb.nsenter(&["mount", "--make-shared", r]);
    });
    assert_eq!(code, 1);
}

#[test]
#[serial_test::serial]
fn a_root_path_of_slash_is_refused_at_poststop() {
    let sb = Sandbox::new(json!({}));
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.bundle.join("config.json")).unwrap()).unwrap();
    cfg["root"]["path"] = json!("/");
    std::fs::write(sb.bundle.join("config.json"), cfg.to_string()).unwrap();
    let before = std::fs::read("/etc/machine-id").ok();
    let o = sb.poststop();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("root of the mount namespace"));
    assert!(is_refusal(&o), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read("/etc/machine-id").ok(), before);
}

/// Sets `root.path` in the sandbox's config.json.
fn set_root_path(sb: &Sandbox, path: &str) {
    let file = sb.bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    cfg["root"]["path"] = json!(path);
    std::fs::write(file, cfg.to_string()).unwrap();
}

fn assert_refused(o: &std::process::Output, what: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{what}: {stderr}");
    assert!(
        stderr.contains("root of the mount namespace")
            || stderr.contains("host's root directory")
            || stderr.contains("magic link, an alias of another process's tree"),
        "{what}: {stderr}"
    );
    assert!(is_refusal(o), "{what}: a refusal, not a failure: {stderr}");
}

#[test]
#[serial_test::serial]
fn a_rootfs_that_aliases_the_hosts_root_is_refused_at_prestart() {
    // The "host" is a FakeHost, so that a hook that goes wrong damages only
    // a temporary directory, never this machine's /etc/machine-id. The
    // container's namespace is a copy of the fake host's, as at prestart.
    let host = FakeHost::new("0123456789abcdef0123456789abcdef");
    let sb = Sandbox::new_in(json!({}), Some(host.pid()));
    let before = snapshot(host.root.path());

    // Prestart: /proc/<pid>/root/. of a process in the host's namespace is,
    // seen from the container's namespace, the host's / through another mount.
    set_root_path(&sb, &format!("/proc/{}/root/.", host.pid()));
    let pre = sb.prestart();
    assert_eq!(
        snapshot(host.root.path()),
        before,
        "prestart changed the host: {}",
        String::from_utf8_lossy(&pre.stderr)
    );
    assert_refused(&pre, "prestart");
}

#[test]
#[serial_test::serial]
fn a_rootfs_that_aliases_the_hosts_root_is_refused_at_poststop() {
    // As above; the host's machine-id is what the container's would be, and
    // root.path is /proc/<pid>/root/. of a process in another namespace (the
    // container's, a copy of the host's).
    let host = FakeHost::new("0123456789abcdef0123456789abcdef");
    let sb = Sandbox::new_in(json!({}), Some(host.pid()));
    std::fs::write(host.machine_id_file(), format!("{}\n", sb.machine_id())).unwrap();
    let before = snapshot(host.root.path());
    set_root_path(&sb, &format!("/proc/{}/root/.", sb.pid()));
    // Layer 1: the plan never clears the host's own machine-id (prestart
    // refuses to write it), so poststop has nothing to do in the rootfs.
    let post = sb.poststop();
    assert_eq!(
        snapshot(host.root.path()),
        before,
        "poststop changed the host: {}",
        String::from_utf8_lossy(&post.stderr)
    );
    assert_ok(&post);
    assert_eq!(
        std::fs::read(host.machine_id_file()).unwrap(),
        format!("{}\n", sb.machine_id()).into_bytes()
    );
    // Layer 2: with another id on the host, the rootfs is opened, and the
    // alias of the host's / (through a /proc magic link) is refused.
    let other = "fedcba9876543210fedcba9876543210\n";
    std::fs::write(host.machine_id_file(), other).unwrap();
    let before = snapshot(host.root.path());
    let post = sb.poststop();
    assert_eq!(snapshot(host.root.path()), before);
    assert_refused(&post, "poststop");
    assert_eq!(
        std::fs::read(host.machine_id_file()).unwrap(),
        other.as_bytes()
    );
}

#[test]
#[serial_test::serial]
fn a_machine_id_hard_linked_out_of_the_image_is_never_written_through() {
    // Prestart: the container gets a machine-id file of its own, the file
    // the image's machine-id was linked to keeps its content.
    let sb = Sandbox::new(json!({}));
    let sentinel = Sentinel::new(sb.machine_id());
    let in_image = sb.rootfs.join("etc/machine-id");
    std::fs::remove_file(&in_image).unwrap();
    std::fs::hard_link(sentinel.path().join("run/precious"), &in_image).unwrap();
    let before = sentinel.snapshot();
    let pre = sb.prestart();
    assert_eq!(
        sentinel.snapshot(),
        before,
        "prestart wrote through the link"
    );
    assert_ok(&pre);
    assert!(String::from_utf8_lossy(&pre.stderr).contains("hard links"));
    assert_eq!(
        std::fs::read(&in_image).unwrap(),
        format!("{}\n", sb.machine_id()).into_bytes()
    );
    assert_eq!(std::fs::metadata(&in_image).unwrap().nlink(), 1);
    assert_ok(&sb.poststop());
    assert_eq!(std::fs::read(&in_image).unwrap(), b"");
    assert_eq!(sentinel.snapshot(), before);

    // Poststop: a machine-id linked to a file outside that holds the
    // container's id is left alone, not emptied.
    std::fs::remove_file(&in_image).unwrap();
    std::fs::hard_link(sentinel.path().join("machine-id"), &in_image).unwrap();
    let post = sb.poststop();
    assert_eq!(
        sentinel.snapshot(),
        before,
        "poststop emptied the linked file"
    );
    assert_ok(&post);
    assert!(String::from_utf8_lossy(&post.stderr).contains("left alone"));
}

/// IN_OPEN events read so far from a non-blocking inotify fd.
fn inotify_opens(inotify: &std::os::fd::OwnedFd) -> u64 {
    use rustix::fs::inotify::{ReadFlags, Reader};
    let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
    let mut reader = Reader::new(inotify, &mut buf);
    let mut n = 0;
    loop {
        match reader.next() {
            Ok(ev) if ev.events().contains(ReadFlags::OPEN) => n += 1,
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => return n,
            Err(e) => panic!("inotify read: {e}"),
        }
    }
}

#[test]
#[serial_test::serial]
fn copy_up_never_opens_a_device_or_fifo_swapped_in_by_a_concurrent_writer() {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    use rustix::fs::{FileType, Mode, RenameFlags, makedev, mknodat, renameat_with};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const ITERATIONS: usize = 50;
    const VICTIMS: usize = 256;
    // Every open of a swapped-in node (by any path, any namespace) is an
    // IN_OPEN event on its inode; an O_PATH open is none.
    let ino = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
    let (mut opened, mut skipped, mut copied) = (0, 0, 0);
    for _ in 0..ITERATIONS {
        let sb = Sandbox::new(json!({}));
        let run = sb.rootfs.join("run");
        let stash = sb.dir.path().join("stash");
        std::fs::create_dir(&stash).unwrap();
        for i in 0..VICTIMS {
            std::fs::write(run.join(format!("v{i}")), format!("regular {i}\n")).unwrap();
            let node = stash.join(format!("v{i}"));
            // Half /dev/zero (copied, it would pass the 32 MiB bound), half FIFOs.
            let (ft, dev) = if i % 2 == 0 {
                (FileType::CharacterDevice, makedev(1, 5))
            } else {
                (FileType::Fifo, 0)
            };
            mknodat(rustix::fs::CWD, &node, ft, Mode::from_raw_mode(0o666), dev).unwrap();
            inotify::add_watch(&ino, &node, WatchFlags::OPEN).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, run, stash) = (stop.clone(), run.clone(), stash.clone());
            std::thread::spawn(move || {
                let (r, s) = (
                    std::fs::File::open(&run).unwrap(),
                    std::fs::File::open(&stash).unwrap(),
                );
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..VICTIMS {
                        let n = format!("v{i}");
                        renameat_with(&r, &n, &s, &n, RenameFlags::EXCHANGE).unwrap();
                    }
                }
            })
        };
        let pre = sb.prestart();
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert_ok(&pre);
        opened += inotify_opens(&ino);
        for i in 0..VICTIMS {
            match sb.read(&format!("/run/v{i}")) {
                Ok(content) => {
                    assert_eq!(content, format!("regular {i}\n").into_bytes());
                    copied += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => skipped += 1,
                Err(e) => panic!("/run/v{i}: {e}"),
            }
        }
    }
    eprintln!(
        "{ITERATIONS} copy-ups of {VICTIMS} swapped entries: {copied} copied as files, {skipped} skipped as special, {opened} opens of a device or FIFO"
    );
    assert_eq!(opened, 0, "copy-up opened a swapped-in device or FIFO");
}

#[test]
#[serial_test::serial]
fn poststop_never_follows_a_proc_magic_link_into_another_containers_rootfs() {
    // A review finding: prestart refused a root.path through /proc/<pid>/root,
    // but poststop (which runc runs even after a failed start) followed it and
    // emptied the other container's /etc/machine-id when container_uuid named
    // that container's machine-id.
    let victim = Sandbox::new(json!({}));
    assert_ok(&victim.prestart());
    let written = victim.read("/etc/machine-id").unwrap();
    let mid = String::from_utf8(written.clone())
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(mid.len(), 32);
    let attacker = Sandbox::new(json!({"process": {
        "cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["/sbin/init"],
        "env": [format!("container_uuid={mid}")],
    }}));
    set_root_path(
        &attacker,
        &format!("/proc/{}/root{}", victim.pid(), victim.rootfs.display()),
    );
    let post = attacker.poststop();
    assert_refused(&post, "poststop");
    assert_eq!(victim.read("/etc/machine-id").unwrap(), written);
    assert_ok(&victim.poststop());
}
