//! The container as a machine of systemd-machined: what the hook registers
//! (name, id, service, class, root directory) and whether it may. Pure
//! except [`probe`], which looks at the host (one `statx` on a host that is
//! not booted with systemd).
//!
//! Sources: systemd's `org.freedesktop.machine1(5)` (`RegisterMachine`,
//! `RegisterMachineEx`, `TerminateMachine`) and machined's checks in
//! `src/machine/machined-dbus.c`: the name must pass
//! `hostname_is_valid(name, 0)` (`src/basic/hostname-util.c`), the id is 16
//! bytes or none, the root directory absolute.
//!
//! Knobs, all optional:
//! - `OCI_SYSTEMD_HOOK_MACHINE=0` (also `no`, `false`, `off`, `disabled`)
//!   in the hook's own environment (a hooks.d descriptor's `hook.env`: every
//!   container) or in the container's `process.env` (`podman run --env`:
//!   this container) turns registration off;
//! - the machine name: the annotation [`NAME_ANNOTATION`], else
//!   `OCI_SYSTEMD_HOOK_MACHINE_NAME` in `process.env`, else the machine-id.

use std::fmt;
use std::path::PathBuf;

use crate::config::ContainerConfig;
use crate::machine_id::MachineId;

/// Environment variable (the hook's or the container's) that turns
/// registration off when it is `0`, `no`, `false`, `off` or `disabled`.
pub const OPT_OUT_ENV: &str = "OCI_SYSTEMD_HOOK_MACHINE";
/// `process.env` variable naming the machine.
pub const NAME_ENV: &str = "OCI_SYSTEMD_HOOK_MACHINE_NAME";
/// config.json annotation naming the machine (wins over [`NAME_ENV`]).
pub const NAME_ANNOTATION: &str = "io.github.oci-systemd-hook.machine-name";
/// The machine class the hook registers (machined: `container` or `vm`).
pub const CLASS: &str = "container";
/// The service when `process.env` has no usable `container=` value.
pub const DEFAULT_SERVICE: &str = "oci";
/// A booted systemd creates this directory (`sd_booted(3)`).
pub const SYSTEMD_BOOTED: &str = "/run/systemd/system";
/// The longest machine name machined accepts (`HOST_NAME_MAX` on Linux).
pub const NAME_MAX: usize = 64;

/// What the hook registers with machined for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The machine name (`machinectl status NAME`, `journalctl -M NAME`),
    /// valid by [`name_is_valid`].
    pub name: String,
    /// The machine-id the hook writes into the container: the machine's id.
    pub id: MachineId,
    /// The engine (`container=` of `process.env`, e.g. `podman`), or
    /// [`DEFAULT_SERVICE`].
    pub service: String,
    /// The rootfs as the host sees it (`root.path`, absolute).
    pub root_directory: PathBuf,
}

impl Machine {
    /// The id as the 16 bytes machined takes (`ay`).
    pub fn id_bytes(&self) -> [u8; 16] {
        let hex = self.id.as_str().as_bytes();
        let nibble = |c: u8| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c.to_ascii_lowercase() - b'a' + 10,
        };
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = (nibble(hex[2 * i]) << 4) | nibble(hex[2 * i + 1]);
        }
        out
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "machine {} (id {}, class {CLASS}, service {}, root {})",
            self.name,
            self.id,
            self.service,
            self.root_directory.display()
        )
    }
}

/// Whether the host side allows registration, as [`probe`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machined {
    /// A systemd host and a hook that runs as real root: try the bus.
    Possible,
    /// `OCI_SYSTEMD_HOOK_MACHINE` in the hook's environment turns it off.
    Disabled,
    /// No [`SYSTEMD_BOOTED`]: PID 1 is not systemd, so there is no machined.
    NotSystemdHost,
    /// The hook is not root, or runs in a user namespace (rootless podman):
    /// machined would refuse it.
    Rootless,
}

impl fmt::Display for Machined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Machined::Possible => "systemd host",
            Machined::Disabled => "OCI_SYSTEMD_HOOK_MACHINE turns it off in the hook's environment",
            Machined::NotSystemdHost => "not a systemd host (no /run/systemd/system)",
            Machined::Rootless => "the hook is not root in the initial user namespace",
        })
    }
}

/// Whether `value` turns registration off.
pub fn is_off(value: &str) -> bool {
    ["0", "no", "false", "off", "disabled"]
        .iter()
        .any(|v| value.trim().eq_ignore_ascii_case(v))
}

/// Looks at the host, cheapest first: the hook's environment (no system
/// call), [`SYSTEMD_BOOTED`] (one `statx`), then the hook's user (only on a
/// systemd host).
pub fn probe() -> Machined {
    if std::env::var(OPT_OUT_ENV).is_ok_and(|v| is_off(&v)) {
        return Machined::Disabled;
    }
    if rustix::fs::statx(
        rustix::fs::CWD,
        SYSTEMD_BOOTED,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::TYPE,
    )
    .is_err()
    {
        return Machined::NotSystemdHost;
    }
    if !rustix::process::geteuid().is_root() || !initial_user_namespace() {
        return Machined::Rootless;
    }
    Machined::Possible
}

/// Whether the hook runs in the initial user namespace: its
/// `/proc/self/uid_map` maps all ids to themselves.
fn initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let f: Vec<&str> = m.split_whitespace().collect();
        f == ["0", "0", "4294967295"]
    })
}

/// Why a container is not registered although the host allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRegistered {
    /// `OCI_SYSTEMD_HOOK_MACHINE` in `process.env` turns it off.
    OptedOut,
    /// The name the user set is not one machined accepts.
    InvalidName(String),
}

impl fmt::Display for NotRegistered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRegistered::OptedOut => {
                write!(f, "{OPT_OUT_ENV} turns it off in process.env")
            }
            NotRegistered::InvalidName(n) => write!(
                f,
                "the machine name {n:?} is not valid (letters, digits, '-' and '.' as in a host name, at most {NAME_MAX} characters)"
            ),
        }
    }
}

/// The machine for a container (see the module docs for the rules).
///
/// # Errors
/// [`NotRegistered`] when `process.env` opts out or the name set by the
/// annotation or the environment is invalid.
pub fn for_container(
    config: &ContainerConfig,
    machine_id: &MachineId,
) -> Result<Machine, NotRegistered> {
    if config.env_value(OPT_OUT_ENV).is_some_and(is_off) {
        return Err(NotRegistered::OptedOut);
    }
    let name = match config
        .machine_name
        .as_deref()
        .or(config.env_value(NAME_ENV))
        .filter(|n| !n.is_empty())
    {
        Some(n) if name_is_valid(n) => n.to_string(),
        Some(n) => return Err(NotRegistered::InvalidName(n.to_string())),
        None => machine_id.to_string(),
    };
    Ok(Machine {
        name,
        id: machine_id.clone(),
        service: service(config.env_value("container")),
        root_directory: config.rootfs.clone(),
    })
}

/// The service: `container=` of `process.env` (systemd's
/// CONTAINER_INTERFACE.md; podman sets `podman`) when it is 1 to 64
/// printable ASCII characters, else [`DEFAULT_SERVICE`].
fn service(container: Option<&str>) -> String {
    match container {
        Some(s) if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()) => {
            s.to_string()
        }
        _ => DEFAULT_SERVICE.to_string(),
    }
}

/// machined's rule for a machine name, `hostname_is_valid(name, 0)` of
/// systemd: 1 to [`NAME_MAX`] characters; labels separated by single dots,
/// each of ASCII letters, digits and `-`, not starting or ending with `-`;
/// no leading or trailing dot.
pub fn name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(env: &[&str], annotation: Option<&str>) -> ContainerConfig {
        ContainerConfig {
            rootfs: PathBuf::from("/var/lib/containers/storage/overlay/x/merged"),
            args: vec!["/sbin/init".into()],
            env: env.iter().map(|s| s.to_string()).collect(),
            machine_name: annotation.map(str::to_string),
            ..Default::default()
        }
    }

    fn mid() -> MachineId {
        MachineId::parse("0af5a1c25d3b4f6e9a7b1c2d3e4f5a6b").unwrap()
    }

    #[test]
    fn defaults_name_is_the_machine_id_service_the_engine() {
        let m = for_container(&cfg(&["container=podman"], None), &mid()).unwrap();
        assert_eq!(m.name, "0af5a1c25d3b4f6e9a7b1c2d3e4f5a6b");
        assert_eq!(m.service, "podman");
        assert_eq!(
            m.root_directory,
            Path::new("/var/lib/containers/storage/overlay/x/merged")
        );
        assert_eq!(
            m.id_bytes(),
            [
                0x0a, 0xf5, 0xa1, 0xc2, 0x5d, 0x3b, 0x4f, 0x6e, 0x9a, 0x7b, 0x1c, 0x2d, 0x3e, 0x4f,
                0x5a, 0x6b
            ]
        );
        // No container= (runc, docker): the generic service.
        assert_eq!(
            for_container(&cfg(&[], None), &mid()).unwrap().service,
            "oci"
        );
        // A container= value that is not a plain word is not passed on.
        for bad in ["", "a b", "pod\nman", &"x".repeat(65)] {
            let env = format!("container={bad}");
            assert_eq!(
                for_container(&cfg(&[&env], None), &mid()).unwrap().service,
                "oci",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn annotation_wins_over_env_for_the_name() {
        let env = ["OCI_SYSTEMD_HOOK_MACHINE_NAME=from-env"];
        assert_eq!(
            for_container(&cfg(&env, None), &mid()).unwrap().name,
            "from-env"
        );
        assert_eq!(
            for_container(&cfg(&env, Some("web1.example")), &mid())
                .unwrap()
                .name,
            "web1.example"
        );
        // An empty value names nothing.
        assert_eq!(
            for_container(&cfg(&["OCI_SYSTEMD_HOOK_MACHINE_NAME="], Some("")), &mid())
                .unwrap()
                .name,
            mid().as_str()
        );
    }

    #[test]
    fn invalid_names_are_refused_not_altered() {
        for bad in [
            "web_1",
            "-web",
            "web-",
            ".web",
            "web.",
            "a..b",
            "web 1",
            "wéb",
            "a/b",
            &"a".repeat(65),
        ] {
            assert!(!name_is_valid(bad), "{bad:?}");
            assert_eq!(
                for_container(&cfg(&[], Some(bad)), &mid()),
                Err(NotRegistered::InvalidName(bad.to_string()))
            );
        }
        for good in [
            "web1",
            "a",
            "web-1.example.org",
            "0af5a1c25d3b4f6e9a7b1c2d3e4f5a6b",
            &"a".repeat(64),
        ] {
            assert!(name_is_valid(good), "{good:?}");
        }
    }

    #[test]
    fn opt_out_values() {
        for v in ["0", "no", "FALSE", "off", "Disabled", " 0 "] {
            assert!(is_off(v), "{v:?}");
            let env = format!("OCI_SYSTEMD_HOOK_MACHINE={v}");
            assert_eq!(
                for_container(&cfg(&[&env], None), &mid()),
                Err(NotRegistered::OptedOut)
            );
        }
        for v in ["1", "yes", "", "on"] {
            assert!(!is_off(v), "{v:?}");
            let env = format!("OCI_SYSTEMD_HOOK_MACHINE={v}");
            assert!(for_container(&cfg(&[&env], None), &mid()).is_ok());
        }
    }
}
