//! The plan: ordered steps, each typed by where it runs, built without touching the
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
//! - cgroups: which tree the container sees follows the host's layout and
//!   the image's systemd ([`crate::cgmodel::choose`], recorded in
//!   [`Plan::cgroup_model`]): v1, the host's cgroup2, or on a legacy host a
//!   cgroup2 the hook mounts itself for a systemd without v1 support
//!   ([`HostStep::MakeCgroup2`], [`ContainerStep::BindWritable`],
//!   [`PoststopHostStep::RemoveCgroup2`]).
//! - cgroups (the v1 tree): systemd needs the `name=systemd`
//!   hierarchy at `/sys/fs/cgroup/systemd` with its own cgroup writable. With
//!   the host's cgroup namespace the hierarchy is bound read-only and the
//!   container's cgroup read-write at its host path (what `/proc/1/cgroup`
//!   shows inside); with a private cgroupns the container's cgroup itself is
//!   bound at `/sys/fs/cgroup/systemd` (what `/proc/1/cgroup` shows: `/`).
//!   `release_agent` is masked with `/dev/null` as podman does.
//! - cgroups (the host's cgroup2 tree): the same rule with the cgroup2 hierarchy at
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
//! was killed left it (see [`PoststopHostStep::RemoveUnfinishedHostDir`]) and
//! empties `/etc/machine-id` again when it still holds the id, and
//! terminates the machine prestart registered.
//!
//! Where each step runs is in its type: [`HostStep`] and [`ContainerStep`]
//! in a [`Plan`], [`PoststopHostStep`] and [`RootfsStep`] in a
//! [`PoststopPlan`]. Adding a step means: its variant (with its docs), its
//! builder (in `build.rs`), its arm in the apply module for its place, and
//! its arm in `Display` and `kind`; the compiler finds every match.

use std::fmt;
use std::path::PathBuf;

use crate::machine::{Machined, NotRegistered};

mod build;
mod step;
#[cfg(test)]
mod tests;

pub use build::{cgroup2_name, poststop, prestart};
pub use step::{
    ContainerStep, HostSource, HostStep, ObjectId, PoststopHostStep, RootfsStep, TmpfsOptions,
};

/// Size of the `/run` and `/run/lock` tmpfs, in bytes (64 MiB).
pub const RUN_TMPFS_SIZE: u64 = 64 * 1024 * 1024;
/// Size of the read-only tmpfs the hook puts on `/sys/fs/cgroup` when
/// config.json mounts nothing there, in bytes (it holds only mount points).
pub const CGROUP_TMPFS_SIZE: u64 = 1024 * 1024;
/// Smallest `size=` the hook gives a tmpfs, in bytes: `size=0` would mean
/// "no limit" to the kernel.
pub const TMPFS_MIN_SIZE: u64 = 4096;

/// The prestart plan: what runs on the host, then what runs in the
/// container's mount namespace, each in order, plus the steps left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Steps in the hook's own (host) mount namespace, run first.
    pub host: Vec<HostStep>,
    /// Steps in the container's mount namespace, run after the host steps.
    pub container: Vec<ContainerStep>,
    /// Container paths where config.json mounts a new tmpfs (the runtime's,
    /// private to the container): besides the image's own file system and
    /// the hook's tmpfs mounts, the only places the hook may create or write
    /// in.
    pub private_tmpfs: Vec<PathBuf>,
    /// The steps left out, and why.
    pub skipped: Vec<Skip>,
    /// The cgroup model chosen for this container and why
    /// ([`crate::cgmodel::choose`]); `None` before the cgroup steps are
    /// planned.
    pub cgroup_model: Option<crate::cgmodel::Choice>,
    next_object: usize,
}

impl Plan {
    /// Adds a bind of the host object `source` at `dest`: a
    /// [`HostStep::Open`] that takes it on the host and a
    /// [`ContainerStep::Bind`] that attaches it, joined by a fresh
    /// [`ObjectId`].
    pub fn bind(
        &mut self,
        source: HostSource,
        dest: PathBuf,
        readonly: bool,
        fallback: Option<PathBuf>,
    ) {
        let object = ObjectId(self.next_object);
        self.next_object += 1;
        self.host.push(HostStep::Open {
            object,
            source: source.clone(),
        });
        self.container.push(ContainerStep::Bind {
            object,
            source,
            dest,
            readonly,
            fallback,
        });
    }

    /// Number of steps, host and container.
    pub fn len(&self) -> usize {
        self.host.len() + self.container.len()
    }

    /// Whether the plan has no step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.host {
            writeln!(f, "host: {s}")?;
        }
        for s in &self.container {
            writeln!(f, "container: {s}")?;
        }
        for s in &self.skipped {
            writeln!(f, "skip: {s}")?;
        }
        Ok(())
    }
}

/// The poststop plan: host steps, which run even when the rootfs is gone,
/// and steps on the rootfs as the host sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoststopPlan {
    /// Steps on the host.
    pub host: Vec<PoststopHostStep>,
    /// Steps on the rootfs (`root.path`); skipped when it is gone.
    pub rootfs: Vec<RootfsStep>,
    /// The steps left out, and why.
    pub skipped: Vec<Skip>,
}

/// A step left out of a plan, and why: printed by `explain` and logged at
/// debug level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// What was left out.
    pub step: Skipped,
    /// Why.
    pub reason: SkipReason,
}

/// What a [`Skip`] left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// The SELinux `context=` on what the hook mounts and makes.
    SelinuxContext,
    /// The tmpfs at this container path.
    Tmpfs(PathBuf),
    /// The cgroup setup.
    Cgroups,
    /// Writing (prestart) or emptying (poststop) `/etc/machine-id`.
    MachineId,
    /// Registering (prestart) or terminating (poststop) the machine in
    /// systemd-machined.
    Machine,
}

/// Why a [`Skip`] left its step out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// SELinux is disabled on the host, so no label is applied.
    SelinuxDisabled,
    /// config.json mounts this container path itself.
    ConfigMounts(PathBuf),
    /// The container has no cgroup in this hierarchy (`name=systemd`,
    /// `cgroup2 (0::)`); also the case when no pid was given to `explain`.
    NoCgroup(&'static str),
    /// The image is read-only: nothing was written into it.
    ReadOnlyImage,
    /// The machine-id is the host's own: prestart refuses to write it, so
    /// poststop has nothing of its own to clear (a copy of the host's `/etc`
    /// as rootfs keeps its file).
    HostMachineId,
    /// The host side rules systemd-machined out (not a systemd host,
    /// rootless, turned off in the hook's environment).
    Machined(Machined),
    /// The container opts out or names an invalid machine.
    NotRegistered(NotRegistered),
}

impl Skip {
    /// Whether the skip deserves a warning rather than a debug line: a
    /// machine name the user set that machined would refuse.
    pub fn is_warning(&self) -> bool {
        matches!(
            self.reason,
            SkipReason::NotRegistered(NotRegistered::InvalidName(_))
        )
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Skipped::SelinuxContext => write!(f, "SELinux context")?,
            Skipped::Tmpfs(d) => write!(f, "tmpfs on {}", d.display())?,
            Skipped::Cgroups => write!(f, "cgroups")?,
            Skipped::MachineId => write!(f, "/etc/machine-id")?,
            Skipped::Machine => write!(f, "systemd-machined registration")?,
        }
        match &self.reason {
            SkipReason::SelinuxDisabled => write!(f, ": SELinux is disabled on the host"),
            SkipReason::ConfigMounts(d) => write!(f, ": config.json mounts {}", d.display()),
            SkipReason::NoCgroup(h) => write!(f, ": the container has no {h} cgroup"),
            SkipReason::ReadOnlyImage => write!(f, ": read-only image, nothing was written"),
            SkipReason::HostMachineId => {
                write!(
                    f,
                    ": it is the host's own machine-id, which prestart never writes"
                )
            }
            SkipReason::Machined(m) => write!(f, ": {m}"),
            SkipReason::NotRegistered(n) => write!(f, ": {n}"),
        }
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

impl PlanError {
    /// Whether the hook refuses on purpose (a safety rule), as opposed to
    /// facts that do not fit together.
    pub fn is_refusal(&self) -> bool {
        match self {
            PlanError::CgroupIsRoot | PlanError::HostMachineId => true,
            PlanError::NoHierarchy(_) => false,
        }
    }
}
