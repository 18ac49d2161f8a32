//! The bundle's `config.json`: the facts the hook needs, read once.
//!
//! Source: runtime-spec `bundle.md` and `config.md`. Only the parts the hook
//! uses are deserialized, into small lenient structs of this module (unknown
//! keys are ignored, every optional part may be missing or `null`, as Go's
//! `encoding/json` in runc treats them): a field the hook does not use can never
//! stop a container, whatever a newer runtime-spec or kernel puts there (a new
//! capability name, personality domain, seccomp action, a `process` without
//! `user`). A field the hook uses that has the wrong shape is one
//! [`ConfigError::Malformed`] naming it. oci-spec's [`LinuxIdMapping`] is
//! reused (its fields default to 0, as in Go). The result is a flat summary
//! ([`ContainerConfig`]) so that the decision and the plan stay pure.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::LinuxIdMapping;
use serde::Deserialize;

/// Why `config.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable, not a regular file or too large.
    #[error("cannot load {path}")]
    Load {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not JSON (syntax error or truncated).
    #[error("{path} is not valid JSON")]
    Syntax {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A part the hook uses has the wrong type, e.g. `root.path` is not a
    /// string or `linux.resources.memory.limit` not an integer; `field` is
    /// its dotted path (`process.args[1]`, `.` for the whole document).
    #[error("{path}: `{field}` is malformed")]
    Malformed {
        path: PathBuf,
        field: String,
        source: serde_json::Error,
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
    /// The annotation `io.github.oci-systemd-hook.machine-name`
    /// ([`crate::machine::NAME_ANNOTATION`]): the name to register the
    /// container under with systemd-machined.
    pub machine_name: Option<String>,
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

// The parts of config.json the hook reads (runtime-spec `config.md`,
// `config-linux.md`). Every field is optional and `null` counts as missing;
// unknown keys are ignored (serde's default).

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a config.json object")]
#[serde(default)]
struct RawConfig {
    root: Option<RawRoot>,
    process: Option<RawProcess>,
    mounts: Option<Vec<RawMount>>,
    linux: Option<RawLinux>,
    /// Read leniently: only the machine name is used, for an optional
    /// feature, so annotations of another shape are ignored rather than
    /// failing prestart.
    annotations: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a `root` object")]
#[serde(default)]
struct RawRoot {
    path: Option<PathBuf>,
    readonly: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a `process` object")]
#[serde(default)]
struct RawProcess {
    args: Option<Vec<String>>,
    env: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a mount object")]
struct RawMount {
    /// Required: the hook compares it with the destinations it would mount.
    destination: PathBuf,
    #[serde(default, rename = "type")]
    typ: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a `linux` object")]
#[serde(default, rename_all = "camelCase")]
struct RawLinux {
    resources: Option<RawResources>,
    namespaces: Option<Vec<RawNamespace>>,
    uid_mappings: Option<Vec<LinuxIdMapping>>,
    gid_mappings: Option<Vec<LinuxIdMapping>>,
    mount_label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a `resources` object")]
#[serde(default)]
struct RawResources {
    memory: Option<RawMemory>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a `memory` object")]
#[serde(default)]
struct RawMemory {
    /// Bytes; `-1` (or any value ≤ 0) is no limit. An `int64` in the spec.
    limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a namespace object")]
struct RawNamespace {
    /// Read as a string: a type the hook does not know (a newer kernel's)
    /// is the runtime's business, not the hook's.
    #[serde(rename = "type")]
    typ: String,
}

/// Largest config.json read, in bytes. Podman's, seccomp profile included,
/// is about 16 KiB.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Loads `<bundle>/config.json`.
///
/// # Errors
/// [`ConfigError::Load`] when the file is missing, unreadable, not a regular
/// file or larger than [`MAX_CONFIG_BYTES`]; the errors of [`parse`].
/// A config without `process` loads with empty `args`.
pub fn load(bundle: &Path) -> Result<ContainerConfig, ConfigError> {
    let path = bundle.join("config.json");
    flatten(deserialize(&read(&path)?, &path)?, bundle)
}

/// Loads `<bundle>/config.json` and insists on a `process` (needed to decide
/// at prestart).
///
/// # Errors
/// As [`load`], plus [`ConfigError::NoProcess`] (checked before `root`).
pub fn load_with_process(bundle: &Path) -> Result<ContainerConfig, ConfigError> {
    let path = bundle.join("config.json");
    let raw: RawConfig = deserialize(&read(&path)?, &path)?;
    if raw.process.is_none() {
        return Err(ConfigError::NoProcess(path));
    }
    flatten(raw, bundle)
}

/// Parses the bytes of `<bundle>/config.json` into the summary; `bundle`
/// makes a relative `root.path` absolute. Parts the hook does not use are
/// not looked at; a missing `process` gives empty `args` and `env`.
///
/// # Errors
/// [`ConfigError::Syntax`] when `bytes` are not JSON;
/// [`ConfigError::Malformed`] when a part the hook uses has the wrong type
/// (also when the document or `mounts[]` entry is not an object, or a mount
/// has no `destination`, or a namespace no `type`);
/// [`ConfigError::NoRoot`] without a non-empty `root.path`;
/// [`ConfigError::IdMapping`] for a user namespace whose uid or gid mappings
/// are empty or leave container root unmapped.
pub fn parse(bytes: &[u8], bundle: &Path) -> Result<ContainerConfig, ConfigError> {
    flatten(deserialize(bytes, &bundle.join("config.json"))?, bundle)
}

/// Reads `path`: a regular file (opened non-blocking, so a FIFO cannot hang
/// the hook) of at most [`MAX_CONFIG_BYTES`].
///
/// # Errors
/// [`ConfigError::Load`] as for [`load`].
pub fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read = || -> std::io::Result<Vec<u8>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
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
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {MAX_CONFIG_BYTES} bytes"),
            ));
        }
        Ok(bytes)
    };
    read().map_err(|source| ConfigError::Load {
        path: path.to_path_buf(),
        source,
    })
}

/// The parts of config.json that decide whether the hook acts
/// (`process.args`, `process.env`).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a config.json object")]
#[serde(default)]
struct RawProcessOnly {
    process: Option<RawProcess>,
}

/// Parses only `process.args` and `process.env` of config.json (`path`
/// names the file in errors), with the same lenient rules as [`parse`]; the
/// other fields of the summary are left at their defaults. Enough for
/// [`crate::decide::skip_reason`]: the runtime wrapper decides with it, so a
/// field only the hook needs (`root.path`, id mappings) can never stop a
/// container the hook leaves alone.
///
/// # Errors
/// [`ConfigError::Syntax`] when `bytes` are not JSON;
/// [`ConfigError::Malformed`] when the document is not an object or
/// `process`, `process.args` or `process.env` has the wrong type.
pub fn parse_process(bytes: &[u8], path: &Path) -> Result<ContainerConfig, ConfigError> {
    let raw: RawProcessOnly = deserialize(bytes, path)?;
    let process = raw.process.unwrap_or_default();
    Ok(ContainerConfig {
        args: process.args.unwrap_or_default(),
        env: process.env.unwrap_or_default(),
        ..ContainerConfig::default()
    })
}

/// Deserializes the parts the hook uses; `path` names the file in errors.
fn deserialize<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
) -> Result<T, ConfigError> {
    let syntax = |source| ConfigError::Syntax {
        path: path.to_path_buf(),
        source,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let source = e.into_inner();
        match source.classify() {
            serde_json::error::Category::Data => ConfigError::Malformed {
                path: path.to_path_buf(),
                field,
                source,
            },
            _ => syntax(source),
        }
    })?;
    de.end().map_err(syntax)?; // trailing characters
    Ok(raw)
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

/// Flattens the parsed parts; `bundle` makes a relative `root.path`
/// absolute. Errors as [`parse`].
fn flatten(raw: RawConfig, bundle: &Path) -> Result<ContainerConfig, ConfigError> {
    let no_root = || ConfigError::NoRoot(bundle.join("config.json"));
    let root = raw.root.ok_or_else(no_root)?;
    let root_path = root
        .path
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(no_root)?;
    let rootfs = bundle.join(root_path); // join keeps an absolute root.path as is
    let process = raw.process.unwrap_or_default();
    let linux = raw.linux.unwrap_or_default();
    let namespaces = linux.namespaces.unwrap_or_default();
    let has_ns = |t: &str| namespaces.iter().any(|n| n.typ == t);
    let uid_maps = linux.uid_mappings.unwrap_or_default();
    let gid_maps = linux.gid_mappings.unwrap_or_default();
    let root_owner = if has_ns("user") || !uid_maps.is_empty() || !gid_maps.is_empty() {
        Some(Owner {
            uid: root_maps_to(&uid_maps, "uid").map_err(ConfigError::IdMapping)?,
            gid: root_maps_to(&gid_maps, "gid").map_err(ConfigError::IdMapping)?,
        })
    } else {
        None
    };
    let mounts = raw.mounts.unwrap_or_default();
    Ok(ContainerConfig {
        rootfs,
        readonly: root.readonly.unwrap_or(false),
        args: process.args.unwrap_or_default(),
        env: process.env.unwrap_or_default(),
        mount_destinations: mounts.iter().map(|m| clean(&m.destination)).collect(),
        tmpfs_destinations: mounts
            .iter()
            .filter(|m| m.typ.as_deref() == Some("tmpfs"))
            .map(|m| clean(&m.destination))
            .collect(),
        memory_limit: linux
            .resources
            .and_then(|r| r.memory)
            .and_then(|m| m.limit)
            .and_then(|l| u64::try_from(l).ok())
            .filter(|l| *l > 0),
        cgroupns: has_ns("cgroup"),
        root_owner,
        mount_label: linux.mount_label.filter(|l| !l.is_empty()),
        machine_name: raw
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::machine::NAME_ANNOTATION))
            .and_then(|n| n.as_str())
            .map(str::to_string),
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

    fn parse_str(json: &str) -> Result<ContainerConfig, ConfigError> {
        parse(json.as_bytes(), Path::new("/b"))
    }

    /// A change to [`base`].
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;

    /// A `runc spec` config (runc 1.1), with the hook's own args.
    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["/sbin/init"],
                "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "runc",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                               {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/bus"]
            }
        })
    }

    /// `base()` changed by `f`, parsed with bundle `/b`.
    fn variant(f: impl FnOnce(&mut serde_json::Value)) -> Result<ContainerConfig, ConfigError> {
        let mut v = base();
        f(&mut v);
        parse_str(&v.to_string())
    }

    fn check_base_summary(c: &ContainerConfig) {
        assert_eq!(c.rootfs, PathBuf::from("/b/rootfs"));
        assert!(c.readonly);
        assert_eq!(c.args, vec!["/sbin/init".to_string()]);
        assert_eq!(c.env_value("TERM"), Some("xterm"));
        assert_eq!(
            c.mount_destinations,
            vec![PathBuf::from("/proc"), PathBuf::from("/dev")]
        );
        assert_eq!(c.tmpfs_destinations, vec![PathBuf::from("/dev")]);
        assert!(c.cgroupns);
    }

    #[test]
    fn the_machine_name_annotation_is_read_and_odd_annotations_ignored() {
        let c = variant(|v| {
            v["annotations"] = serde_json::json!({
                "io.github.oci-systemd-hook.machine-name": "web1",
                "io.podman.annotations.autoremove": "TRUE"
            });
        })
        .unwrap();
        assert_eq!(c.machine_name.as_deref(), Some("web1"));
        for odd in [
            serde_json::json!("not-an-object"),
            serde_json::json!({"io.github.oci-systemd-hook.machine-name": 5}),
            serde_json::json!(null),
        ] {
            let c = variant(|v| v["annotations"] = odd.clone()).unwrap();
            assert_eq!(c.machine_name, None, "{odd}");
        }
        assert_eq!(variant(|_| {}).unwrap().machine_name, None);
    }

    #[test]
    fn process_without_user_is_read() {
        // runc and crun both run it (container root).
        let c = variant(|v| {
            v["process"].as_object_mut().unwrap().remove("user");
        })
        .expect("a process without user is read");
        check_base_summary(&c);
    }

    #[test]
    fn unknown_capability_name_is_read() {
        // A capability of a newer kernel, as podman would pass it.
        let c = variant(|v| {
            for set in ["bounding", "effective", "permitted", "ambient"] {
                v["process"]["capabilities"][set]
                    .as_array_mut()
                    .unwrap()
                    .push("CAP_FOO".into());
            }
            v["process"]["capabilities"]["inheritable"] = serde_json::json!(["CAP_BAR"]);
        })
        .expect("an unknown capability name is read");
        check_base_summary(&c);
    }

    #[test]
    fn unknown_personality_domain_is_read() {
        let c = variant(|v| {
            v["linux"]["personality"] =
                serde_json::json!({"domain": "LINUX_FUTURE", "flags": ["SOMETHING"]});
        })
        .expect("an unknown personality domain is read");
        check_base_summary(&c);
    }

    #[test]
    fn unused_odd_fields_are_ignored() {
        let odd: Vec<(&str, Edit)> = vec![
            (
                "unknown top-level keys",
                Box::new(|v| {
                    v["vm"] = serde_json::json!({"hypervisor": {"path": 5}});
                    v["futureThing"] = serde_json::json!([1, {"x": null}]);
                }),
            ),
            (
                "unknown ociVersion",
                Box::new(|v| v["ociVersion"] = "9.9.9-whatever".into()),
            ),
            (
                "no ociVersion",
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("ociVersion");
                }),
            ),
            (
                "seccomp: unknown action, arch, op",
                Box::new(|v| {
                    v["linux"]["seccomp"] = serde_json::json!({
                        "defaultAction": "SCMP_ACT_FUTURE",
                        "defaultErrnoRet": 1,
                        "architectures": ["SCMP_ARCH_QUANTUM"],
                        "flags": ["SECCOMP_FILTER_FLAG_NEW"],
                        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY2",
                                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_FUZZY"}]}]
                    });
                }),
            ),
            (
                "unknown namespace type",
                Box::new(|v| {
                    v["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(serde_json::json!({"type": "time2", "path": 7}));
                }),
            ),
            (
                "hooks with odd fields",
                Box::new(|v| {
                    v["hooks"] = serde_json::json!({
                        "prestart": [{"path": "/x", "timeout": -3, "extra": {"a": 1}}],
                        "createRuntime": [{"path": "/y", "args": "not-an-array"}],
                        "futureStage": "?"
                    });
                }),
            ),
            (
                "annotations",
                Box::new(|v| {
                    v["annotations"] =
                        serde_json::json!({"io.x/y": "z", "n": 5, "o": {"deep": [true]}});
                }),
            ),
            (
                "unknown rlimit type",
                Box::new(|v| {
                    v["process"]["rlimits"] =
                        serde_json::json!([{"type": "RLIMIT_FUTURE", "hard": 1, "soft": 1}]);
                }),
            ),
            (
                "odd user, cwd, console, apparmor",
                Box::new(|v| {
                    v["process"]["user"] = serde_json::json!({"uid": 0, "gid": 0, "umask": 18, "additionalGids": [1, 2], "username": "x"});
                    v["process"].as_object_mut().unwrap().remove("cwd");
                    v["process"]["consoleSize"] = serde_json::json!({"height": 0, "width": 0});
                    v["process"]["ioPriority"] =
                        serde_json::json!({"class": "IOPRIO_CLASS_FUTURE"});
                    v["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_FUTURE"});
                }),
            ),
            (
                "odd mounts and devices",
                Box::new(|v| {
                    v["mounts"][0]["options"] = serde_json::json!(["rro", "idmap", "x-future"]);
                    v["mounts"][0]["uidMappings"] =
                        serde_json::json!([{"containerID": 0, "hostID": 1, "size": 1}]);
                    v["mounts"][1]["type"] = "futurefs".into();
                    v["linux"]["devices"] = serde_json::json!([{"path": "/dev/x", "type": "q", "major": 1, "minor": 1}]);
                    v["linux"]["resources"]["devices"] =
                        serde_json::json!([{"allow": true, "type": "z"}]);
                }),
            ),
            (
                "resources other than memory.limit",
                Box::new(|v| {
                    v["linux"]["resources"]["memory"] = serde_json::json!({"limit": 1048576, "swap": "huge", "checkBeforeUpdate": true});
                    v["linux"]["resources"]["cpu"] = serde_json::json!({"shares": -1, "idle": 5});
                    v["linux"]["resources"]["unified"] = serde_json::json!({"memory.high": 1});
                }),
            ),
            (
                "nulls for optional parts",
                Box::new(|v| {
                    v["mounts"] = serde_json::Value::Null;
                    v["process"]["env"] = serde_json::Value::Null;
                    v["linux"]["namespaces"] = serde_json::Value::Null;
                    v["linux"]["resources"] = serde_json::Value::Null;
                    v["root"]["readonly"] = serde_json::Value::Null;
                }),
            ),
        ];
        for (what, f) in odd {
            let c = variant(|v| f(v)).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert_eq!(c.rootfs, PathBuf::from("/b/rootfs"), "{what}");
            assert_eq!(c.args, vec!["/sbin/init".to_string()], "{what}");
        }
        let c = variant(|v| {
            v["linux"]["resources"]["memory"] =
                serde_json::json!({"limit": 1048576, "swap": "huge"});
        })
        .unwrap();
        assert_eq!(c.memory_limit, Some(1048576));
        let c = variant(|v| {
            v["mounts"] = serde_json::Value::Null;
            v["linux"]["namespaces"] = serde_json::Value::Null;
        })
        .unwrap();
        assert!(c.mount_destinations.is_empty() && !c.cgroupns);
    }

    #[test]
    fn malformed_used_fields_are_named() {
        let bad: Vec<(&str, Edit)> = vec![
            ("root.path", Box::new(|v| v["root"]["path"] = 5.into())),
            (
                "root.readonly",
                Box::new(|v| v["root"]["readonly"] = "yes".into()),
            ),
            ("root", Box::new(|v| v["root"] = "rootfs".into())),
            (
                "process.args",
                Box::new(|v| v["process"]["args"] = "/sbin/init".into()),
            ),
            (
                "process.args[1]",
                Box::new(|v| v["process"]["args"] = serde_json::json!(["/sbin/init", 1])),
            ),
            (
                "process.env[0]",
                Box::new(|v| v["process"]["env"] = serde_json::json!([{"A": "b"}])),
            ),
            (
                "mounts[1]", // "missing field `destination`"
                Box::new(|v| {
                    v["mounts"][1]
                        .as_object_mut()
                        .unwrap()
                        .remove("destination");
                }),
            ),
            (
                "mounts[0].destination",
                Box::new(|v| v["mounts"][0]["destination"] = serde_json::json!(["/proc"])),
            ),
            (
                "mounts[0].type",
                Box::new(|v| v["mounts"][0]["type"] = 3.into()),
            ),
            (
                "mounts",
                Box::new(|v| v["mounts"] = serde_json::json!({"/proc": {}})),
            ),
            (
                "linux.resources.memory.limit",
                Box::new(|v| {
                    v["linux"]["resources"]["memory"] = serde_json::json!({"limit": "1g"})
                }),
            ),
            (
                "linux.resources.memory.limit",
                Box::new(|v| v["linux"]["resources"]["memory"] = serde_json::json!({"limit": 1.5})),
            ),
            (
                "linux.resources.memory.limit",
                Box::new(|v| {
                    v["linux"]["resources"]["memory"] =
                        serde_json::json!({"limit": 18446744073709551615u64})
                }),
            ),
            (
                "linux.namespaces[0].type",
                Box::new(|v| {
                    v["linux"]["namespaces"][0]["type"] = serde_json::json!({"pid": true})
                }),
            ),
            (
                "linux.namespaces[2]",
                Box::new(|v| {
                    v["linux"]["namespaces"][2]
                        .as_object_mut()
                        .unwrap()
                        .remove("type");
                }),
            ),
            (
                "linux.uidMappings[0].hostID",
                Box::new(|v| {
                    v["linux"]["uidMappings"] =
                        serde_json::json!([{"containerID": 0, "hostID": -1, "size": 1}])
                }),
            ),
            (
                "linux.mountLabel",
                Box::new(|v| v["linux"]["mountLabel"] = serde_json::json!(["a"])),
            ),
            (".", Box::new(|v| *v = serde_json::json!("not an object"))),
        ];
        for (field, f) in bad {
            match variant(|v| f(v)) {
                Err(ConfigError::Malformed {
                    field: got, path, ..
                }) => {
                    assert_eq!(got, field);
                    assert_eq!(path, PathBuf::from("/b/config.json"));
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // One line naming the file, the field and what is wrong.
        let e = variant(|v| v["root"]["path"] = 5.into()).unwrap_err();
        let line = format!("{:#}", anyhow::Error::from(e));
        assert!(
            line.starts_with("/b/config.json: `root.path` is malformed: invalid type: integer `5`"),
            "{line}"
        );
    }

    #[test]
    fn not_json_is_a_syntax_error() {
        for bytes in [&b"{"[..], b"", b"{\"root\":{\"path\":\"r\"}} x", b"\xff"] {
            let e = parse(bytes, Path::new("/b")).unwrap_err();
            assert!(matches!(e, ConfigError::Syntax { .. }), "{bytes:?}: {e:?}");
        }
        // Missing and empty root.path are NoRoot, as before.
        for json in [
            r#"{}"#,
            r#"{"root":null}"#,
            r#"{"root":{}}"#,
            r#"{"root":{"path":""}}"#,
        ] {
            assert!(
                matches!(parse_str(json), Err(ConfigError::NoRoot(_))),
                "{json}"
            );
        }
    }

    #[test]
    fn load_reads_the_bundle_and_insists_on_process_when_asked() {
        let t = tempfile::tempdir().unwrap();
        let mut v = base();
        v["process"].as_object_mut().unwrap().remove("user");
        std::fs::write(t.path().join("config.json"), v.to_string()).unwrap();
        let c = load_with_process(t.path()).unwrap();
        assert_eq!(c.rootfs, t.path().join("rootfs"));
        assert_eq!(c, load(t.path()).unwrap());
        for process in [None, Some(serde_json::Value::Null)] {
            let o = v.as_object_mut().unwrap();
            match process {
                None => o.remove("process"),
                Some(p) => o.insert("process".into(), p),
            };
            std::fs::write(t.path().join("config.json"), v.to_string()).unwrap();
            assert!(matches!(
                load_with_process(t.path()),
                Err(ConfigError::NoProcess(_))
            ));
            assert!(load(t.path()).unwrap().args.is_empty());
        }
        std::fs::remove_file(t.path().join("config.json")).unwrap();
        assert!(matches!(load(t.path()), Err(ConfigError::Load { .. })));
    }

    #[test]
    fn podman_config_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/config/podman-4.3-systemd-false.json"
        );
        let c = parse(
            &std::fs::read(path).unwrap(),
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
        let s = String::from(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},
            "linux":{"namespaces":[{"type":"user"}],
                     "uidMappings":[{"containerID":1,"hostID":200001,"size":65535},{"containerID":0,"hostID":100000,"size":1}],
                     "gidMappings":[{"containerID":0,"hostID":100100,"size":65536}],
                     "mountLabel":"system_u:object_r:container_file_t:s0:c1,c2"}}"#,
        );
        let c = parse(s.as_bytes(), Path::new("/b")).unwrap();
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
        let plain = parse(
            br#"{"ociVersion":"1.0.2","root":{"path":"r"}}"#,
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
            let s = format!(r#"{{"ociVersion":"1.0.2","root":{{"path":"r"}},"linux":{linux}}}"#);
            let e = parse(s.as_bytes(), Path::new("/b")).unwrap_err();
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
        let s = String::from(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["/sbin/init"]}}"#,
        );
        let c = parse(s.as_bytes(), Path::new("/srv/b")).unwrap();
        assert_eq!(c.rootfs, PathBuf::from("/srv/b/rootfs"));
        assert_eq!(c.args, vec!["/sbin/init".to_string()]);
        assert!(c.mount_destinations.is_empty(), "mounts may be absent");
        assert!(!c.readonly);
        assert!(!c.cgroupns);
    }

    #[test]
    fn absolute_root_readonly_memory_and_cgroupns() {
        let s = String::from(
            r#"{"ociVersion":"1.0.2","root":{"path":"/merged","readonly":true},
            "process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["/sbin/init"],"env":["container_uuid=abc","X=1=2"]},
            "mounts":[{"destination":"/run/","type":"tmpfs","source":"tmpfs"}],
            "linux":{"resources":{"memory":{"limit":536870912}},
                     "namespaces":[{"type":"mount"},{"type":"cgroup"}]}}"#,
        );
        let c = parse(s.as_bytes(), Path::new("/srv/b")).unwrap();
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
        let s = String::from(r#"{"ociVersion":"1.0.2"}"#);
        assert!(matches!(
            parse(s.as_bytes(), Path::new("/b")),
            Err(ConfigError::NoRoot(_))
        ));
        let s = String::from(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},"linux":{"resources":{"memory":{"limit":-1}}}}"#,
        );
        assert_eq!(
            parse(s.as_bytes(), Path::new("/b")).unwrap().memory_limit,
            None
        );
    }

    #[test]
    fn parse_process_reads_only_args_and_env() {
        let p = Path::new("/b/config.json");
        let c = parse_process(
            br#"{"process":{"args":["/sbin/init"],"env":["a=b"],"cwd":7},"linux":{"namespaces":[{"type":"user"}]}}"#,
            p,
        )
        .unwrap();
        assert_eq!(c.args, ["/sbin/init"]);
        assert_eq!(c.env, ["a=b"]);
        assert_eq!(c.rootfs, PathBuf::new());
        assert!(parse_process(b"{}", p).unwrap().args.is_empty());
        assert!(matches!(
            parse_process(br#"{"process":{"args":"/sbin/init"}}"#, p),
            Err(ConfigError::Malformed { field, .. }) if field == "process.args"
        ));
        assert!(matches!(
            parse_process(b"[", p),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(matches!(
            parse_process(br#""x""#, p),
            Err(ConfigError::Malformed { .. })
        ));
    }
}
