//! Plan tests: they compare step values, never the printed text (the one
//! golden test of the text is `explain`'s).

use std::path::{Path, PathBuf};

use super::*;
use crate::cgroup::{ContainerCgroups, Layout};
use crate::config::{ContainerConfig, Owner, clean};
use crate::facts::HostFacts;
use crate::machine::Machined;
use crate::machine_id::MachineId;

const CG: &str =
    "/libpod_parent/libpod-4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

const ID: &str = "4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn mid() -> MachineId {
    MachineId::parse("4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f").unwrap()
}

fn hybrid() -> HostFacts {
    HostFacts {
        layout: Layout::Hybrid,
        cgroups: ContainerCgroups {
            systemd: Some(p(CG)),
            memory: Some(p(CG)),
            unified: Some(p(CG)),
        },
        systemd_mount: Some(p("/sys/fs/cgroup/systemd")),
        unified_mount: Some(p("/sys/fs/cgroup/unified")),
        cgroup_memory_limit: None,
        journal_root: p("/var/log/journal"),
        selinux: false,
        host_machine_id: None,
        image_systemd: Some(252),
        machined: Machined::NotSystemdHost,
    }
}

/// The skips other than the machine's (every plan here is made for a host
/// that is not a systemd host, [`Machined::NotSystemdHost`]).
fn not_machine(skipped: &[Skip]) -> Vec<Skip> {
    skipped
        .iter()
        .filter(|s| s.step != Skipped::Machine)
        .cloned()
        .collect()
}

fn podman_config() -> ContainerConfig {
    ContainerConfig {
        rootfs: p("/merged"),
        args: vec!["/sbin/init".into()],
        mount_destinations: [
            "/proc",
            "/dev",
            "/sys",
            "/sys/fs/cgroup",
            "/run/.containerenv",
            "/etc/hosts",
        ]
        .iter()
        .map(|d| clean(Path::new(d)))
        .collect(),
        ..Default::default()
    }
}

fn tmpfs(dest: &str, mode: u32, size: Option<u64>, copy_up: bool) -> ContainerStep {
    ContainerStep::Tmpfs {
        dest: p(dest),
        options: TmpfsOptions {
            mode,
            size,
            owner: None,
            context: None,
        },
        copy_up,
    }
}

fn bind(
    n: usize,
    source: HostSource,
    dest: &str,
    readonly: bool,
    fallback: Option<&str>,
) -> ContainerStep {
    ContainerStep::Bind {
        object: ObjectId(n),
        source,
        dest: p(dest),
        readonly,
        fallback: fallback.map(p),
    }
}

fn open(n: usize, source: HostSource) -> HostStep {
    HostStep::Open {
        object: ObjectId(n),
        source,
    }
}

fn own_cgroup(base: &str, cg: &Path) -> HostSource {
    HostSource::Beneath {
        base: p(base),
        path: cg.strip_prefix("/").unwrap().to_path_buf(),
    }
}

fn skip(step: Skipped, reason: SkipReason) -> Skip {
    Skip { step, reason }
}

/// The container steps whose destination is under `/sys`, as (source, dest,
/// readonly) of each bind.
fn cgroup_binds(plan: &Plan) -> Vec<(HostSource, PathBuf, bool)> {
    plan.container
        .iter()
        .filter_map(|s| match s {
            ContainerStep::Bind {
                source,
                dest,
                readonly,
                ..
            } if dest.starts_with("/sys") => Some((source.clone(), dest.clone(), *readonly)),
            _ => None,
        })
        .collect()
}

/// Every bind names a host object that exactly one open step takes, with
/// the same source.
fn assert_binds_are_opened(plan: &Plan) {
    for s in &plan.container {
        if let ContainerStep::Bind { object, source, .. } = s {
            let opens: Vec<_> = plan
                .host
                .iter()
                .filter(|h| matches!(h, HostStep::Open { object: o, .. } if o == object))
                .collect();
            assert_eq!(opens, vec![&open(object.0, source.clone())], "{s}");
        }
    }
}

#[test]
fn podman_hybrid_host_cgroupns() {
    let plan = prestart(&podman_config(), &hybrid(), ID, &mid()).unwrap();
    let journal = format!("/var/log/journal/{}", mid());
    let fallback = format!("/run/log/journal/{}", mid());
    let own = own_cgroup("/sys/fs/cgroup/systemd", Path::new(CG));
    let hierarchy = HostSource::Path(p("/sys/fs/cgroup/systemd"));
    let null = HostSource::Path(p("/dev/null"));
    assert_eq!(
        plan.host,
        vec![
            HostStep::HostDir {
                path: p(&journal),
                mode: 0o755,
                owner: None,
                label: None,
                optional: true,
                marker: ID.into(),
            },
            open(0, HostSource::Path(p(&journal))),
            open(1, hierarchy.clone()),
            open(2, own.clone()),
            open(3, null.clone()),
        ]
    );
    assert_eq!(
        plan.container,
        vec![
            tmpfs("/run", 0o755, Some(RUN_TMPFS_SIZE), true),
            tmpfs("/run/lock", 0o755, Some(RUN_TMPFS_SIZE), true),
            tmpfs("/tmp", 0o1777, None, true),
            bind(
                0,
                HostSource::Path(p(&journal)),
                &journal,
                false,
                Some(&fallback)
            ),
            bind(1, hierarchy, "/sys/fs/cgroup/systemd", true, None),
            bind(2, own, &format!("/sys/fs/cgroup/systemd{CG}"), false, None),
            bind(3, null, "/sys/fs/cgroup/systemd/release_agent", true, None),
            ContainerStep::WriteFile {
                dest: p("/etc/machine-id"),
                contents: format!("{}\n", mid()),
                mode: 0o444,
                owner: None,
            },
        ]
    );
    assert_eq!(
        not_machine(&plan.skipped),
        vec![skip(
            Skipped::Tmpfs(p("/sys/fs/cgroup")),
            SkipReason::ConfigMounts(p("/sys/fs/cgroup"))
        )]
    );
    assert_binds_are_opened(&plan);
}

#[test]
fn private_cgroupns_binds_own_cgroup_at_the_hierarchy_root() {
    let mut c = podman_config();
    c.cgroupns = true;
    let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
    assert_eq!(
        cgroup_binds(&plan),
        vec![(
            own_cgroup("/sys/fs/cgroup/systemd", Path::new(CG)),
            p("/sys/fs/cgroup/systemd"),
            false
        )]
    );
    assert_binds_are_opened(&plan);
}

#[test]
fn user_mounts_of_run_tmp_and_machine_id_are_respected() {
    let mut c = podman_config();
    for d in ["/run/", "/tmp", "/etc/machine-id"] {
        c.mount_destinations.push(clean(Path::new(d)));
    }
    let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
    let tmpfs_dests: Vec<_> = plan
        .container
        .iter()
        .filter_map(|s| match s {
            ContainerStep::Tmpfs { dest, .. } => Some(dest.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        tmpfs_dests,
        vec![p("/run/lock")],
        "/run/lock still gets its tmpfs"
    );
    assert!(!plan.container.iter().any(|s| matches!(s,
        ContainerStep::WriteFile { dest, .. } | ContainerStep::BindContents { dest, .. }
            if dest == Path::new("/etc/machine-id"))));
    assert_eq!(
        not_machine(&plan.skipped),
        vec![
            skip(
                Skipped::Tmpfs(p("/run")),
                SkipReason::ConfigMounts(p("/run"))
            ),
            skip(
                Skipped::Tmpfs(p("/tmp")),
                SkipReason::ConfigMounts(p("/tmp"))
            ),
            skip(
                Skipped::Tmpfs(p("/sys/fs/cgroup")),
                SkipReason::ConfigMounts(p("/sys/fs/cgroup"))
            ),
            skip(
                Skipped::MachineId,
                SkipReason::ConfigMounts(p("/etc/machine-id"))
            ),
        ]
    );
}

#[test]
fn tmp_size_is_half_the_memory_limit_config_first() {
    let mut c = podman_config();
    let mut f = hybrid();
    f.cgroup_memory_limit = Some(1 << 30);
    let size = |plan: &Plan| {
        plan.container.iter().find_map(|a| match a {
            ContainerStep::Tmpfs { dest, options, .. } if dest == Path::new("/tmp") => {
                Some(options.size)
            }
            _ => None,
        })
    };
    assert_eq!(
        size(&prestart(&c, &f, ID, &mid()).unwrap()),
        Some(Some(1 << 29))
    );
    c.memory_limit = Some(1 << 28);
    assert_eq!(
        size(&prestart(&c, &f, ID, &mid()).unwrap()),
        Some(Some(1 << 27))
    );
}

#[test]
fn no_cgroup_mount_in_config_gets_a_read_only_tmpfs() {
    let mut c = podman_config();
    c.mount_destinations
        .retain(|d| d != Path::new("/sys/fs/cgroup"));
    let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
    let at = |want: &ContainerStep| plan.container.iter().position(|s| s == want).unwrap();
    let tmpfs = at(&ContainerStep::Tmpfs {
        dest: p("/sys/fs/cgroup"),
        options: TmpfsOptions {
            mode: 0o755,
            size: Some(CGROUP_TMPFS_SIZE),
            owner: None,
            context: None,
        },
        copy_up: false,
    });
    let mkdir = at(&ContainerStep::Mkdir {
        dest: p("/sys/fs/cgroup/systemd"),
        mode: 0o755,
    });
    let bind = plan
        .container
        .iter()
        .position(|s| {
            matches!(s, ContainerStep::Bind { dest, readonly: true, .. }
                if dest == Path::new("/sys/fs/cgroup/systemd"))
        })
        .unwrap();
    let ro = at(&ContainerStep::RemountReadOnly {
        dest: p("/sys/fs/cgroup"),
    });
    assert!(
        tmpfs < mkdir && mkdir < bind && bind < ro,
        "{:?}",
        plan.container
    );
}

#[test]
fn readonly_image_writes_nothing_into_the_image() {
    let mut c = podman_config();
    c.readonly = true;
    let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
    for a in &plan.container {
        match a {
            ContainerStep::WriteFile { .. } => panic!("{a}: a write in a read-only image"),
            ContainerStep::Bind { dest, fallback, .. }
                if dest.starts_with("/run/log") || dest.starts_with("/var") =>
            {
                assert!(dest.starts_with("/run/log/journal"), "{a}");
                assert_eq!(fallback, &None);
            }
            _ => {}
        }
    }
    assert!(plan.container.contains(&ContainerStep::BindContents {
        dest: p("/etc/machine-id"),
        contents: format!("{}\n", mid()),
    }));
    let post = poststop(&c, ID, &mid(), None, false, Machined::NotSystemdHost);
    assert!(
        post.rootfs.is_empty(),
        "nothing written into a read-only image"
    );
    assert_eq!(
        not_machine(&post.skipped),
        vec![skip(Skipped::MachineId, SkipReason::ReadOnlyImage)]
    );
}

fn unified(fixture: &str) -> HostFacts {
    use procfs::FromBufRead;
    let path = format!(
        "{}/tests/fixtures/proc-cgroup/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let parsed = procfs::ProcessCGroups::from_buf_read(f).unwrap();
    HostFacts {
        layout: Layout::Unified,
        cgroups: crate::cgroup::container_cgroups(&parsed),
        systemd_mount: None,
        unified_mount: Some(p("/sys/fs/cgroup")),
        cgroup_memory_limit: None,
        journal_root: p("/var/log/journal"),
        selinux: false,
        host_machine_id: None,
        image_systemd: Some(252),
        machined: Machined::NotSystemdHost,
    }
}

#[test]
fn unified_host_cgroupns_binds_hierarchy_ro_and_own_cgroup_rw() {
    for fixture in ["unified-v2-systemd-host.txt", "unified-v2-rootless.txt"] {
        let f = unified(fixture);
        let own = f.cgroups.unified.clone().unwrap();
        let plan = prestart(&podman_config(), &f, ID, &mid()).unwrap();
        assert_eq!(
            cgroup_binds(&plan),
            vec![
                (
                    HostSource::Path(p("/sys/fs/cgroup")),
                    p("/sys/fs/cgroup"),
                    true
                ),
                (
                    own_cgroup("/sys/fs/cgroup", &own),
                    p("/sys/fs/cgroup").join(own.strip_prefix("/").unwrap()),
                    false
                ),
            ],
            "{fixture}"
        );
        assert!(
            !plan.container.iter().any(
                |a| matches!(a, ContainerStep::Tmpfs { dest, .. } if dest.starts_with("/sys"))
            )
        );
        assert_binds_are_opened(&plan);
    }
}

#[test]
fn unified_private_cgroupns_binds_own_cgroup_at_sys_fs_cgroup() {
    let mut c = podman_config();
    c.cgroupns = true;
    let f = unified("unified-v2-systemd-host.txt");
    let plan = prestart(&c, &f, ID, &mid()).unwrap();
    assert_eq!(
        cgroup_binds(&plan),
        vec![(
            own_cgroup("/sys/fs/cgroup", f.cgroups.unified.as_ref().unwrap()),
            p("/sys/fs/cgroup"),
            false
        )]
    );
}

#[test]
fn missing_cgroup_lines_skip_cgroup_setup() {
    let mut f = unified("unified-v2-systemd-host.txt");
    f.cgroups.unified = None;
    let plan = prestart(&podman_config(), &f, ID, &mid()).unwrap();
    assert!(cgroup_binds(&plan).is_empty());
    assert!(plan.skipped.contains(&skip(
        Skipped::Cgroups,
        SkipReason::NoCgroup("cgroup2 (0::)")
    )));
    let mut f = hybrid();
    f.cgroups.systemd = None;
    let plan = prestart(&podman_config(), &f, ID, &mid()).unwrap();
    assert!(cgroup_binds(&plan).is_empty());
    assert!(plan.skipped.contains(&skip(
        Skipped::Cgroups,
        SkipReason::NoCgroup("name=systemd")
    )));
}

#[test]
fn unsafe_cgroup_facts_are_errors() {
    let mut f = hybrid();
    f.cgroups.systemd = Some(p("/"));
    assert_eq!(
        prestart(&podman_config(), &f, ID, &mid()),
        Err(PlanError::CgroupIsRoot)
    );
    let mut f = hybrid();
    f.systemd_mount = None;
    assert_eq!(
        prestart(&podman_config(), &f, ID, &mid()),
        Err(PlanError::NoHierarchy("name=systemd"))
    );
    let mut f = unified("unified-v2-systemd-host.txt");
    f.unified_mount = None;
    assert_eq!(
        prestart(&podman_config(), &f, ID, &mid()),
        Err(PlanError::NoHierarchy("cgroup2"))
    );
    let mut f = unified("unified-v2-systemd-host.txt");
    f.cgroups.unified = Some(p("/"));
    assert_eq!(
        prestart(&podman_config(), &f, ID, &mid()),
        Err(PlanError::CgroupIsRoot)
    );
    assert!(PlanError::CgroupIsRoot.is_refusal() && PlanError::HostMachineId.is_refusal());
    assert!(!PlanError::NoHierarchy("cgroup2").is_refusal());
}

#[test]
fn tmpfs_option_strings() {
    let o = TmpfsOptions {
        mode: 0o1777,
        size: Some(1024),
        owner: None,
        context: None,
    };
    assert_eq!(o.mount_data(), "mode=1777,size=1024");
    let o = TmpfsOptions {
        mode: 0o755,
        size: None,
        owner: Some(Owner {
            uid: 100000,
            gid: 100000,
        }),
        context: Some("system_u:object_r:container_file_t:s0:c1,c2".into()),
    };
    assert_eq!(
        o.mount_data(),
        r#"mode=755,uid=100000,gid=100000,context="system_u:object_r:container_file_t:s0:c1,c2""#
    );
    assert_eq!(
        o.pairs().last().unwrap(),
        &(
            "context",
            "system_u:object_r:container_file_t:s0:c1,c2".to_string()
        )
    );
}

#[test]
fn selinux_label_goes_on_every_tmpfs_and_the_journal_dir_only_when_enabled() {
    let mut c = podman_config();
    c.mount_label = Some("system_u:object_r:container_file_t:s0:c1,c2".into());
    c.mount_destinations
        .retain(|d| d != Path::new("/sys/fs/cgroup"));
    let mut f = hybrid();
    f.selinux = true;
    let plan = prestart(&c, &f, ID, &mid()).unwrap();
    let mut tmpfs = 0;
    for a in &plan.container {
        if let ContainerStep::Tmpfs { options, .. } = a {
            tmpfs += 1;
            assert_eq!(options.context, c.mount_label, "{a}");
        }
    }
    for a in &plan.host {
        if let HostStep::HostDir { label, .. } = a {
            assert_eq!(label, &c.mount_label);
        }
    }
    assert_eq!(tmpfs, 4, "/run, /run/lock, /tmp, /sys/fs/cgroup");
    f.selinux = false;
    let plan = prestart(&c, &f, ID, &mid()).unwrap();
    assert!(plan.container.iter().all(|a| match a {
        ContainerStep::Tmpfs { options, .. } => options.context.is_none(),
        _ => true,
    }));
    assert!(plan.host.iter().all(|a| match a {
        HostStep::HostDir { label, .. } => label.is_none(),
        _ => true,
    }));
    assert!(
        plan.skipped
            .contains(&skip(Skipped::SelinuxContext, SkipReason::SelinuxDisabled))
    );
    // No label: no option, no note.
    let plan = prestart(&podman_config(), &hybrid(), ID, &mid()).unwrap();
    assert!(
        !plan
            .skipped
            .iter()
            .any(|s| s.step == Skipped::SelinuxContext)
    );
}

#[test]
fn user_namespace_owner_goes_on_what_the_hook_creates() {
    let owner = Owner {
        uid: 100000,
        gid: 100000,
    };
    let mut c = podman_config();
    c.root_owner = Some(owner);
    let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
    let mut delegated = false;
    for a in &plan.container {
        match a {
            ContainerStep::Tmpfs { options, .. } => assert_eq!(options.owner, Some(owner), "{a}"),
            ContainerStep::WriteFile { owner: o, .. } => assert_eq!(o, &Some(owner)),
            _ => {}
        }
    }
    for a in &plan.host {
        match a {
            HostStep::HostDir {
                owner: o, optional, ..
            } => {
                assert_eq!(o, &Some(owner));
                assert!(optional);
            }
            HostStep::DelegateCgroup {
                source,
                files,
                owner: o,
            } => {
                delegated = true;
                assert_eq!(o, &owner);
                assert_eq!(source, &own_cgroup("/sys/fs/cgroup/systemd", Path::new(CG)));
                assert!(
                    files.contains(&"cgroup.procs".to_string())
                        && files.contains(&"tasks".to_string())
                );
            }
            HostStep::Open { .. } | HostStep::RegisterMachine(_) => {}
            HostStep::MakeCgroup2 { .. } => panic!("no cgroup2 of the hook's on a hybrid host"),
        }
    }
    assert!(delegated);
    let plan = prestart(&c, &unified("unified-v2-systemd-host.txt"), ID, &mid()).unwrap();
    assert!(plan.host.iter().any(|a| matches!(a, HostStep::DelegateCgroup { files, .. } if files.contains(&"cgroup.subtree_control".to_string()))));
    // Without a user namespace nothing is chowned.
    let plan = prestart(&podman_config(), &hybrid(), ID, &mid()).unwrap();
    assert!(
        !plan
            .host
            .iter()
            .any(|a| matches!(a, HostStep::DelegateCgroup { .. }))
    );
}

#[test]
fn the_hosts_own_machine_id_is_refused_and_tiny_limits_keep_a_size() {
    let mut f = hybrid();
    f.host_machine_id = Some(mid().to_string());
    assert_eq!(
        prestart(&podman_config(), &f, ID, &mid()),
        Err(PlanError::HostMachineId)
    );
    let mut c = podman_config();
    c.memory_limit = Some(1);
    let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
    assert!(
        plan.container
            .iter()
            .any(|a| matches!(a, ContainerStep::Tmpfs { dest, options, .. }
            if dest == Path::new("/tmp") && options.size == Some(TMPFS_MIN_SIZE)))
    );
}

#[test]
fn config_tmpfs_mounts_are_private_tmpfs_and_journal_dirs_carry_the_id() {
    let mut c = podman_config();
    c.tmpfs_destinations = vec![p("/run")];
    let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
    assert_eq!(plan.private_tmpfs, vec![p("/run")]);
    assert!(
        plan.host
            .iter()
            .any(|a| matches!(a, HostStep::HostDir { marker, .. } if marker == ID))
    );
}

#[test]
fn poststop_cleans_an_unfinished_journal_dir_and_empties_the_machine_id() {
    let plan = poststop(
        &podman_config(),
        ID,
        &mid(),
        None,
        false,
        Machined::NotSystemdHost,
    );
    let cleanup = PoststopHostStep::RemoveUnfinishedHostDir {
        path: p(&format!("/var/log/journal/{}", mid())),
        marker: ID.to_string(),
    };
    assert_eq!(plan.host, vec![cleanup.clone()]);
    assert_eq!(
        plan.rootfs,
        vec![RootfsStep::ClearFile {
            dest: p("/etc/machine-id"),
            expected: mid().to_string()
        }]
    );
    assert!(not_machine(&plan.skipped).is_empty());
    let ro = ContainerConfig {
        readonly: true,
        ..podman_config()
    };
    let plan = poststop(&ro, ID, &mid(), None, false, Machined::NotSystemdHost);
    assert_eq!(plan.host, vec![cleanup]);
    assert!(plan.rootfs.is_empty());
}

#[test]
fn poststop_never_clears_the_hosts_own_machine_id() {
    // Prestart refuses the host's machine-id; a rootfs that is a copy of the
    // host's /etc (container_uuid = the host's id) keeps its file at poststop.
    let plan = poststop(
        &podman_config(),
        ID,
        &mid(),
        Some(mid().as_str()),
        false,
        Machined::NotSystemdHost,
    );
    assert!(plan.rootfs.is_empty());
    assert_eq!(
        not_machine(&plan.skipped),
        vec![Skip {
            step: Skipped::MachineId,
            reason: SkipReason::HostMachineId
        }]
    );
    let other = "0123456789abcdef0123456789abcdef";
    let plan = poststop(
        &podman_config(),
        ID,
        &mid(),
        Some(other),
        false,
        Machined::NotSystemdHost,
    );
    assert_eq!(plan.rootfs.len(), 1);
}

#[test]
fn a_systemd_host_registers_the_machine_last_and_poststop_terminates_it() {
    let facts = HostFacts {
        machined: Machined::Possible,
        ..hybrid()
    };
    let mut c = podman_config();
    c.env = vec!["container=podman".into()];
    let machine = crate::machine::Machine {
        name: mid().to_string(),
        id: mid(),
        service: "podman".into(),
        root_directory: p("/merged"),
    };
    let plan = prestart(&c, &facts, ID, &mid()).unwrap();
    assert_eq!(
        plan.host.last(),
        Some(&HostStep::RegisterMachine(machine.clone()))
    );
    assert_eq!(
        plan.host
            .iter()
            .filter(|s| matches!(s, HostStep::RegisterMachine(_)))
            .count(),
        1
    );
    assert!(!plan.skipped.iter().any(|s| s.step == Skipped::Machine));
    assert_eq!(
        plan.host.last().unwrap().to_string(),
        format!(
            "register machine {0} (id {0}, class container, service podman, root /merged) with systemd-machined",
            mid()
        )
    );
    assert_eq!(plan.host.last().unwrap().kind(), "register-machine");
    let post = poststop(&c, ID, &mid(), None, false, Machined::Possible);
    assert_eq!(
        post.host.last(),
        Some(&PoststopHostStep::TerminateMachine(machine))
    );
    assert_eq!(post.host.last().unwrap().kind(), "terminate-machine");
}

#[test]
fn no_machine_step_without_machined_or_when_the_container_opts_out() {
    let machine_steps = |plan: &Plan| {
        plan.host
            .iter()
            .filter(|s| matches!(s, HostStep::RegisterMachine(_)))
            .count()
    };
    for m in [
        Machined::NotSystemdHost,
        Machined::Rootless,
        Machined::Disabled,
    ] {
        let facts = HostFacts {
            machined: m,
            ..hybrid()
        };
        let plan = prestart(&podman_config(), &facts, ID, &mid()).unwrap();
        assert_eq!(machine_steps(&plan), 0, "{m:?}");
        assert!(plan.skipped.contains(&Skip {
            step: Skipped::Machine,
            reason: SkipReason::Machined(m)
        }));
        let post = poststop(&podman_config(), ID, &mid(), None, false, m);
        assert!(
            !post
                .host
                .iter()
                .any(|s| matches!(s, PoststopHostStep::TerminateMachine(_)))
        );
    }
    let facts = HostFacts {
        machined: Machined::Possible,
        ..hybrid()
    };
    let mut c = podman_config();
    c.env = vec!["OCI_SYSTEMD_HOOK_MACHINE=0".into()];
    let plan = prestart(&c, &facts, ID, &mid()).unwrap();
    assert_eq!(machine_steps(&plan), 0);
    let opted_out = Skip {
        step: Skipped::Machine,
        reason: SkipReason::NotRegistered(crate::machine::NotRegistered::OptedOut),
    };
    assert!(plan.skipped.contains(&opted_out) && !opted_out.is_warning());
    assert!(
        poststop(&c, ID, &mid(), None, false, Machined::Possible)
            .skipped
            .contains(&opted_out)
    );
    // A name machined would refuse: skipped with a warning, never altered.
    let mut c = podman_config();
    c.machine_name = Some("web_1".into());
    let plan = prestart(&c, &facts, ID, &mid()).unwrap();
    assert_eq!(machine_steps(&plan), 0);
    let s = plan
        .skipped
        .iter()
        .find(|s| s.step == Skipped::Machine)
        .unwrap();
    assert!(s.is_warning(), "{s}");
    assert!(s.to_string().contains("\"web_1\" is not valid"), "{s}");
}

/// The cgroup model in the plan: a hybrid host gives systemd 262 the host's
/// cgroup2 (no v1 tmpfs); a legacy host gives it a cgroup2 of the hook's,
/// with the container's processes moved there and the own cgroup writable;
/// systemd 252 keeps the v1 view on both.
#[test]
fn the_image_systemd_picks_the_cgroup_steps() {
    let mut f = hybrid();
    f.image_systemd = Some(262);
    let plan = prestart(&podman_config(), &f, ID, &mid()).unwrap();
    assert_eq!(
        plan.cgroup_model.unwrap().model,
        crate::cgmodel::Model::HostCgroup2
    );
    let binds: Vec<String> = plan
        .container
        .iter()
        .filter(|s| matches!(s, ContainerStep::Bind { .. }))
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        binds[1..],
        [
            "bind /sys/fs/cgroup/unified on /sys/fs/cgroup ro".to_string(),
            format!(
                "bind {} beneath /sys/fs/cgroup/unified on /sys/fs/cgroup{CG} rw",
                CG.trim_start_matches('/')
            ),
        ]
    );
    assert!(!plan.container.iter().any(
        |s| matches!(s, ContainerStep::Tmpfs { dest, .. } if dest == Path::new("/sys/fs/cgroup"))
    ));

    let mut f = hybrid();
    f.layout = Layout::Legacy;
    f.unified_mount = None;
    f.cgroups.unified = None;
    f.image_systemd = Some(262);
    let plan = prestart(&podman_config(), &f, ID, &mid()).unwrap();
    let name = cgroup2_name(ID, &mid());
    assert_eq!(name, format!("oci-systemd-hook-{ID}"));
    assert!(plan.host.contains(&HostStep::MakeCgroup2 {
        name: name.clone(),
        members: own_cgroup("/sys/fs/cgroup/systemd", Path::new(CG)),
        owner: None,
    }));
    assert!(plan.container.iter().any(|s| matches!(s,
        ContainerStep::Bind { source: HostSource::HookCgroup2, dest, readonly: true, .. } if dest == Path::new("/sys/fs/cgroup"))));
    assert!(plan.container.contains(&ContainerStep::BindWritable {
        dest: Path::new("/sys/fs/cgroup").join(&name)
    }));
    let post = poststop(
        &podman_config(),
        ID,
        &mid(),
        None,
        true,
        Machined::NotSystemdHost,
    );
    assert!(
        post.host
            .contains(&PoststopHostStep::RemoveCgroup2 { name })
    );

    for layout in [Layout::Hybrid, Layout::Legacy] {
        let mut f = hybrid();
        f.layout = layout;
        let plan = prestart(&podman_config(), &f, ID, &mid()).unwrap();
        assert_eq!(plan.cgroup_model.unwrap().model, crate::cgmodel::Model::V1);
        assert!(plan.container.iter().any(|s| matches!(s,
            ContainerStep::Bind { dest, readonly: true, .. } if dest == Path::new("/sys/fs/cgroup/systemd"))));
    }
    // An id that is not a plain name: the machine-id names the cgroup.
    assert_eq!(
        cgroup2_name("a/../b", &mid()),
        format!("oci-systemd-hook-{}", mid())
    );
}
