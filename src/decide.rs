//! Whether the hook acts on a container at all, and with which machine-id.
//!
//! Rules (podman's `--systemd=true` detection, and the original hook's
//! opt-out):
//! - `process.args[0]` must be a systemd init: its basename is `init` or
//!   `systemd` (covers /sbin/init, /usr/sbin/init, /usr/local/sbin/init and
//!   any path ending in /systemd). `/dev/init` is the runtime's init shim
//!   (podman `--init`), not systemd. Empty args never match.
//! - `oci-systemd-hook=disabled` in `process.env` (value compared
//!   case-insensitively, whole value) opts the container out.

use std::path::Path;

use crate::config::{ContainerConfig, clean};
use crate::machine_id::MachineId;

/// The environment variable that opts a container out.
pub const OPT_OUT_KEY: &str = "oci-systemd-hook";

/// Why the hook leaves a container alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `process.args` is empty or its first element is empty.
    NoArgs,
    /// `process.args[0]` is the runtime's `/dev/init` shim.
    InitShim,
    /// `process.args[0]` is not a systemd init (the value).
    NotSystemd(String),
    /// `oci-systemd-hook=disabled` is in `process.env`.
    OptedOut,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NoArgs => write!(f, "process.args is empty"),
            Skip::InitShim => write!(f, "process.args[0] is the /dev/init shim"),
            Skip::NotSystemd(a) => write!(f, "process.args[0] {a:?} is not a systemd init"),
            Skip::OptedOut => write!(f, "{OPT_OUT_KEY}=disabled is set in process.env"),
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Prepare the container for systemd with this machine-id.
    Apply(MachineId),
    /// Touch nothing.
    Skip(Skip),
}

/// Whether `arg0` names a systemd init (see the module docs).
pub fn is_systemd_init(arg0: &str) -> bool {
    if arg0.is_empty() || clean(Path::new(arg0)) == Path::new("/dev/init") {
        return false;
    }
    matches!(
        Path::new(arg0).file_name().and_then(|n| n.to_str()),
        Some("init" | "systemd")
    )
}

/// Why the hook leaves the container of `config` alone, or `None` when it
/// acts on it (see the module docs). The runtime wrapper uses this rule
/// before the container exists, when there is no id yet.
pub fn skip_reason(config: &ContainerConfig) -> Option<Skip> {
    let arg0 = config.args.first().map(String::as_str).unwrap_or("");
    if arg0.is_empty() {
        return Some(Skip::NoArgs);
    }
    if clean(Path::new(arg0)) == Path::new("/dev/init") {
        return Some(Skip::InitShim);
    }
    if !is_systemd_init(arg0) {
        return Some(Skip::NotSystemd(arg0.to_string()));
    }
    if config
        .env_value(OPT_OUT_KEY)
        .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
    {
        return Some(Skip::OptedOut);
    }
    None
}

/// Decides for a container given its config and state id.
pub fn decide(config: &ContainerConfig, id: &str) -> Decision {
    match skip_reason(config) {
        Some(why) => Decision::Skip(why),
        None => Decision::Apply(MachineId::for_container(
            config.env_value("container_uuid"),
            id,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str], env: &[&str]) -> ContainerConfig {
        ContainerConfig {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    const ID: &str = "4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

    #[test]
    fn systemd_inits_apply() {
        for a in [
            "/sbin/init",
            "/usr/sbin/init",
            "/usr/local/sbin/init",
            "/lib/systemd/systemd",
            "/usr/lib/systemd/systemd",
            "init",
            "systemd",
        ] {
            assert!(
                matches!(
                    decide(&cfg(&[a, "--log-level=debug"], &[]), ID),
                    Decision::Apply(_)
                ),
                "{a}"
            );
        }
    }

    #[test]
    fn others_are_skipped() {
        assert_eq!(decide(&cfg(&[], &[]), ID), Decision::Skip(Skip::NoArgs));
        assert_eq!(decide(&cfg(&[""], &[]), ID), Decision::Skip(Skip::NoArgs));
        assert_eq!(
            decide(&cfg(&["/dev/init", "--", "/sbin/init"], &[]), ID),
            Decision::Skip(Skip::InitShim)
        );
        for a in [
            "sleep",
            "/bin/sh",
            "/sbin/initctl",
            "/usr/bin/systemd-nspawn",
            "/bin/systemctl",
        ] {
            assert!(
                matches!(
                    decide(&cfg(&[a], &[]), ID),
                    Decision::Skip(Skip::NotSystemd(_))
                ),
                "{a}"
            );
        }
    }

    #[test]
    fn trailing_slash_still_names_init() {
        // Path::file_name ignores a trailing slash; a directory is still not
        // what podman matches, but the basename rule accepts it as the C hook
        // did. Document the behaviour rather than guess.
        assert!(is_systemd_init("/sbin/init/"));
    }

    #[test]
    fn opt_out_is_case_insensitive_whole_value() {
        assert_eq!(
            decide(&cfg(&["/sbin/init"], &["oci-systemd-hook=DISABLED"]), ID),
            Decision::Skip(Skip::OptedOut)
        );
        assert!(matches!(
            decide(
                &cfg(&["/sbin/init"], &["oci-systemd-hook=disabled-not"]),
                ID
            ),
            Decision::Apply(_)
        ));
        assert!(matches!(
            decide(&cfg(&["/sbin/init"], &["OCI-SYSTEMD-HOOK=disabled"]), ID),
            Decision::Apply(_)
        ));
    }

    #[test]
    fn machine_id_comes_from_container_uuid_then_id() {
        let Decision::Apply(m) = decide(
            &cfg(
                &["/sbin/init"],
                &["container_uuid=0af5a1c2-5d3b-4f6e-9a7b-1c2d3e4f5a6b"],
            ),
            ID,
        ) else {
            panic!()
        };
        assert_eq!(m.as_str(), "0af5a1c25d3b4f6e9a7b1c2d3e4f5a6b");
        let Decision::Apply(m) = decide(&cfg(&["/sbin/init"], &[]), ID) else {
            panic!()
        };
        assert_eq!(m.as_str(), &ID[..32]);
    }
}
