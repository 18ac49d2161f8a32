//! The bundle's `config.json`: the facts the hook needs, read once.
//!
//! Source: runtime-spec `bundle.md` and `config.md`. The document is parsed by
//! [`oci_spec::runtime::Spec`]; this module only extracts a flat summary
//! ([`ContainerConfig`]) so that the decision and the plan stay pure.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

/// Why `config.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load {path}")]
    Load {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} has no `root.path`")]
    NoRoot(PathBuf),
    #[error("{0} has no `process`")]
    NoProcess(PathBuf),
    #[error("{0}")]
    IdMapping(String),
}

/// What the hook uses from `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerConfig {
    /// `root.path`, made absolute against the bundle when it is relative
    /// (runtime-spec `config.md#root`). Before pivot_root this is where the
    /// rootfs is, in the container's mount namespace and on the host.
    pub rootfs: PathBuf,
    /// `root.readonly` (podman `--read-only`): nothing may be written into
    /// the image.
    pub readonly: bool,
    /// `process.args`; may be empty.
    pub args: Vec<String>,
    /// `process.env` as `KEY=value` strings.
    pub env: Vec<String>,
    /// Every `mounts[].destination`, cleaned with [`clean`].
    pub mount_destinations: Vec<PathBuf>,
    /// The destinations of `mounts[]` of type `tmpfs` (new, private tmpfs
    /// instances the runtime mounts), cleaned.
    pub tmpfs_destinations: Vec<PathBuf>,
    /// `linux.resources.memory.limit` in bytes, when set and positive.
    pub memory_limit: Option<u64>,
    /// Whether `linux.namespaces` asks for a cgroup namespace (`--cgroupns=private`).
    pub cgroupns: bool,
    /// With a user namespace: the host uid and gid that container root
    /// maps to (`linux.uidMappings`/`gidMappings`); what the hook creates
    /// for the container belongs to them.
    pub root_owner: Option<Owner>,
    /// `linux.mountLabel`: the SELinux context of the container's file
    /// systems (e.g. `system_u:object_r:container_file_t:s0:c1,c2`).
    pub mount_label: Option<String>,
}

/// A host uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Host uid.
    pub uid: u32,
    /// Host gid.
    pub gid: u32,
}

impl ContainerConfig {
    /// Whether `config.json` mounts something at `dest` (both sides cleaned:
    /// `/run/` is `/run`, `/runner` is not `/run`).
    pub fn mounts(&self, dest: &Path) -> bool {
        let dest = clean(dest);
        self.mount_destinations.contains(&dest)
    }

    /// The value of `KEY` in `process.env` (first occurrence).
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then_some(v)
        })
    }
}

/// Loads `<bundle>/config.json`.
///
/// # Errors
/// [`ConfigError::Load`] when the file is missing, unreadable or not a valid
/// runtime-spec config; the errors of [`from_spec`].
/// A config without `process` loads with empty `args`.
pub fn load(bundle: &Path) -> Result<ContainerConfig, ConfigError> {
    from_spec(&load_spec(bundle)?, bundle)
}

/// Largest config.json read, in bytes. Podman's, seccomp profile included,
/// is about 16 KiB.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and parses `<bundle>/config.json`: a regular file (opened
/// non-blocking, so a FIFO cannot hang the hook) of at most
/// [`MAX_CONFIG_BYTES`].
fn load_spec(bundle: &Path) -> Result<Spec, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = bundle.join("config.json");
    let read = || -> std::io::Result<Spec> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)?;
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        if md.len() > MAX_CONFIG_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {MAX_CONFIG_BYTES} bytes"),
            ));
        }
        let mut bytes = Vec::with_capacity(md.len() as usize);
        file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
        Ok(serde_json::from_slice(&bytes)?)
    };
    read().map_err(|source| ConfigError::Load { path, source })
}

/// Loads `<bundle>/config.json` and insists on a `process` (needed to decide
/// at prestart).
///
/// # Errors
/// As [`load`], plus [`ConfigError::NoProcess`].
pub fn load_with_process(bundle: &Path) -> Result<ContainerConfig, ConfigError> {
    let spec = load_spec(bundle)?;
    if spec.process().is_none() {
        return Err(ConfigError::NoProcess(bundle.join("config.json")));
    }
    from_spec(&spec, bundle)
}

/// The host uid (or gid) that container id 0 maps to in `mappings`
/// (runtime-spec `config-linux.md#user-namespace-mappings`).
///
/// # Errors
/// A message when the mappings are empty or none covers id 0.
pub fn root_maps_to(mappings: &[LinuxIdMapping], what: &str) -> Result<u32, String> {
    if mappings.is_empty() {
        return Err(format!(
            "the container has a user namespace but no {what} mappings"
        ));
    }
    mappings
        .iter()
        .find(|m| m.container_id() == 0 && m.size() > 0)
        .map(|m| m.host_id())
        .ok_or_else(|| format!("no {what} mapping covers container id 0 (root): {mappings:?}"))
}

/// Flattens a parsed [`Spec`]; `bundle` makes a relative `root.path`
/// absolute.
///
/// # Errors
/// [`ConfigError::NoRoot`] without a usable `root.path`;
/// [`ConfigError::IdMapping`] for a user namespace whose uid or gid mappings
/// are empty or leave container root unmapped.
pub fn from_spec(spec: &Spec, bundle: &Path) -> Result<ContainerConfig, ConfigError> {
    let no_root = || ConfigError::NoRoot(bundle.join("config.json"));
    let root = spec.root().as_ref().ok_or_else(no_root)?;
    if root.path().as_os_str().is_empty() {
        return Err(no_root());
    }
    let rootfs = bundle.join(root.path()); // join keeps an absolute root.path as is
    let process = spec.process().as_ref();
    let linux = spec.linux().as_ref();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    let has_ns = |t| namespaces.is_some_and(|ns| ns.iter().any(|n| n.typ() == t));
    let uid_maps = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid_maps = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    let root_owner =
        if has_ns(LinuxNamespaceType::User) || !uid_maps.is_empty() || !gid_maps.is_empty() {
            Some(Owner {
                uid: root_maps_to(&uid_maps, "uid").map_err(ConfigError::IdMapping)?,
                gid: root_maps_to(&gid_maps, "gid").map_err(ConfigError::IdMapping)?,
            })
        } else {
            None
        };
    Ok(ContainerConfig {
        rootfs,
        readonly: root.readonly().unwrap_or(false),
        args: process.and_then(|p| p.args().clone()).unwrap_or_default(),
        env: process.and_then(|p| p.env().clone()).unwrap_or_default(),
        mount_destinations: spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| clean(m.destination()))
            .collect(),
        tmpfs_destinations: spec
            .mounts()
            .iter()
            .flatten()
            .filter(|m| m.typ().as_deref() == Some("tmpfs"))
            .map(|m| clean(m.destination()))
            .collect(),
        memory_limit: linux
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .and_then(|l| u64::try_from(l).ok())
            .filter(|l| *l > 0),
        cgroupns: has_ns(LinuxNamespaceType::Cgroup),
        root_owner,
        mount_label: linux
            .and_then(|l| l.mount_label().clone())
            .filter(|l| !l.is_empty()),
    })
}

/// Lexically cleans a container path the way podman compares mount
/// destinations (Go's `filepath.Clean` on a rooted path): the result is
/// absolute, has no `.`, no `..` (which stops at `/`), no repeated or
/// trailing `/`. No file system is consulted.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).expect("valid spec json")
    }

    #[test]
    fn podman_config_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/config/podman-4.3-systemd-false.json"
        );
        let spec = Spec::load(path).expect("podman's config.json loads");
        let c = from_spec(
            &spec,
            Path::new("/var/lib/containers/storage/overlay-containers/x/userdata"),
        )
        .unwrap();
        assert!(c.rootfs.ends_with("rootfs/merge"));
        assert_eq!(c.args, vec!["/sbin/init".to_string()]);
        assert_eq!(c.env_value("container"), Some("oci"));
        assert_eq!(c.memory_limit, Some(512 * 1024 * 1024));
        assert!(c.mounts(Path::new("/sys/fs/cgroup")));
        assert!(c.mounts(Path::new("/run/.containerenv")));
        assert!(!c.mounts(Path::new("/run")));
        assert!(!c.readonly);
    }

    #[test]
    fn user_namespace_mappings_and_mount_label() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},
            "linux":{"namespaces":[{"type":"user"}],
                     "uidMappings":[{"containerID":1,"hostID":200001,"size":65535},{"containerID":0,"hostID":100000,"size":1}],
                     "gidMappings":[{"containerID":0,"hostID":100100,"size":65536}],
                     "mountLabel":"system_u:object_r:container_file_t:s0:c1,c2"}}"#,
        );
        let c = from_spec(&s, Path::new("/b")).unwrap();
        assert_eq!(
            c.root_owner,
            Some(Owner {
                uid: 100000,
                gid: 100100
            })
        );
        assert_eq!(
            c.mount_label.as_deref(),
            Some("system_u:object_r:container_file_t:s0:c1,c2")
        );
        let plain = from_spec(
            &spec(r#"{"ociVersion":"1.0.2","root":{"path":"r"}}"#),
            Path::new("/b"),
        )
        .unwrap();
        assert_eq!(plain.root_owner, None);
        assert_eq!(plain.mount_label, None);
    }

    #[test]
    fn empty_or_partial_mappings_are_errors() {
        for linux in [
            r#"{"namespaces":[{"type":"user"}]}"#,
            r#"{"namespaces":[{"type":"user"}],"uidMappings":[{"containerID":1,"hostID":100000,"size":10}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}"#,
            r#"{"uidMappings":[{"containerID":0,"hostID":100000,"size":10}]}"#,
        ] {
            let s = spec(&format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"r"}},"linux":{linux}}}"#
            ));
            let e = from_spec(&s, Path::new("/b")).unwrap_err();
            assert!(matches!(e, ConfigError::IdMapping(_)), "{linux}: {e}");
        }
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean(Path::new("/run/")), PathBuf::from("/run"));
        assert_eq!(
            clean(Path::new("//run//lock/.")),
            PathBuf::from("/run/lock")
        );
        assert_eq!(clean(Path::new("/tmp/../run")), PathBuf::from("/run"));
        assert_eq!(clean(Path::new("/../../run")), PathBuf::from("/run"));
        assert_eq!(clean(Path::new("run")), PathBuf::from("/run"));
    }

    #[test]
    fn mounts_compares_cleaned_destinations() {
        let c = ContainerConfig {
            mount_destinations: vec![clean(Path::new("/run/")), clean(Path::new("/runner"))],
            ..Default::default()
        };
        assert!(c.mounts(Path::new("/run")));
        assert!(!c.mounts(Path::new("/tmp")));
        assert!(!c.mounts(Path::new("/run/lock")));
    }

    #[test]
    fn relative_root_is_joined_to_bundle() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["/sbin/init"]}}"#,
        );
        let c = from_spec(&s, Path::new("/srv/b")).unwrap();
        assert_eq!(c.rootfs, PathBuf::from("/srv/b/rootfs"));
        assert_eq!(c.args, vec!["/sbin/init".to_string()]);
        assert!(c.mount_destinations.is_empty(), "mounts may be absent");
        assert!(!c.readonly);
        assert!(!c.cgroupns);
    }

    #[test]
    fn absolute_root_readonly_memory_and_cgroupns() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/merged","readonly":true},
            "process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["/sbin/init"],"env":["container_uuid=abc","X=1=2"]},
            "mounts":[{"destination":"/run/","type":"tmpfs","source":"tmpfs"}],
            "linux":{"resources":{"memory":{"limit":536870912}},
                     "namespaces":[{"type":"mount"},{"type":"cgroup"}]}}"#,
        );
        let c = from_spec(&s, Path::new("/srv/b")).unwrap();
        assert_eq!(c.rootfs, PathBuf::from("/merged"));
        assert!(c.readonly);
        assert_eq!(c.memory_limit, Some(536870912));
        assert!(c.cgroupns);
        assert!(c.mounts(Path::new("/run")));
        assert_eq!(c.tmpfs_destinations, vec![PathBuf::from("/run")]);
        assert_eq!(c.env_value("container_uuid"), Some("abc"));
        assert_eq!(c.env_value("X"), Some("1=2"));
        assert_eq!(c.env_value("Y"), None);
    }

    #[test]
    fn no_root_is_none_and_negative_limit_is_no_limit() {
        let s = spec(r#"{"ociVersion":"1.0.2"}"#);
        assert!(matches!(
            from_spec(&s, Path::new("/b")),
            Err(ConfigError::NoRoot(_))
        ));
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},"linux":{"resources":{"memory":{"limit":-1}}}}"#,
        );
        assert_eq!(from_spec(&s, Path::new("/b")).unwrap().memory_limit, None);
    }
}
