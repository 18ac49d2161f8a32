//! The safety policy on mount tables captured on the project's test host
//! (tests/fixtures/mountinfo/): no root needed.

use super::*;

const ROOTFS: &str = "/var/tmp/osh-cap-X/bundle/rootfs";

fn table(name: &str) -> Vec<MountInfo> {
    let path = format!(
        "{}/tests/fixtures/mountinfo/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| MountInfo::from_line(l).unwrap())
        .collect()
}

/// The id of the topmost mount at `point` (a path inside the rootfs).
fn id_at(t: &[MountInfo], rel: &str) -> u64 {
    let at = Path::new(ROOTFS).join(rel);
    t.iter()
        .rev()
        .find(|m| mount_point(m) == at)
        .unwrap_or_else(|| panic!("no mount at {}", at.display()))
        .mnt_id as u64
}

/// The mount the rootfs directory is on: the sandbox's `/`.
fn root_id(t: &[MountInfo]) -> u64 {
    t.iter()
        .find(|m| mount_point(m) == Path::new("/"))
        .unwrap()
        .mnt_id as u64
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
    for m in &t {
        if mount_point(m) != Path::new(ROOTFS).join("data") {
            assert_eq!(check_attach(&t, &[], m.mnt_id as u64), Ok(()), "{m:?}");
        }
    }
    // The test host runs no systemd: nothing in its table is shared.
    let host = table("host.txt");
    assert!(
        host.iter()
            .all(|m| check_attach(&host, &[], m.mnt_id as u64).is_ok())
    );
}

#[test]
fn a_cgroup_with_a_process_outside_the_container_is_refused() {
    let cg = Path::new("/libpod_parent/libpod-x");
    let ns = |pid: &str| match pid {
        "10" | "11" => Some(4026532000),
        "12" => None, // exited meanwhile
        _ => Some(4026531840),
    };
    assert_eq!(
        check_cgroup_procs(cg, "10\n11\n12\n", 4026532000, ns),
        Ok(())
    );
    assert_eq!(check_cgroup_procs(cg, "", 4026532000, ns), Ok(()));
    assert_eq!(
        check_cgroup_procs(cg, "10\n1\n", 4026532000, ns),
        Err(Refusal::ForeignProcess {
            cgroup: cg.into(),
            pid: "1".into()
        })
    );
}

#[test]
fn host_dirs_are_reused_only_with_this_containers_mark() {
    let p = Path::new("/var/log/journal/x");
    assert_eq!(check_marker(p, Some(b"abc"), "abc"), Ok(()));
    for found in [None, Some(&b"abd"[..]), Some(&b""[..]), Some(&b"abc\0"[..])] {
        assert_eq!(
            check_marker(p, found, "abc"),
            Err(Refusal::NotOurHostDir { path: p.into() })
        );
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
