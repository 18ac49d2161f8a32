//! The safety policy on mount tables captured on the project's test host
//! (tests/fixtures/mountinfo/): no root needed.

use super::*;

const ROOTFS: &str = "/var/tmp/osh-cap-X/bundle/rootfs";

fn table(name: &str) -> Table {
    let path = format!(
        "{}/tests/fixtures/mountinfo/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Table::new(crate::mountinfo::parse(&std::fs::read(path).unwrap()).unwrap())
}

/// The id of the topmost mount at `rel` (a path inside the rootfs).
fn id_at(t: &Table, rel: &str) -> u64 {
    let at = Path::new(ROOTFS).join(rel);
    t.topmost_at(&at)
        .unwrap_or_else(|| panic!("no mount at {}", at.display()))
        .id
}

/// The mount the rootfs directory is on: the sandbox's `/`.
fn root_id(t: &Table) -> u64 {
    t.topmost_at(Path::new("/")).unwrap().id
}

fn hook_tmpfs() -> Vec<&'static Path> {
    ["/run", "/run/lock", "/tmp", "/sys/fs/cgroup"]
        .iter()
        .map(Path::new)
        .collect()
}

#[test]
fn a_prestart_run_again_may_write_on_the_tmpfs_mounts_it_made() {
    let t = table("sandbox-after-prestart.txt");
    let root = root_id(&t);
    let w = writable_mounts(&t, Path::new(ROOTFS), root, hook_tmpfs());
    assert_eq!(
        w,
        vec![
            root,
            id_at(&t, "run"),
            id_at(&t, "run/lock"),
            id_at(&t, "tmp"),
            id_at(&t, "sys/fs/cgroup")
        ]
    );
    // Before the first prestart none of them is a mount: only the image.
    let t = table("sandbox-before-prestart.txt");
    assert_eq!(
        writable_mounts(&t, Path::new(ROOTFS), root_id(&t), hook_tmpfs()),
        vec![root_id(&t)]
    );
}

#[test]
fn writes_onto_proc_a_volume_or_a_bind_are_refused() {
    let t = table("sandbox-after-prestart.txt");
    let w = writable_mounts(&t, Path::new(ROOTFS), root_id(&t), hook_tmpfs());
    let what = Path::new("/etc/machine-id");
    let proc = id_at(&t, "proc");
    assert_eq!(
        check_writable(&t, &w, proc, what),
        Err(Refusal::NotWritable {
            what: what.into(),
            on: format!("proc mounted at {ROOTFS}/proc"),
        })
    );
    for rel in [
        "data",
        "sys/fs/cgroup/systemd",
        "var/log/journal/0123456789abcdef0123456789abcdef",
    ] {
        assert!(
            matches!(
                check_writable(&t, &w, id_at(&t, rel), what),
                Err(Refusal::NotWritable { .. })
            ),
            "{rel}"
        );
    }
    assert_eq!(check_writable(&t, &w, id_at(&t, "tmp"), what), Ok(()));
    assert_eq!(check_writable(&t, &w, root_id(&t), what), Ok(()));
    // A mount id not in the table is named by its number.
    assert_eq!(
        check_writable(&t, &w, 999_999, what)
            .unwrap_err()
            .to_string(),
        "/etc/machine-id resolves onto mount 999999, not the image's own file system; refusing to write there"
    );
}

#[test]
fn a_config_tmpfs_is_writable_a_config_bind_is_not() {
    let t = table("sandbox-after-prestart.txt");
    // /data is a bind mount (ext4), not a tmpfs: config.json naming it as a
    // tmpfs destination does not make it writable.
    let w = writable_mounts(
        &t,
        Path::new(ROOTFS),
        root_id(&t),
        [Path::new("/data"), Path::new("/etc")],
    );
    assert_eq!(w, vec![root_id(&t)]);
}

#[test]
fn mounting_onto_a_shared_mount_is_refused_unless_the_hook_made_it() {
    let t = table("sandbox-after-prestart.txt");
    let data = id_at(&t, "data");
    assert_eq!(
        check_attach(&t, &[], data),
        Err(Refusal::SharedMount {
            point: Path::new(ROOTFS).join("data"),
            fs_type: "ext4".into()
        })
    );
    assert_eq!(check_attach(&t, &[data], data), Ok(()));
    for m in &t.mounts {
        if m.mount_point != Path::new(ROOTFS).join("data") {
            assert_eq!(check_attach(&t, &[], m.id), Ok(()), "{m:?}");
        }
    }
    // The test host runs no systemd: nothing in its table is shared.
    let host = table("host.txt");
    assert!(
        host.mounts
            .iter()
            .all(|m| check_attach(&host, &[], m.id).is_ok())
    );
}

#[test]
fn foreign_members() {
    use Member::{Gone, Threads};
    use ThreadNs::{Exited, Mnt, Unreadable};
    const C: u64 = 4026532000;
    const HOST: u64 = 4026531840;
    let ok = |m: Member| first_foreign(C, &[(7, m)]).is_none();
    assert!(ok(Gone), "reaped");
    assert!(ok(Threads(vec![Mnt(C)])));
    assert!(ok(Threads(vec![Mnt(C), Mnt(C), Exited])), "a thread exited");
    assert!(ok(Threads(vec![Exited])), "a zombie with no live thread");
    assert!(
        ok(Threads(vec![Exited, Mnt(C)])),
        "main thread exited, the other is the container's"
    );
    assert!(!ok(Threads(vec![Mnt(HOST)])), "a host process");
    assert!(
        !ok(Threads(vec![Exited, Mnt(HOST)])),
        "main thread exited, a host thread lives on"
    );
    assert!(
        !ok(Threads(vec![Mnt(C), Mnt(HOST)])),
        "one thread in another namespace"
    );
    assert!(!ok(Threads(vec![Mnt(C), Unreadable])), "unreadable");
    assert!(!ok(Threads(vec![])), "no thread could be listed");
    assert_eq!(
        first_foreign(
            C,
            &[
                (1, Gone),
                (2, Threads(vec![Mnt(C)])),
                (3, Threads(vec![Mnt(HOST)]))
            ]
        ),
        Some(3)
    );
    assert_eq!(first_foreign(C, &[]), None);
    // cgroup.procs lists a process outside the hook's pid namespace as 0:
    // /proc/0 does not exist, yet it is not gone and not the container's.
    assert_eq!(first_foreign(C, &[(0, Gone)]), Some(0));
    let cg = Path::new("/libpod_parent/libpod-x");
    assert_eq!(
        check_cgroup_members(
            cg,
            C,
            &[(2, Threads(vec![Mnt(C)])), (1, Threads(vec![Mnt(HOST)]))]
        ),
        Err(Refusal::ForeignProcess {
            cgroup: cg.into(),
            pid: "1".into()
        })
    );
    assert_eq!(check_cgroup_members(cg, C, &[(9, Gone)]), Ok(()));
}

#[test]
fn host_dirs_are_reused_only_with_this_containers_mark() {
    let p = Path::new("/var/log/journal/x");
    assert_eq!(check_marker(p, Some(b"abc"), "abc"), Ok(()));
    for found in [None, Some(&b""[..])] {
        assert_eq!(
            check_marker(p, found, "abc"),
            Err(Refusal::NotOurHostDir { path: p.into() })
        );
    }
    assert_eq!(
        check_marker(p, Some(b"4f3c2a1b9e8d7c6b5a4f"), "abc"),
        Err(Refusal::ForeignHostDir {
            path: p.into(),
            owner: "4f3c2a1b9e8d".into()
        })
    );
    assert!(check_marker(p, Some(b"abc\0"), "abc").is_err());
}

#[test]
fn what_poststop_does_with_a_journal_dir() {
    let id = "4f3c2a1b9e8d";
    let ours = Some(id.as_bytes());
    assert_eq!(leftover(ours, id, false, true), Leftover::Remove);
    assert_eq!(leftover(ours, id, false, false), Leftover::HoldsFiles);
    assert_eq!(leftover(ours, id, true, true), Leftover::Finished);
    assert_eq!(leftover(ours, id, true, false), Leftover::Finished);
    for found in [
        None,
        Some(&b"other"[..]),
        Some(&b""[..]),
        Some(&b"4f3c2a1b9e8"[..]),
    ] {
        for done in [false, true] {
            assert_eq!(leftover(found, id, done, true), Leftover::NotOurs);
        }
    }
}

#[test]
fn the_same_object_is_refused() {
    let r = || Refusal::RootfsRoot {
        dest: PathBuf::from("/run"),
    };
    assert_eq!(check_not_root((1, 2, 3, 4), (1, 2, 3, 4), r()), Err(r()));
    assert_eq!(check_not_root((1, 2, 3, 5), (1, 2, 3, 4), r()), Ok(()));
}

const A: FileId = FileId {
    dev: (8, 1),
    ino: 2,
};
const B: FileId = FileId {
    dev: (8, 1),
    ino: 77,
};

fn facts(id: FileId, mnt_id: u64, nlink: u32) -> FileFacts {
    FileFacts { id, mnt_id, nlink }
}

#[test]
fn a_machine_id_is_the_images_own_only_on_its_mount_with_one_link_and_not_the_hosts() {
    assert_eq!(foreign_machine_id(&facts(B, 5, 1), &[5], Some(A)), None);
    assert_eq!(foreign_machine_id(&facts(B, 5, 1), &[4, 5], None), None);
    assert_eq!(
        foreign_machine_id(&facts(B, 6, 1), &[5], Some(A)),
        Some(Foreign::OtherMount)
    );
    assert_eq!(
        foreign_machine_id(&facts(B, 5, 2), &[5], Some(A)),
        Some(Foreign::Linked(2))
    );
    // The host's file is refused whatever mount it is reached through.
    assert_eq!(
        foreign_machine_id(&facts(A, 5, 1), &[5], Some(A)),
        Some(Foreign::HostMachineId)
    );
}

#[test]
fn a_rootfs_is_a_root_alias_by_device_and_inode() {
    let host = HostIds {
        root: A,
        machine_id: None,
    };
    assert_eq!(root_alias(B, A, &host), None);
    assert_eq!(
        root_alias(A, A, &host),
        Some("the root of the mount namespace")
    );
    // The container's namespace has another root (after pivot_root, a
    // chroot'ed runtime), the rootfs is still the host's.
    let other = FileId {
        dev: (0, 40),
        ino: 2,
    };
    assert_eq!(
        root_alias(A, other, &host),
        Some("the host's root directory")
    );
    assert_eq!(root_alias(B, other, &host), None);
    // Same inode on another device is another directory.
    let same_ino = FileId {
        dev: (8, 2),
        ino: 2,
    };
    assert_eq!(root_alias(same_ino, other, &host), None);
    assert_eq!(
        check_rootfs(Path::new("/"), A, A, &host)
            .unwrap_err()
            .to_string(),
        "the rootfs / is the root of the mount namespace; refusing"
    );
}
