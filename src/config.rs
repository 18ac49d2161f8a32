//! The bundle's `config.json`: the facts the hook needs, read once.
//!
//! Source: runtime-spec `bundle.md` and `config.md`. The document is parsed by
//! [`oci_spec::runtime::Spec`]; this module only extracts a flat summary
//! ([`ContainerConfig`]) so that the decision and the plan stay pure.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Why `config.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load {path}")]
    Load {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("{0} has no `root.path`")]
    NoRoot(PathBuf),
    #[error("{0} has no `process`")]
    NoProcess(PathBuf),
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
    /// `linux.resources.memory.limit` in bytes, when set and positive.
    pub memory_limit: Option<u64>,
    /// Whether `linux.namespaces` asks for a cgroup namespace (`--cgroupns=private`).
    pub cgroupns: bool,
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
/// runtime-spec config; [`ConfigError::NoRoot`] without `root.path`.
/// A config without `process` loads with empty `args` (see [`from_spec`]).
pub fn load(bundle: &Path) -> Result<ContainerConfig, ConfigError> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|source| ConfigError::Load {
        path: path.clone(),
        source,
    })?;
    from_spec(&spec, bundle).ok_or(ConfigError::NoRoot(path))
}

/// Loads `<bundle>/config.json` and insists on a `process` (needed to decide
/// at prestart).
///
/// # Errors
/// As [`load`], plus [`ConfigError::NoProcess`].
pub fn load_with_process(bundle: &Path) -> Result<ContainerConfig, ConfigError> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|source| ConfigError::Load {
        path: path.clone(),
        source,
    })?;
    if spec.process().is_none() {
        return Err(ConfigError::NoProcess(path));
    }
    from_spec(&spec, bundle).ok_or(ConfigError::NoRoot(path))
}

/// Flattens a parsed [`Spec`]; `None` when it has no usable `root.path`.
pub fn from_spec(spec: &Spec, bundle: &Path) -> Option<ContainerConfig> {
    let root = spec.root().as_ref()?;
    if root.path().as_os_str().is_empty() {
        return None;
    }
    let rootfs = bundle.join(root.path()); // join keeps an absolute root.path as is
    let process = spec.process().as_ref();
    let linux = spec.linux().as_ref();
    Some(ContainerConfig {
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
        memory_limit: linux
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .and_then(|l| u64::try_from(l).ok())
            .filter(|l| *l > 0),
        cgroupns: linux
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup)),
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
        assert_eq!(c.env_value("container_uuid"), Some("abc"));
        assert_eq!(c.env_value("X"), Some("1=2"));
        assert_eq!(c.env_value("Y"), None);
    }

    #[test]
    fn no_root_is_none_and_negative_limit_is_no_limit() {
        let s = spec(r#"{"ociVersion":"1.0.2"}"#);
        assert!(from_spec(&s, Path::new("/b")).is_none());
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},"linux":{"resources":{"memory":{"limit":-1}}}}"#,
        );
        assert_eq!(from_spec(&s, Path::new("/b")).unwrap().memory_limit, None);
    }
}
