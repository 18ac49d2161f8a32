//! Plan building from arbitrary inputs: the bytes are split at NUL bytes into
//! a config.json, a `/proc/<pid>/cgroup` text, a state id and a layout
//! selector. Never panics; every container path in a plan is absolute, and
//! host sources beneath a hierarchy never climb out of it; every bind names a
//! host object an open step takes.
#![no_main]
use std::path::{Component, Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use oci_systemd_hook::cgroup::{Layout, container_cgroups};
use oci_systemd_hook::decide::{Decision, decide};
use oci_systemd_hook::facts::HostFacts;
use oci_systemd_hook::machine::{Machined, name_is_valid};
use oci_systemd_hook::plan::{self, ContainerStep, HostSource, HostStep, PoststopHostStep, RootfsStep};
use procfs::FromBufRead;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let (Some(cfg), Some(cg), Some(id), Some(sel)) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return };
    let Ok(config) = oci_systemd_hook::config::parse(cfg, Path::new("/bundle")) else { return };
    let id = String::from_utf8_lossy(id);
    let Decision::Apply(machine_id) = decide(&config, &id) else { return };
    let Ok(cgroups) = procfs::ProcessCGroups::from_buf_read(cg) else { return };
    let layout = match sel.first().copied().unwrap_or(0) % 3 {
        0 => Layout::Unified,
        1 => Layout::Hybrid,
        _ => Layout::Legacy,
    };
    let facts = HostFacts {
        layout,
        cgroups: container_cgroups(&cgroups),
        systemd_mount: Some(PathBuf::from("/sys/fs/cgroup/systemd")),
        unified_mount: Some(PathBuf::from("/sys/fs/cgroup")),
        cgroup_memory_limit: sel.get(1).map(|b| u64::from(*b) << 20),
        journal_root: PathBuf::from("/var/log/journal"),
        selinux: sel.get(2).is_some_and(|b| b & 1 == 1),
        host_machine_id: None,
        image_systemd: sel.get(3).and_then(|b| (*b != 0).then(|| 200 + u32::from(*b % 80))),
        machined: if sel.get(2).is_some_and(|b| b & 2 == 2) { Machined::Possible } else { Machined::NotSystemdHost },
    };
    let Ok(p) = plan::prestart(&config, &facts, &id, &machine_id) else { return };
    let beneath_ok = |source: &HostSource| {
        if let HostSource::Beneath { path, .. } = source {
            assert!(!path.is_absolute() && !path.as_os_str().is_empty());
            assert!(!path.components().any(|c| matches!(c, Component::ParentDir)));
        }
    };
    for h in &p.host {
        let _ = h.to_string();
        match h {
            HostStep::HostDir { path, .. } => assert!(path.starts_with("/var/log/journal")),
            HostStep::DelegateCgroup { source, .. } => {
                assert!(matches!(source, HostSource::Beneath { .. }), "delegation of a path not beneath a hierarchy");
                beneath_ok(source);
            }
            HostStep::Open { source, .. } => beneath_ok(source),
            HostStep::MakeCgroup2 { name, members, .. } => {
                assert!(name.starts_with("oci-systemd-hook-") && !name.contains('/'));
                assert!(matches!(members, HostSource::Beneath { .. }));
                beneath_ok(members);
            }
            HostStep::RegisterMachine(m) => {
                assert!(name_is_valid(&m.name) && m.root_directory.is_absolute());
                assert!(matches!(p.host.last(), Some(HostStep::RegisterMachine(_))), "registration is the last host step");
            }
        }
    }
    for a in &p.container {
        let _ = a.to_string();
        match a {
            ContainerStep::Tmpfs { dest, .. } | ContainerStep::Mkdir { dest, .. }
            | ContainerStep::RemountReadOnly { dest } | ContainerStep::WriteFile { dest, .. }
            | ContainerStep::BindWritable { dest } => {
                assert!(dest.is_absolute())
            }
            ContainerStep::BindContents { dest, contents } => assert!(dest.is_absolute() && contents.len() == 33),
            ContainerStep::Bind { object, source, dest, .. } => {
                assert!(dest.is_absolute());
                beneath_ok(source);
                assert!(p.host.iter().any(|h| matches!(h, HostStep::Open { object: o, source: s } if o == object && s == source)));
            }
        }
    }
    let post = plan::poststop(&config, &id, &machine_id, None, layout == Layout::Legacy, facts.machined);
    for h in &post.host {
        let _ = h.to_string();
        match h {
            PoststopHostStep::RemoveUnfinishedHostDir { path, .. } => assert!(path.starts_with("/var/log/journal")),
            PoststopHostStep::RemoveCgroup2 { name } => assert!(!name.contains('/')),
            PoststopHostStep::TerminateMachine(m) => assert!(name_is_valid(&m.name)),
        }
    }
    for r in &post.rootfs {
        let _ = r.to_string();
        match r {
            RootfsStep::ClearFile { dest, .. } => assert!(dest.is_absolute()),
        }
    }
});
