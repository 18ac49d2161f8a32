//! The steps of a plan, one type per place where a step runs:
//! [`HostStep`] in the hook's own (host) mount namespace, [`ContainerStep`]
//! in the container's mount namespace under its rootfs, [`RootfsStep`] on
//! the rootfs as the host sees it (poststop) and [`PoststopHostStep`] on the
//! host after the container is gone. Each type has its `Display` (what
//! `explain` and the logs print) and a `kind` (the journal field
//! `OCI_ACTION`).

use std::fmt;
use std::path::PathBuf;

use crate::config::Owner;
use crate::machine::Machine;

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
    /// The cgroup2 mount the hook made itself, detached, by
    /// [`HostStep::MakeCgroup2`] (legacy hosts mount none): its root.
    HookCgroup2,
}

impl fmt::Display for HostSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSource::Path(p) => write!(f, "{}", p.display()),
            HostSource::Beneath { base, path } => {
                write!(f, "{} beneath {}", path.display(), base.display())
            }
            HostSource::HookCgroup2 => f.write_str("the hook's own cgroup2 mount"),
        }
    }
}

/// Names a host object that a [`HostStep::Open`] takes on the host and a
/// [`ContainerStep::Bind`] attaches in the container: the key of
/// `apply::HostObjects`. Only [`super::Plan::bind`] makes one, so every
/// bind has its open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub(crate) usize);

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0 + 1)
    }
}

/// A step in the hook's own (host) mount namespace, run before the hook
/// joins the container's. Undone when prestart fails later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostStep {
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
    /// on the host, only on that directory and those files, after checking
    /// that the cgroup holds only the container's processes.
    DelegateCgroup {
        source: HostSource,
        files: Vec<String>,
        owner: Owner,
    },
    /// Legacy host, image systemd without v1 support: mount a cgroup2
    /// detached (`fsopen`/`fsmount`, never attached on the host), create the
    /// cgroup `name` at its root (refused when it exists), give it and the
    /// files systemd writes to `owner` when given, and move every process of
    /// `members` (the container's v1 `name=systemd` cgroup, checked to hold
    /// only the container's processes) into it, as nspawn ≤ 257's
    /// `sync_cgroup` did. A failed prestart moves them back to the root and
    /// removes it; poststop removes it ([`PoststopHostStep::RemoveCgroup2`]).
    MakeCgroup2 {
        name: String,
        members: HostSource,
        owner: Option<Owner>,
    },
    /// Take a detached copy (`open_tree(OPEN_TREE_CLONE)`) of `source` as
    /// host object `object`, for the [`ContainerStep::Bind`] naming it. A
    /// cgroup beneath a hierarchy must hold only the container's processes.
    /// Skipped (and so its bind) when `source` is a [`HostStep::HostDir`]
    /// that was skipped.
    Open {
        object: ObjectId,
        source: HostSource,
    },
    /// Register the container with systemd-machined on the system bus
    /// (`RegisterMachineEx` with the init's pidfd where machined has it,
    /// else `RegisterMachine` with its pid), so that `machinectl` and
    /// `journalctl -M` know it. The socket is connected on the host side;
    /// the call is made last, after the container steps. Never fails
    /// prestart: no bus or no machined is one info line, a refused call one
    /// warning.
    RegisterMachine(Machine),
}

impl HostStep {
    /// A one-word name of the step's kind, for logs (journal field
    /// `OCI_ACTION`).
    pub fn kind(&self) -> &'static str {
        match self {
            HostStep::HostDir { .. } => "host-dir",
            HostStep::DelegateCgroup { .. } => "delegate-cgroup",
            HostStep::Open { .. } => "open",
            HostStep::MakeCgroup2 { .. } => "make-cgroup2",
            HostStep::RegisterMachine(_) => "register-machine",
        }
    }
}

impl fmt::Display for HostStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostStep::HostDir {
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
            HostStep::DelegateCgroup {
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
            HostStep::Open { object, source } => {
                write!(f, "take a detached copy of {source} (host object {object})")
            }
            HostStep::MakeCgroup2 {
                name,
                members,
                owner,
            } => {
                write!(
                    f,
                    "mount cgroup2 detached, mkdir /{name} in it and move the processes of {members} there"
                )?;
                if let Some(o) = owner {
                    write!(f, ", owner {}:{}", o.uid, o.gid)?;
                }
                Ok(())
            }
            HostStep::RegisterMachine(m) => {
                write!(f, "register {m} with systemd-machined")
            }
        }
    }
}

/// A step in the container's mount namespace. Container paths (`dest`) are
/// absolute paths inside the rootfs and are always resolved inside it.
/// Nothing is created or written on a file system other than the image's
/// own and the tmpfs mounts the hook or config.json made (see
/// [`super::Plan::private_tmpfs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerStep {
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
    /// Attach the host object `object` (the copy of `source` a
    /// [`HostStep::Open`] took) at `dest` (nosuid, nodev, noexec), read-only
    /// when `readonly`. When `dest` cannot be created in the image
    /// (read-only, or a file in the way), `fallback` is used instead.
    Bind {
        object: ObjectId,
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
    /// Bind `dest` (a directory already there, inside a mount the hook
    /// attached) onto itself, read-write (nosuid, nodev, noexec): the
    /// container's own cgroup in the read-only cgroup2 the hook mounted
    /// ([`HostStep::MakeCgroup2`]); cloned in the container's namespace,
    /// where that mount is attached.
    BindWritable { dest: PathBuf },
    /// Write `contents` to the regular file `dest` (created with `mode` and
    /// given to `owner` when given; truncated, owner unchanged, when it
    /// exists).
    WriteFile {
        dest: PathBuf,
        contents: String,
        mode: u32,
        owner: Option<Owner>,
    },
}

impl ContainerStep {
    /// A one-word name of the step's kind, for logs (journal field
    /// `OCI_ACTION`).
    pub fn kind(&self) -> &'static str {
        match self {
            ContainerStep::Tmpfs { .. } => "tmpfs",
            ContainerStep::Mkdir { .. } => "mkdir",
            ContainerStep::Bind { .. } => "bind",
            ContainerStep::BindContents { .. } => "bind-contents",
            ContainerStep::RemountReadOnly { .. } => "remount-ro",
            ContainerStep::BindWritable { .. } => "bind-rw",
            ContainerStep::WriteFile { .. } => "write",
        }
    }
}

impl fmt::Display for ContainerStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerStep::Tmpfs {
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
            ContainerStep::Mkdir { dest, mode } => {
                write!(f, "mkdir {} mode {mode:o}", dest.display())
            }
            ContainerStep::Bind {
                source,
                dest,
                readonly,
                fallback,
                ..
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
            ContainerStep::BindContents { dest, .. } => {
                write!(f, "bind a private read-only file on {}", dest.display())
            }
            ContainerStep::RemountReadOnly { dest } => {
                write!(f, "remount {} read-only", dest.display())
            }
            ContainerStep::BindWritable { dest } => {
                write!(f, "bind {} onto itself rw", dest.display())
            }
            ContainerStep::WriteFile { dest, mode, .. } => {
                write!(f, "write {} mode {mode:o}", dest.display())
            }
        }
    }
}

/// A poststop step on the rootfs as the host sees it (`root.path`); skipped
/// when the rootfs is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsStep {
    /// Truncate the regular file `dest` when its content (trimmed) is
    /// `expected`.
    ClearFile { dest: PathBuf, expected: String },
}

impl RootfsStep {
    /// A one-word name of the step's kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RootfsStep::ClearFile { .. } => "clear",
        }
    }
}

impl fmt::Display for RootfsStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootfsStep::ClearFile { dest, .. } => {
                write!(f, "empty {} if it holds the machine-id", dest.display())
            }
        }
    }
}

/// A poststop step on the host, run whether or not the rootfs is still
/// there (a cgroup the hook made to remove, a machine to terminate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoststopHostStep {
    /// Remove the directory `path` (a [`HostStep::HostDir`] of prestart)
    /// when a prestart that was killed (a hooks.d `timeout`, SIGKILL) left
    /// it: it carries `marker`, this container's id, but not the mark a
    /// finished prestart sets last, and it is empty. Anything else there is
    /// left alone: another container's directory, or the journal of a
    /// container that started.
    RemoveUnfinishedHostDir { path: PathBuf, marker: String },
    /// Legacy host: remove the cgroup `name` a [`HostStep::MakeCgroup2`]
    /// made, with the cgroups systemd made beneath it (empty once the
    /// container is gone), through a detached cgroup2 mount. Absent: nothing
    /// to do.
    RemoveCgroup2 { name: String },
    /// `TerminateMachine` the machine prestart registered, when machined
    /// still has a machine of that name with this id and root directory
    /// (machined usually dropped it already, when the container's unit
    /// ended); "no such machine" is fine. Failures are one warning.
    TerminateMachine(Machine),
}

impl PoststopHostStep {
    /// A one-word name of the step's kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PoststopHostStep::RemoveUnfinishedHostDir { .. } => "host-cleanup",
            PoststopHostStep::RemoveCgroup2 { .. } => "remove-cgroup2",
            PoststopHostStep::TerminateMachine(_) => "terminate-machine",
        }
    }
}

impl fmt::Display for PoststopHostStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoststopHostStep::RemoveUnfinishedHostDir { path, .. } => write!(
                f,
                "rmdir on host {} if an unfinished prestart of this container left it empty",
                path.display()
            ),
            PoststopHostStep::RemoveCgroup2 { name } => write!(
                f,
                "remove the cgroup2 /{name} prestart made (and the cgroups beneath it), if there"
            ),
            PoststopHostStep::TerminateMachine(m) => {
                write!(f, "terminate {m} in systemd-machined if it is still there")
            }
        }
    }
}
