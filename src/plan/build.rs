//! Building the plans from config.json, the host facts and the decision.
//! Pure: no system call.

use std::path::{Path, PathBuf};

use super::{
    CGROUP_TMPFS_SIZE, ContainerStep, HostSource, HostStep, Plan, PlanError, PoststopHostStep,
    PoststopPlan, RUN_TMPFS_SIZE, RootfsStep, Skip, SkipReason, Skipped, TMPFS_MIN_SIZE,
    TmpfsOptions,
};
use crate::cgmodel::{self, Model};
use crate::config::ContainerConfig;
use crate::facts::{HOST_JOURNAL_ROOT, HostFacts};
use crate::machine::{self, Machine, Machined};
use crate::machine_id::MachineId;

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// Builds the prestart plan (see the module docs).
///
/// # Errors
/// [`PlanError`] when the cgroup facts make a safe setup impossible.
pub fn prestart(
    config: &ContainerConfig,
    facts: &HostFacts,
    id: &str,
    machine_id: &MachineId,
) -> Result<Plan, PlanError> {
    if facts.host_machine_id.as_deref() == Some(machine_id.as_str()) {
        return Err(PlanError::HostMachineId);
    }
    let mut plan = Plan {
        private_tmpfs: config.tmpfs_destinations.clone(),
        ..Plan::default()
    };

    // SELinux: label what the hook mounts and makes for the container.
    let context = match (&config.mount_label, facts.selinux) {
        (Some(label), true) => Some(label.clone()),
        (Some(_), false) => {
            plan.skipped.push(Skip {
                step: Skipped::SelinuxContext,
                reason: SkipReason::SelinuxDisabled,
            });
            None
        }
        (None, _) => None,
    };

    // tmpfs on /run, /run/lock and /tmp.
    let tmp_size = config
        .memory_limit
        .or(facts.cgroup_memory_limit)
        .map(|l| (l / 2).max(TMPFS_MIN_SIZE));
    for (dest, mode, size) in [
        ("/run", 0o755, Some(RUN_TMPFS_SIZE)),
        ("/run/lock", 0o755, Some(RUN_TMPFS_SIZE)),
        ("/tmp", 0o1777, tmp_size),
    ] {
        if config.mounts(Path::new(dest)) {
            plan.skipped.push(Skip {
                step: Skipped::Tmpfs(p(dest)),
                reason: SkipReason::ConfigMounts(p(dest)),
            });
        } else {
            plan.container.push(ContainerStep::Tmpfs {
                dest: p(dest),
                options: TmpfsOptions {
                    mode,
                    size,
                    owner: config.root_owner,
                    context: context.clone(),
                },
                copy_up: true,
            });
        }
    }

    // The journal.
    let host_journal = facts.journal_root.join(machine_id.as_str());
    let in_var = Path::new(HOST_JOURNAL_ROOT).join(machine_id.as_str());
    let in_run = Path::new("/run/log/journal").join(machine_id.as_str());
    plan.host.push(HostStep::HostDir {
        path: host_journal.clone(),
        mode: 0o755,
        owner: config.root_owner,
        label: context.clone(),
        optional: true,
        marker: id.to_string(),
    });
    let (dest, fallback) = if config.readonly {
        (in_run, None)
    } else {
        (in_var, Some(in_run))
    };
    plan.bind(HostSource::Path(host_journal), dest, false, fallback);

    // cgroups.
    plan_cgroups(config, facts, id, machine_id, context.as_deref(), &mut plan)?;

    // /etc/machine-id.
    if config.mounts(Path::new("/etc/machine-id")) {
        plan.skipped.push(Skip {
            step: Skipped::MachineId,
            reason: SkipReason::ConfigMounts(p("/etc/machine-id")),
        });
    } else {
        let contents = format!("{machine_id}\n");
        if config.readonly {
            plan.container.push(ContainerStep::BindContents {
                dest: p("/etc/machine-id"),
                contents,
            });
        } else {
            plan.container.push(ContainerStep::WriteFile {
                dest: p("/etc/machine-id"),
                contents,
                mode: 0o444,
                owner: config.root_owner,
            });
        }
    }

    // systemd-machined, last of the host steps.
    match machine_for(config, facts.machined, machine_id) {
        Ok(m) => plan.host.push(HostStep::RegisterMachine(m)),
        Err(skip) => plan.skipped.push(skip),
    }
    Ok(plan)
}

/// The machine to register or terminate, or why there is none.
fn machine_for(
    config: &ContainerConfig,
    machined: Machined,
    machine_id: &MachineId,
) -> Result<Machine, Skip> {
    let skip = |reason| Skip {
        step: Skipped::Machine,
        reason,
    };
    if machined != Machined::Possible {
        return Err(skip(SkipReason::Machined(machined)));
    }
    machine::for_container(config, machine_id).map_err(|n| skip(SkipReason::NotRegistered(n)))
}

fn plan_cgroups(
    config: &ContainerConfig,
    facts: &HostFacts,
    id: &str,
    machine_id: &MachineId,
    context: Option<&str>,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let choice = cgmodel::choose(facts.layout, facts.image_systemd);
    plan.cgroup_model = Some(choice);
    match choice.model {
        Model::HostCgroup2 => {
            let Some(cgroup) = &facts.cgroups.unified else {
                plan.skipped.push(Skip {
                    step: Skipped::Cgroups,
                    reason: SkipReason::NoCgroup("cgroup2 (0::)"),
                });
                return Ok(());
            };
            let Some(hierarchy) = &facts.unified_mount else {
                return Err(PlanError::NoHierarchy("cgroup2"));
            };
            // The hierarchy itself at /sys/fs/cgroup, over whatever the
            // runtime mounted there (on hybrid hosts a tmpfs of v1
            // hierarchies): no tmpfs of the hook's.
            return bind_own_cgroup(config, hierarchy, cgroup, p("/sys/fs/cgroup"), false, plan);
        }
        Model::PrivateCgroup2 => {
            return private_cgroup2(config, facts, &cgroup2_name(id, machine_id), plan);
        }
        Model::V1 => {}
    }
    let Some(cgroup) = &facts.cgroups.systemd else {
        plan.skipped.push(Skip {
            step: Skipped::Cgroups,
            reason: SkipReason::NoCgroup("name=systemd"),
        });
        return Ok(());
    };
    let Some(hierarchy) = &facts.systemd_mount else {
        return Err(PlanError::NoHierarchy("name=systemd"));
    };
    let own_tmpfs = !config.mounts(Path::new("/sys/fs/cgroup"));
    if own_tmpfs {
        plan.container.push(ContainerStep::Tmpfs {
            dest: p("/sys/fs/cgroup"),
            options: TmpfsOptions {
                mode: 0o755,
                size: Some(CGROUP_TMPFS_SIZE),
                owner: None,
                context: context.map(str::to_string),
            },
            copy_up: false,
        });
        plan.container.push(ContainerStep::Mkdir {
            dest: p("/sys/fs/cgroup/systemd"),
            mode: 0o755,
        });
    } else {
        plan.skipped.push(Skip {
            step: Skipped::Tmpfs(p("/sys/fs/cgroup")),
            reason: SkipReason::ConfigMounts(p("/sys/fs/cgroup")),
        });
    }
    bind_own_cgroup(
        config,
        hierarchy,
        cgroup,
        p("/sys/fs/cgroup/systemd"),
        true,
        plan,
    )?;
    if own_tmpfs {
        plan.container.push(ContainerStep::RemountReadOnly {
            dest: p("/sys/fs/cgroup"),
        });
    }
    Ok(())
}

/// The name of the cgroup2 cgroup the hook makes for the container `id` on
/// a legacy host: `oci-systemd-hook-<id>` when the id is a plain name
/// (letters, digits, `_.-`, at most 128 bytes, as podman, CRI-O and runc
/// ids are), else `oci-systemd-hook-<machine-id>`.
pub fn cgroup2_name(id: &str, machine_id: &MachineId) -> String {
    let plain = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    format!(
        "oci-systemd-hook-{}",
        if plain { id } else { machine_id.as_str() }
    )
}

/// [`Model::PrivateCgroup2`]: the container's processes (those of its v1
/// `name=systemd` cgroup) move into the cgroup `name` of a cgroup2 the hook
/// mounts detached; that hierarchy is bound read-only at `/sys/fs/cgroup`
/// and `name` read-write at `/sys/fs/cgroup/<name>`, the path
/// `/proc/1/cgroup` shows inside with either cgroupns (a private cgroupns
/// was made while the process was in the cgroup2 root).
fn private_cgroup2(
    config: &ContainerConfig,
    facts: &HostFacts,
    name: &str,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let Some(cgroup) = &facts.cgroups.systemd else {
        plan.skipped.push(Skip {
            step: Skipped::Cgroups,
            reason: SkipReason::NoCgroup("name=systemd"),
        });
        return Ok(());
    };
    let Some(hierarchy) = &facts.systemd_mount else {
        return Err(PlanError::NoHierarchy("name=systemd"));
    };
    let cleaned = crate::config::clean(cgroup);
    let rel = cleaned.strip_prefix("/").unwrap_or(&cleaned);
    if rel.as_os_str().is_empty() {
        return Err(PlanError::CgroupIsRoot);
    }
    plan.host.push(HostStep::MakeCgroup2 {
        name: name.to_string(),
        members: HostSource::Beneath {
            base: hierarchy.to_path_buf(),
            path: rel.to_path_buf(),
        },
        owner: config.root_owner,
    });
    plan.bind(HostSource::HookCgroup2, p("/sys/fs/cgroup"), true, None);
    plan.container.push(ContainerStep::BindWritable {
        dest: Path::new("/sys/fs/cgroup").join(name),
    });
    Ok(())
}

/// Makes the container's own cgroup (`cgroup`, as `/proc/<pid>/cgroup` shows
/// it from the host) writable at the path systemd inside will look for it,
/// under `at` (where the hierarchy is mounted inside):
/// - private cgroupns: systemd sees itself at `/`, so the own cgroup is bound
///   at `at`;
/// - host cgroupns: systemd sees the host path, so the hierarchy is bound
///   read-only at `at` and the own cgroup read-write at `at/<cgroup>`;
///   v1's `release_agent` (only at a v1 hierarchy root) is masked with
///   `/dev/null`.
fn bind_own_cgroup(
    config: &ContainerConfig,
    hierarchy: &Path,
    cgroup: &Path,
    at: PathBuf,
    v1: bool,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    // The kernel never writes `..` into /proc/<pid>/cgroup; clean anyway so
    // that no spelling of the root passes for the container's own cgroup.
    let cleaned = crate::config::clean(cgroup);
    let rel = cleaned.strip_prefix("/").unwrap_or(&cleaned);
    if rel.as_os_str().is_empty() {
        return Err(PlanError::CgroupIsRoot);
    }
    let own = HostSource::Beneath {
        base: hierarchy.to_path_buf(),
        path: rel.to_path_buf(),
    };
    if let Some(owner) = config.root_owner {
        // The files systemd writes in its own cgroup (v1: the name=systemd
        // hierarchy; v2: the delegation set of the kernel's cgroup-v2 docs).
        let files: &[&str] = if v1 {
            &[
                "cgroup.procs",
                "tasks",
                "cgroup.clone_children",
                "notify_on_release",
            ]
        } else {
            &["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"]
        };
        plan.host.push(HostStep::DelegateCgroup {
            source: own.clone(),
            files: files.iter().map(|f| f.to_string()).collect(),
            owner,
        });
    }
    if config.cgroupns {
        plan.bind(own, at, false, None);
        return Ok(());
    }
    plan.bind(
        HostSource::Path(hierarchy.to_path_buf()),
        at.clone(),
        true,
        None,
    );
    plan.bind(own, at.join(rel), false, None);
    if v1 {
        plan.bind(
            HostSource::Path(p("/dev/null")),
            at.join("release_agent"),
            true,
            None,
        );
    }
    Ok(())
}

/// Builds the poststop plan for the container `id`: remove the host journal
/// directory if a killed prestart left it; on a legacy host (`legacy_host`)
/// remove the cgroup2 cgroup prestart may have made
/// ([`cgroup2_name`]); empty `/etc/machine-id` when
/// prestart wrote it into the image (not for read-only images, not when
/// config.json mounts it, not when it is `host_machine_id`, the host's own,
/// which prestart refuses to write); terminate the machine in
/// systemd-machined when `machined` allows it and the container did not opt
/// out.
pub fn poststop(
    config: &ContainerConfig,
    id: &str,
    machine_id: &MachineId,
    host_machine_id: Option<&str>,
    legacy_host: bool,
    machined: Machined,
) -> PoststopPlan {
    let mut plan = PoststopPlan::default();
    plan.host.push(PoststopHostStep::RemoveUnfinishedHostDir {
        path: Path::new(HOST_JOURNAL_ROOT).join(machine_id.as_str()),
        marker: id.to_string(),
    });
    match machine_for(config, machined, machine_id) {
        Ok(m) => plan.host.push(PoststopHostStep::TerminateMachine(m)),
        Err(skip) => plan.skipped.push(skip),
    }
    if legacy_host {
        plan.host.push(PoststopHostStep::RemoveCgroup2 {
            name: cgroup2_name(id, machine_id),
        });
    }
    if config.readonly {
        plan.skipped.push(Skip {
            step: Skipped::MachineId,
            reason: SkipReason::ReadOnlyImage,
        });
    } else if config.mounts(Path::new("/etc/machine-id")) {
        plan.skipped.push(Skip {
            step: Skipped::MachineId,
            reason: SkipReason::ConfigMounts(p("/etc/machine-id")),
        });
    } else if host_machine_id == Some(machine_id.as_str()) {
        plan.skipped.push(Skip {
            step: Skipped::MachineId,
            reason: SkipReason::HostMachineId,
        });
    } else {
        plan.rootfs.push(RootfsStep::ClearFile {
            dest: p("/etc/machine-id"),
            expected: machine_id.to_string(),
        });
    }
    plan
}
