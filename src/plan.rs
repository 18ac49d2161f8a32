//! The plan: an ordered list of plain actions, built without touching the
//! system.
//!
//! What goes into a prestart plan, and why:
//! - tmpfs on `/run`, `/run/lock` (0755, nosuid, nodev, 64 MiB) and `/tmp`
//!   (1777, nosuid, nodev, half the memory limit when there is one): systemd
//!   cannot mount them itself without `CAP_SYS_ADMIN` (CONTAINER_INTERFACE.md:
//!   "/run and /tmp should be tmpfs"); skipped when config.json mounts the same
//!   destination. Image content is copied in (podman's `tmpcopyup`), mounts
//!   below them stay visible.
//! - the journal: `/var/log/journal/<machine-id>` on the host, bound at the
//!   same path in the container (the original hook's behaviour), so
//!   `journalctl -D /var/log/journal/<machine-id>` on the host reads it.
//! - cgroups (hybrid and legacy v1): systemd needs the `name=systemd`
//!   hierarchy at `/sys/fs/cgroup/systemd` with its own cgroup writable. With
//!   the host's cgroup namespace the hierarchy is bound read-only and the
//!   container's cgroup read-write at its host path (what `/proc/1/cgroup`
//!   shows inside); with a private cgroupns the container's cgroup itself is
//!   bound at `/sys/fs/cgroup/systemd` (what `/proc/1/cgroup` shows: `/`).
//!   `release_agent` is masked with `/dev/null` as podman does.
//! - cgroups (unified v2): the same rule with the cgroup2 hierarchy at
//!   `/sys/fs/cgroup` itself (systemd's CONTAINER_INTERFACE.md: the container's
//!   own cgroup writable, its parents not). With the host cgroupns
//!   `/proc/1/cgroup` inside shows the full host path, so the hierarchy is
//!   bound read-only and the own cgroup read-write at that path; with a private
//!   cgroupns the own cgroup is bound at `/sys/fs/cgroup`. The bind keeps the
//!   host superblock's options (`nsdelegate`).
//! - `/etc/machine-id` holds the machine-id (systemd's `machine-id(5)`); with
//!   `root.readonly` it is written to `/run/machine-id` and bound read-only
//!   over `/etc/machine-id`, as systemd itself does for a read-only `/etc`.
//!
//! A poststop plan removes the host journal directory when a prestart that
//! was killed left it (see [`Action::RemoveUnfinishedHostDir`]) and empties
//! `/etc/machine-id` again when it still holds the id.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cgroup::{ContainerCgroups, Layout};
use crate::config::{ContainerConfig, Owner};
use crate::machine_id::MachineId;

/// Size of the `/run` and `/run/lock` tmpfs, in bytes (64 MiB).
pub const RUN_TMPFS_SIZE: u64 = 64 * 1024 * 1024;
/// Size of the read-only tmpfs the hook puts on `/sys/fs/cgroup` when
/// config.json mounts nothing there, in bytes (it holds only mount points).
pub const CGROUP_TMPFS_SIZE: u64 = 1024 * 1024;
/// Smallest `size=` the hook gives a tmpfs, in bytes: `size=0` would mean
/// "no limit" to the kernel.
pub const TMPFS_MIN_SIZE: u64 = 4096;
/// Where the host keeps journals.
pub const HOST_JOURNAL_ROOT: &str = "/var/log/journal";

/// Facts about the host and the running container, read once before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The host's cgroup layout.
    pub layout: Layout,
    /// The container's cgroups, from `/proc/<pid>/cgroup`.
    pub cgroups: ContainerCgroups,
    /// Host mount point of the v1 `name=systemd` hierarchy.
    pub systemd_mount: Option<PathBuf>,
    /// Host mount point of the cgroup2 hierarchy.
    pub unified_mount: Option<PathBuf>,
    /// The container's memory limit read from its cgroup, in bytes.
    pub cgroup_memory_limit: Option<u64>,
    /// The host's journal directory root (normally `/var/log/journal`).
    pub journal_root: PathBuf,
    /// Whether SELinux is enabled on the host (selinuxfs mounted); without
    /// it a `context=` option would make the mount fail.
    pub selinux: bool,
    /// The host's own machine-id (`/etc/machine-id`), when readable.
    pub host_machine_id: Option<String>,
}

/// Options of a tmpfs the hook mounts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TmpfsOptions {
    /// Mode of the tmpfs root, e.g. `0o1777`.
    pub mode: u32,
    /// `size=` in bytes; `None` leaves the kernel default (half of RAM).
    pub size: Option<u64>,
    /// Owner of the tmpfs root (`uid=`, `gid=`): the host ids container root
    /// maps to, with a user namespace.
    pub owner: Option<Owner>,
    /// SELinux `context=` (`linux.mountLabel`), when SELinux is enabled.
    pub context: Option<String>,
}

impl TmpfsOptions {
    /// The options as `fsconfig(FSCONFIG_SET_STRING)` key/value pairs, in
    /// order. Each value is passed whole, so an MCS label's commas need no
    /// quoting here.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("mode", format!("{:o}", self.mode))];
        if let Some(size) = self.size {
            v.push(("size", size.to_string()));
        }
        if let Some(o) = self.owner {
            v.push(("uid", o.uid.to_string()));
            v.push(("gid", o.gid.to_string()));
        }
        if let Some(c) = &self.context {
            v.push(("context", c.clone()));
        }
        v
    }

    /// The same options as a mount(2) data string, the way `mount -o` and
    /// `/proc/self/mountinfo` spell them: comma-separated, with `context`
    /// quoted because MCS labels contain commas
    /// (`mode=755,size=67108864,context="system_u:object_r:container_file_t:s0:c1,c2"`).
    pub fn mount_data(&self) -> String {
        self.pairs()
            .into_iter()
            .map(|(k, v)| {
                if k == "context" {
                    format!("{k}=\"{v}\"")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A host object to bind into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSource {
    /// A trusted host path (the journal dir the hook made, `/dev/null`, a
    /// cgroup hierarchy's mount point).
    Path(PathBuf),
    /// `path` resolved beneath the trusted directory `base` (a cgroup path
    /// from `/proc/<pid>/cgroup` under its hierarchy): never escapes `base`.
    Beneath { base: PathBuf, path: PathBuf },
}

impl fmt::Display for HostSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSource::Path(p) => write!(f, "{}", p.display()),
            HostSource::Beneath { base, path } => {
                write!(f, "{} beneath {}", path.display(), base.display())
            }
        }
    }
}

/// One step. Container paths (`dest`) are absolute paths inside the rootfs
/// and are always resolved inside it. Nothing is created or written on a file
/// system other than the image's own and the tmpfs mounts the hook or
/// config.json made (see [`Plan::private_tmpfs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a directory on the host (mode `mode`; its parent must exist),
    /// owned by `owner` and labelled `label` (SELinux) when given. If
    /// prestart fails later, what this created is removed again. When
    /// `optional` and the hook may not create it (rootless, no parent, an
    /// existing directory of another container), the step and the binds of
    /// that directory are skipped with a warning.
    HostDir {
        path: PathBuf,
        mode: u32,
        owner: Option<Owner>,
        label: Option<String>,
        optional: bool,
        /// The container id, recorded on the directory (xattr
        /// `trusted.oci-systemd-hook.id`, which only host root can set): an
        /// existing directory is reused only when it carries this id, so an
        /// image cannot choose another container's or the host's journal.
        marker: String,
    },
    /// Give the container's own cgroup (a directory beneath a hierarchy) and
    /// the `files` in it that systemd writes to `owner`: cgroup delegation
    /// to the user namespace's root (systemd's CONTAINER_INTERFACE.md). Done
    /// on the host, only on that directory and those files.
    DelegateCgroup {
        source: HostSource,
        files: Vec<String>,
        owner: Owner,
    },
    /// Mount a new tmpfs (nosuid, nodev) at `dest`, created if missing;
    /// copy the image's content of `dest` into it when `copy_up`; mounts
    /// below `dest` are moved into the new tmpfs.
    Tmpfs {
        dest: PathBuf,
        options: TmpfsOptions,
        copy_up: bool,
    },
    /// Create a directory (and missing parents) inside the rootfs.
    Mkdir { dest: PathBuf, mode: u32 },
    /// Bind a host object at `dest` (nosuid, nodev, noexec), read-only when
    /// `readonly`. When `dest` cannot be created in the image (read-only, or
    /// a file in the way), `fallback` is used instead.
    Bind {
        source: HostSource,
        dest: PathBuf,
        readonly: bool,
        fallback: Option<PathBuf>,
    },
    /// Bind a file holding `contents` read-only over the existing file
    /// `dest`. The file lives on a small private tmpfs that is never attached
    /// anywhere else, so nothing is written into the image or shows up in
    /// the container but at `dest` (read-only images' machine-id).
    BindContents { dest: PathBuf, contents: String },
    /// Make the mount at `dest` read-only (nosuid, nodev, noexec).
    RemountReadOnly { dest: PathBuf },
    /// Write `contents` to the regular file `dest` (created with `mode` and
    /// given to `owner` when given; truncated, owner unchanged, when it
    /// exists).
    WriteFile {
        dest: PathBuf,
        contents: String,
        mode: u32,
        owner: Option<Owner>,
    },
    /// Truncate the regular file `dest` when its content (trimmed) is `expected`.
    ClearFile { dest: PathBuf, expected: String },
    /// Poststop, on the host: remove the directory `path` (a [`Action::HostDir`]
    /// of prestart) when a prestart that was killed (a hooks.d `timeout`,
    /// SIGKILL) left it: it carries `marker`, this container's id, but not
    /// the mark a finished prestart sets last, and it is empty. Anything else
    /// there is left alone: another container's directory, or the journal of
    /// a container that started.
    RemoveUnfinishedHostDir { path: PathBuf, marker: String },
}

impl Action {
    /// A one-word name of the action's kind, for logs (journal field
    /// `OCI_ACTION`).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::HostDir { .. } => "host-dir",
            Action::DelegateCgroup { .. } => "delegate-cgroup",
            Action::Tmpfs { .. } => "tmpfs",
            Action::Mkdir { .. } => "mkdir",
            Action::Bind { .. } => "bind",
            Action::BindContents { .. } => "bind-contents",
            Action::RemountReadOnly { .. } => "remount-ro",
            Action::WriteFile { .. } => "write",
            Action::ClearFile { .. } => "clear",
            Action::RemoveUnfinishedHostDir { .. } => "host-cleanup",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::DelegateCgroup {
                source,
                files,
                owner,
            } => write!(
                f,
                "chown {source} and its {} to {}:{}",
                files.join(", "),
                owner.uid,
                owner.gid
            ),
            Action::HostDir {
                path,
                mode,
                owner,
                label,
                ..
            } => {
                write!(f, "mkdir on host {} mode {mode:o}", path.display())?;
                if let Some(o) = owner {
                    write!(f, " owner {}:{}", o.uid, o.gid)?;
                }
                if let Some(l) = label {
                    write!(f, " label {l}")?;
                }
                Ok(())
            }
            Action::Tmpfs {
                dest,
                options,
                copy_up,
            } => {
                write!(
                    f,
                    "mount tmpfs on {} mode {:o}",
                    dest.display(),
                    options.mode
                )?;
                if let Some(s) = options.size {
                    write!(f, " size {s}")?;
                }
                if let Some(o) = options.owner {
                    write!(f, " uid {} gid {}", o.uid, o.gid)?;
                }
                if let Some(c) = &options.context {
                    write!(f, " context {c}")?;
                }
                if *copy_up {
                    write!(f, " with tmpcopyup")?;
                }
                Ok(())
            }
            Action::Mkdir { dest, mode } => write!(f, "mkdir {} mode {mode:o}", dest.display()),
            Action::Bind {
                source,
                dest,
                readonly,
                fallback,
            } => {
                write!(
                    f,
                    "bind {source} on {} {}",
                    dest.display(),
                    if *readonly { "ro" } else { "rw" }
                )?;
                if let Some(fb) = fallback {
                    write!(f, " (else on {})", fb.display())?;
                }
                Ok(())
            }
            Action::BindContents { dest, .. } => {
                write!(f, "bind a private read-only file on {}", dest.display())
            }
            Action::RemountReadOnly { dest } => write!(f, "remount {} read-only", dest.display()),
            Action::WriteFile { dest, mode, .. } => {
                write!(f, "write {} mode {mode:o}", dest.display())
            }
            Action::ClearFile { dest, .. } => {
                write!(f, "empty {} if it holds the machine-id", dest.display())
            }
            Action::RemoveUnfinishedHostDir { path, .. } => write!(
                f,
                "rmdir on host {} if an unfinished prestart of this container left it empty",
                path.display()
            ),
        }
    }
}

/// An ordered list of actions plus the steps left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The actions, in the order they must run.
    pub actions: Vec<Action>,
    /// Container paths where config.json mounts a new tmpfs (the runtime's,
    /// private to the container): besides the image's own file system and
    /// the hook's tmpfs mounts, the only places the hook may create or write
    /// in.
    pub private_tmpfs: Vec<PathBuf>,
    /// Human-readable reasons for each step that was left out.
    pub skipped: Vec<String>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.actions {
            writeln!(f, "{a}")?;
        }
        for s in &self.skipped {
            writeln!(f, "skip: {s}")?;
        }
        Ok(())
    }
}

/// Why no prestart plan can be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The container's cgroup is the hierarchy's root: binding it writable
    /// would hand the whole host hierarchy to the container.
    #[error(
        "the container's cgroup is the hierarchy root; refusing to make the whole hierarchy writable"
    )]
    CgroupIsRoot,
    /// The container's machine-id is the host's own: its journal directory
    /// would be the host's.
    #[error("the container's machine-id is the host's own /etc/machine-id; refusing")]
    HostMachineId,
    /// `/proc/<pid>/cgroup` names a hierarchy (`name=systemd` or `cgroup2`)
    /// that the host's mount table does not have.
    #[error("the container has a {0} cgroup but the host has no {0} hierarchy mounted")]
    NoHierarchy(&'static str),
}

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
            plan.skipped
                .push("SELinux context: SELinux is disabled on the host".into());
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
            plan.skipped
                .push(format!("tmpfs on {dest}: config.json mounts {dest}"));
        } else {
            plan.actions.push(Action::Tmpfs {
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
    plan.actions.push(Action::HostDir {
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
    plan.actions.push(Action::Bind {
        source: HostSource::Path(host_journal),
        dest,
        readonly: false,
        fallback,
    });

    // cgroups.
    plan_cgroups(config, facts, context.as_deref(), &mut plan)?;

    // /etc/machine-id.
    if config.mounts(Path::new("/etc/machine-id")) {
        plan.skipped
            .push("/etc/machine-id: config.json mounts it".into());
    } else {
        let contents = format!("{machine_id}\n");
        if config.readonly {
            plan.actions.push(Action::BindContents {
                dest: p("/etc/machine-id"),
                contents,
            });
        } else {
            plan.actions.push(Action::WriteFile {
                dest: p("/etc/machine-id"),
                contents,
                mode: 0o444,
                owner: config.root_owner,
            });
        }
    }
    Ok(plan)
}

fn plan_cgroups(
    config: &ContainerConfig,
    facts: &HostFacts,
    context: Option<&str>,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    if facts.layout == Layout::Unified {
        let Some(cgroup) = &facts.cgroups.unified else {
            plan.skipped
                .push("cgroups: the container has no cgroup2 (0::) cgroup".into());
            return Ok(());
        };
        let Some(hierarchy) = &facts.unified_mount else {
            return Err(PlanError::NoHierarchy("cgroup2"));
        };
        // /sys/fs/cgroup itself is the cgroup2 mount point: no tmpfs.
        return bind_own_cgroup(config, hierarchy, cgroup, p("/sys/fs/cgroup"), false, plan);
    }
    let Some(cgroup) = &facts.cgroups.systemd else {
        plan.skipped
            .push("cgroups: the container has no name=systemd cgroup".into());
        return Ok(());
    };
    let Some(hierarchy) = &facts.systemd_mount else {
        return Err(PlanError::NoHierarchy("name=systemd"));
    };
    let own_tmpfs = !config.mounts(Path::new("/sys/fs/cgroup"));
    if own_tmpfs {
        plan.actions.push(Action::Tmpfs {
            dest: p("/sys/fs/cgroup"),
            options: TmpfsOptions {
                mode: 0o755,
                size: Some(CGROUP_TMPFS_SIZE),
                owner: None,
                context: context.map(str::to_string),
            },
            copy_up: false,
        });
        plan.actions.push(Action::Mkdir {
            dest: p("/sys/fs/cgroup/systemd"),
            mode: 0o755,
        });
    } else {
        plan.skipped
            .push("tmpfs on /sys/fs/cgroup: config.json mounts /sys/fs/cgroup".into());
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
        plan.actions.push(Action::RemountReadOnly {
            dest: p("/sys/fs/cgroup"),
        });
    }
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
        plan.actions.push(Action::DelegateCgroup {
            source: own.clone(),
            files: files.iter().map(|f| f.to_string()).collect(),
            owner,
        });
    }
    if config.cgroupns {
        plan.actions.push(Action::Bind {
            source: own,
            dest: at,
            readonly: false,
            fallback: None,
        });
        return Ok(());
    }
    plan.actions.push(Action::Bind {
        source: HostSource::Path(hierarchy.to_path_buf()),
        dest: at.clone(),
        readonly: true,
        fallback: None,
    });
    plan.actions.push(Action::Bind {
        source: own,
        dest: at.join(rel),
        readonly: false,
        fallback: None,
    });
    if v1 {
        plan.actions.push(Action::Bind {
            source: HostSource::Path(p("/dev/null")),
            dest: at.join("release_agent"),
            readonly: true,
            fallback: None,
        });
    }
    Ok(())
}

/// Builds the poststop plan for the container `id`: remove the host journal
/// directory if a killed prestart left it; empty `/etc/machine-id` when
/// prestart wrote it into the image (not for read-only images, not when
/// config.json mounts it).
pub fn poststop(config: &ContainerConfig, id: &str, machine_id: &MachineId) -> Plan {
    let mut plan = Plan::default();
    plan.actions.push(Action::RemoveUnfinishedHostDir {
        path: Path::new(HOST_JOURNAL_ROOT).join(machine_id.as_str()),
        marker: id.to_string(),
    });
    if config.readonly {
        plan.skipped
            .push("/etc/machine-id: read-only image, nothing was written".into());
    } else if config.mounts(Path::new("/etc/machine-id")) {
        plan.skipped
            .push("/etc/machine-id: config.json mounts it".into());
    } else {
        plan.actions.push(Action::ClearFile {
            dest: p("/etc/machine-id"),
            expected: machine_id.to_string(),
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::clean;

    const CG: &str =
        "/libpod_parent/libpod-4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

    const ID: &str = "4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

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
        }
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

    fn dests(plan: &Plan) -> Vec<String> {
        plan.actions.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn podman_hybrid_host_cgroupns() {
        let plan = prestart(&podman_config(), &hybrid(), ID, &mid()).unwrap();
        let d = dests(&plan);
        let id = mid();
        assert_eq!(
            d,
            vec![
                "mount tmpfs on /run mode 755 size 67108864 with tmpcopyup".to_string(),
                "mount tmpfs on /run/lock mode 755 size 67108864 with tmpcopyup".into(),
                "mount tmpfs on /tmp mode 1777 with tmpcopyup".into(),
                format!("mkdir on host /var/log/journal/{id} mode 755"),
                format!(
                    "bind /var/log/journal/{id} on /var/log/journal/{id} rw (else on /run/log/journal/{id})"
                ),
                "bind /sys/fs/cgroup/systemd on /sys/fs/cgroup/systemd ro".into(),
                format!(
                    "bind {} beneath /sys/fs/cgroup/systemd on /sys/fs/cgroup/systemd{CG} rw",
                    &CG[1..]
                ),
                "bind /dev/null on /sys/fs/cgroup/systemd/release_agent ro".into(),
                "write /etc/machine-id mode 444".into(),
            ]
        );
        assert_eq!(
            plan.skipped,
            vec!["tmpfs on /sys/fs/cgroup: config.json mounts /sys/fs/cgroup".to_string()]
        );
    }

    #[test]
    fn private_cgroupns_binds_own_cgroup_at_the_hierarchy_root() {
        let mut c = podman_config();
        c.cgroupns = true;
        let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
        let binds: Vec<_> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Bind { dest, .. } if dest.starts_with("/sys")))
            .collect();
        assert_eq!(
            binds,
            vec![&Action::Bind {
                source: HostSource::Beneath {
                    base: p("/sys/fs/cgroup/systemd"),
                    path: p(&CG[1..])
                },
                dest: p("/sys/fs/cgroup/systemd"),
                readonly: false,
                fallback: None,
            }]
        );
    }

    #[test]
    fn user_mounts_of_run_tmp_and_machine_id_are_respected() {
        let mut c = podman_config();
        for d in ["/run/", "/tmp", "/etc/machine-id"] {
            c.mount_destinations.push(clean(Path::new(d)));
        }
        let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
        let d = dests(&plan);
        assert!(
            !d.iter()
                .any(|a| a.contains("tmpfs on /run ") || a.contains("tmpfs on /tmp")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|a| a.contains("tmpfs on /run/lock")),
            "/run/lock still gets its tmpfs: {d:?}"
        );
        assert!(!d.iter().any(|a| a.contains("machine-id")), "{d:?}");
        assert_eq!(plan.skipped.len(), 4);
    }

    #[test]
    fn tmp_size_is_half_the_memory_limit_config_first() {
        let mut c = podman_config();
        let mut f = hybrid();
        f.cgroup_memory_limit = Some(1 << 30);
        let size = |plan: &Plan| {
            plan.actions.iter().find_map(|a| match a {
                Action::Tmpfs { dest, options, .. } if dest == Path::new("/tmp") => {
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
        let d = dests(&plan);
        let tmpfs = d
            .iter()
            .position(|a| a.starts_with("mount tmpfs on /sys/fs/cgroup"))
            .unwrap();
        let mkdir = d
            .iter()
            .position(|a| a == "mkdir /sys/fs/cgroup/systemd mode 755")
            .unwrap();
        let bind = d
            .iter()
            .position(|a| a.starts_with("bind /sys/fs/cgroup/systemd on"))
            .unwrap();
        let ro = d
            .iter()
            .position(|a| a == "remount /sys/fs/cgroup read-only")
            .unwrap();
        assert!(tmpfs < mkdir && mkdir < bind && bind < ro, "{d:?}");
    }

    #[test]
    fn readonly_image_writes_nothing_into_the_image() {
        let mut c = podman_config();
        c.readonly = true;
        let plan = prestart(&c, &hybrid(), ID, &mid()).unwrap();
        for a in &plan.actions {
            match a {
                Action::WriteFile { .. } => panic!("{a}: a write in a read-only image"),
                Action::Bind { dest, fallback, .. }
                    if dest.starts_with("/run/log") || dest.starts_with("/var") =>
                {
                    assert!(dest.starts_with("/run/log/journal"), "{a}");
                    assert_eq!(fallback, &None);
                }
                _ => {}
            }
        }
        assert!(plan.actions.contains(&Action::BindContents {
            dest: p("/etc/machine-id"),
            contents: format!("{}\n", mid()),
        }));
        assert!(
            !poststop(&c, ID, &mid())
                .actions
                .iter()
                .any(|a| matches!(a, Action::ClearFile { .. })),
            "nothing written into a read-only image"
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
        }
    }

    fn cgroup_binds(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter(|a| matches!(a, Action::Bind { dest, .. } if dest.starts_with("/sys")))
            .map(|a| a.to_string())
            .collect()
    }

    #[test]
    fn unified_host_cgroupns_binds_hierarchy_ro_and_own_cgroup_rw() {
        for fixture in ["unified-v2-systemd-host.txt", "unified-v2-rootless.txt"] {
            let f = unified(fixture);
            let own = f.cgroups.unified.clone().unwrap();
            let rel = own.strip_prefix("/").unwrap().display().to_string();
            let plan = prestart(&podman_config(), &f, ID, &mid()).unwrap();
            assert_eq!(
                cgroup_binds(&plan),
                vec![
                    "bind /sys/fs/cgroup on /sys/fs/cgroup ro".to_string(),
                    format!(
                        "bind {rel} beneath /sys/fs/cgroup on /sys/fs/cgroup{} rw",
                        own.display()
                    ),
                ],
                "{fixture}"
            );
            assert!(
                !plan
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Tmpfs { dest, .. } if dest.starts_with("/sys")))
            );
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
            vec![format!(
                "bind {} beneath /sys/fs/cgroup on /sys/fs/cgroup rw",
                f.cgroups
                    .unified
                    .unwrap()
                    .strip_prefix("/")
                    .unwrap()
                    .display()
            )]
        );
    }

    #[test]
    fn missing_cgroup_lines_skip_cgroup_setup() {
        let mut f = unified("unified-v2-systemd-host.txt");
        f.cgroups.unified = None;
        let plan = prestart(&podman_config(), &f, ID, &mid()).unwrap();
        assert!(cgroup_binds(&plan).is_empty());
        let mut f = hybrid();
        f.cgroups.systemd = None;
        assert!(cgroup_binds(&prestart(&podman_config(), &f, ID, &mid()).unwrap()).is_empty());
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
        for a in &plan.actions {
            match a {
                Action::Tmpfs { options, .. } => {
                    tmpfs += 1;
                    assert_eq!(options.context, c.mount_label, "{a}");
                }
                Action::HostDir { label, .. } => assert_eq!(label, &c.mount_label),
                _ => {}
            }
        }
        assert_eq!(tmpfs, 4, "/run, /run/lock, /tmp, /sys/fs/cgroup");
        f.selinux = false;
        let plan = prestart(&c, &f, ID, &mid()).unwrap();
        assert!(plan.actions.iter().all(|a| match a {
            Action::Tmpfs { options, .. } => options.context.is_none(),
            Action::HostDir { label, .. } => label.is_none(),
            _ => true,
        }));
        assert!(
            plan.skipped
                .iter()
                .any(|s| s.contains("SELinux is disabled"))
        );
        // No label: no option, no note.
        let plan = prestart(&podman_config(), &hybrid(), ID, &mid()).unwrap();
        assert!(!plan.skipped.iter().any(|s| s.contains("SELinux")));
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
        for a in &plan.actions {
            match a {
                Action::Tmpfs { options, .. } => assert_eq!(options.owner, Some(owner), "{a}"),
                Action::HostDir {
                    owner: o, optional, ..
                } => {
                    assert_eq!(o, &Some(owner));
                    assert!(optional);
                }
                Action::WriteFile { owner: o, .. } => assert_eq!(o, &Some(owner)),
                Action::DelegateCgroup {
                    source,
                    files,
                    owner: o,
                } => {
                    delegated = true;
                    assert_eq!(o, &owner);
                    assert_eq!(
                        source,
                        &HostSource::Beneath {
                            base: p("/sys/fs/cgroup/systemd"),
                            path: p(&CG[1..])
                        }
                    );
                    assert!(
                        files.contains(&"cgroup.procs".to_string())
                            && files.contains(&"tasks".to_string())
                    );
                }
                _ => {}
            }
        }
        assert!(delegated);
        let plan = prestart(&c, &unified("unified-v2-systemd-host.txt"), ID, &mid()).unwrap();
        assert!(plan.actions.iter().any(|a| matches!(a, Action::DelegateCgroup { files, .. } if files.contains(&"cgroup.subtree_control".to_string()))));
        // Without a user namespace nothing is chowned.
        let plan = prestart(&podman_config(), &hybrid(), ID, &mid()).unwrap();
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::DelegateCgroup { .. }))
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
            plan.actions
                .iter()
                .any(|a| matches!(a, Action::Tmpfs { dest, options, .. }
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
            plan.actions
                .iter()
                .any(|a| matches!(a, Action::HostDir { marker, .. } if marker == ID))
        );
    }

    #[test]
    fn poststop_cleans_an_unfinished_journal_dir_and_empties_the_machine_id() {
        let plan = poststop(&podman_config(), ID, &mid());
        assert_eq!(
            plan.actions,
            vec![
                Action::RemoveUnfinishedHostDir {
                    path: p(&format!("/var/log/journal/{}", mid())),
                    marker: ID.to_string()
                },
                Action::ClearFile {
                    dest: p("/etc/machine-id"),
                    expected: mid().to_string()
                }
            ]
        );
        let ro = ContainerConfig {
            readonly: true,
            ..podman_config()
        };
        let plan = poststop(&ro, ID, &mid());
        assert_eq!(plan.actions.len(), 1, "{plan}");
        assert_eq!(plan.actions[0].kind(), "host-cleanup");
    }
}
