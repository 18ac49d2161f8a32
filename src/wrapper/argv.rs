//! The runtime wrapper's command line, pure: its own options, the runtime's
//! global options and subcommand, and `create`/`run`'s bundle.
//!
//! The runtime's flags are read the way runc reads them (urfave/cli on Go's
//! `flag` package): one or two dashes (`--root X`, `-root X`), a value either
//! in the next argument or after `=` (`--bundle=X`, `-b=X`), `--` ends the
//! options, and a subcommand's flags may also come after its positional
//! arguments (urfave/cli reorders them). crun (argp) accepts the same long and
//! short spellings, plus its `--config`/`-f` to name another config file
//! relative to the bundle.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A command line the wrapper cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// An option that needs a value is the last argument (`--runtime`,
    /// `--bundle`, …); the option as given.
    #[error("option {0} needs a value")]
    NoValue(String),
    /// `--runtime` with an empty value.
    #[error("option --runtime needs a non-empty value")]
    EmptyRuntime,
}

/// The wrapper's own options and what goes to the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Own {
    /// `--runtime PATH` or `--runtime=PATH` (last one wins), when given.
    pub runtime: Option<OsString>,
    /// Everything after the wrapper's options (and after a `--` that ends
    /// them), passed to the runtime unchanged.
    pub runtime_args: Vec<OsString>,
}

/// Parses `oci-systemd-hook runtime [--runtime PATH] [--] RUNTIME-ARGS...`
/// (`args` is what follows `runtime`, or argv\[1..\] of the
/// `oci-systemd-runtime` link). The wrapper's options end at `--` (consumed)
/// or at the first other argument (kept, it is the runtime's).
///
/// # Errors
/// [`UsageError`] for `--runtime` without a (non-empty) value.
pub fn parse_own(args: &[OsString]) -> Result<Own, UsageError> {
    let mut runtime = None;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let b = a.as_bytes();
        if b == b"--" {
            i += 1;
            break;
        }
        let value = if b == b"--runtime" {
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| UsageError::NoValue("--runtime".into()))?
        } else if let Some(v) = b.strip_prefix(b"--runtime=") {
            OsStr::from_bytes(v).to_os_string()
        } else {
            break;
        };
        if value.is_empty() {
            return Err(UsageError::EmptyRuntime);
        }
        runtime = Some(value);
        i += 1;
    }
    Ok(Own {
        runtime,
        runtime_args: args[i.min(args.len())..].to_vec(),
    })
}

/// runc's and crun's global options that take a value (runc `--log`,
/// `--log-format`, `--root`, `--criu`, `--rootless`; crun also
/// `--cgroup-manager`, `--log-level`). Every other global option is a switch.
const GLOBAL_VALUE_OPTIONS: &[&str] = &[
    "log",
    "log-format",
    "log-level",
    "root",
    "criu",
    "rootless",
    "cgroup-manager",
];

/// `create`'s and `run`'s options that take a value (runc: `--bundle`/`-b`,
/// `--console-socket`, `--pid-file`, `--preserve-fds`; crun also
/// `--config`/`-f`). Every other one is a switch (`--detach`, `--keep`,
/// `--no-pivot`, `--no-new-keyring`, `--no-subreaper`).
const CREATE_VALUE_OPTIONS: &[&str] = &[
    "bundle",
    "b",
    "console-socket",
    "pid-file",
    "preserve-fds",
    "config",
    "f",
];

/// A flag's name and inline value: `--name=value` → (`name`, Some(`value`)),
/// `-n` → (`n`, None); `None` for a positional argument (no dash, or a bare
/// `-`). `--` is handled by the callers.
fn flag(arg: &OsStr) -> Option<(&[u8], Option<&OsStr>)> {
    let b = arg.as_bytes();
    let rest = b.strip_prefix(b"--").or_else(|| b.strip_prefix(b"-"))?;
    if rest.is_empty() {
        return None;
    }
    Some(match rest.iter().position(|&c| c == b'=') {
        Some(eq) => (&rest[..eq], Some(OsStr::from_bytes(&rest[eq + 1..]))),
        None => (rest, None),
    })
}

fn takes_value(name: &[u8], table: &[&str]) -> bool {
    table.iter().any(|t| t.as_bytes() == name)
}

/// What the runtime's global options and subcommand are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Globals {
    /// Index of the subcommand in the runtime's arguments; `None` when there
    /// is none (`runc --version`, `runc` alone).
    pub subcommand: Option<usize>,
    /// `--log FILE`, the runtime's log that containerd's shim reads back
    /// when a command fails.
    pub log: Option<PathBuf>,
    /// `--log-format json` (else text).
    pub log_json: bool,
}

/// Finds the subcommand after the runtime's global options (see the module
/// docs for the syntax). A global option that needs a value but is last
/// leaves no subcommand.
pub fn globals(args: &[OsString]) -> Globals {
    let mut g = Globals::default();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a.as_bytes() == b"--" {
            g.subcommand = (i + 1 < args.len()).then_some(i + 1);
            return g;
        }
        let Some((name, inline)) = flag(a) else {
            g.subcommand = Some(i);
            return g;
        };
        let mut value = inline;
        if inline.is_none() && takes_value(name, GLOBAL_VALUE_OPTIONS) {
            i += 1;
            value = args.get(i).map(OsString::as_os_str);
        }
        match (name, value) {
            (b"log", Some(v)) => g.log = Some(PathBuf::from(v)),
            (b"log-format", Some(v)) => g.log_json = v == "json",
            _ => {}
        }
        i += 1;
    }
    g
}

/// Whether the wrapper patches config.json before this subcommand: `create`
/// and `run`, the two that start a container from a bundle.
pub fn patches(subcommand: &OsStr) -> bool {
    subcommand == "create" || subcommand == "run"
}

/// What `create` and `run` are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    /// `--bundle`/`-b` (last one wins); the current directory (`.`) when
    /// absent, as in runc.
    pub bundle: PathBuf,
    /// crun's `--config`/`-f`; `config.json` when absent.
    pub config: Option<PathBuf>,
    /// The container id: the first positional argument, when given.
    pub id: Option<OsString>,
}

impl Create {
    /// The config file the runtime will read: `config` (default
    /// `config.json`) relative to the bundle, or as is when absolute.
    pub fn config_path(&self) -> PathBuf {
        self.bundle
            .join(self.config.as_deref().unwrap_or("config.json".as_ref()))
    }
}

/// Parses the arguments after `create` or `run`.
///
/// # Errors
/// [`UsageError::NoValue`] when an option that needs a value is last.
pub fn create(args: &[OsString]) -> Result<Create, UsageError> {
    let mut c = Create {
        bundle: PathBuf::from("."),
        config: None,
        id: None,
    };
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a.as_bytes() == b"--" {
            if c.id.is_none() {
                c.id = args.get(i + 1).cloned();
            }
            break;
        }
        match flag(a) {
            None => {
                if c.id.is_none() {
                    c.id = Some(a.clone());
                }
            }
            Some((name, inline)) => {
                let mut value = inline;
                if inline.is_none() && takes_value(name, CREATE_VALUE_OPTIONS) {
                    i += 1;
                    value = Some(
                        args.get(i)
                            .ok_or_else(|| UsageError::NoValue(a.to_string_lossy().into()))?,
                    );
                }
                match (name, value) {
                    (b"bundle" | b"b", Some(v)) => c.bundle = PathBuf::from(v),
                    (b"config" | b"f", Some(v)) => c.config = Some(PathBuf::from(v)),
                    _ => {}
                }
            }
        }
        i += 1;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn own_options() {
        assert_eq!(
            parse_own(&os(&[
                "--runtime",
                "/usr/bin/crun",
                "--",
                "--root",
                "/r",
                "state",
                "x"
            ])),
            Ok(Own {
                runtime: Some("/usr/bin/crun".into()),
                runtime_args: os(&["--root", "/r", "state", "x"]),
            })
        );
        assert_eq!(
            parse_own(&os(&["--runtime=crun", "create", "x"])),
            Ok(Own {
                runtime: Some("crun".into()),
                runtime_args: os(&["create", "x"]),
            })
        );
        // Docker's runtimeArgs ["runtime", "--"] then the shim's arguments.
        assert_eq!(
            parse_own(&os(&["--", "--", "create"]))
                .unwrap()
                .runtime_args,
            os(&["--", "create"])
        );
        // No own option: the runtime's global options are not ours.
        assert_eq!(
            parse_own(&os(&["--root", "/r", "--log", "l", "create"]))
                .unwrap()
                .runtime_args,
            os(&["--root", "/r", "--log", "l", "create"])
        );
        assert_eq!(parse_own(&[]).unwrap(), Own::default());
        assert_eq!(
            parse_own(&os(&["--runtime"])),
            Err(UsageError::NoValue("--runtime".into()))
        );
        assert_eq!(
            parse_own(&os(&["--runtime=", "state"])),
            Err(UsageError::EmptyRuntime)
        );
    }

    #[test]
    fn subcommand_after_global_options() {
        // containerd's runc shim (go-runc).
        let shim = os(&[
            "--root",
            "/run/containerd/runc/moby",
            "--log",
            "/run/containerd/io.containerd.runtime.v2.task/moby/abc/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "abc",
        ]);
        let g = globals(&shim);
        assert_eq!(g.subcommand, Some(7));
        assert_eq!(
            g.log.as_deref(),
            Some("/run/containerd/io.containerd.runtime.v2.task/moby/abc/log.json".as_ref())
        );
        assert!(g.log_json);
        // Go's one-dash and `=` spellings; a value that looks like a command.
        let g = globals(&os(&[
            "-root=/r", "-log", "create", "--debug", "state", "x",
        ]));
        assert_eq!(g.subcommand, Some(4));
        assert_eq!(g.log.as_deref(), Some("create".as_ref()));
        assert!(!g.log_json);
        assert_eq!(
            globals(&os(&["--log-format=text", "delete"])).subcommand,
            Some(1)
        );
        assert_eq!(globals(&os(&["--", "run", "x"])).subcommand, Some(1));
        // No subcommand.
        for args in [&[][..], &["--version"], &["--root"], &["--"], &["-h"]] {
            assert_eq!(globals(&os(args)).subcommand, None, "{args:?}");
        }
    }

    #[test]
    fn only_create_and_run_patch() {
        assert!(patches("create".as_ref()));
        assert!(patches("run".as_ref()));
        for s in [
            "start", "state", "delete", "kill", "exec", "ps", "Create", "spec",
        ] {
            assert!(!patches(s.as_ref()), "{s}");
        }
    }

    #[test]
    fn bundle_spellings() {
        for (args, bundle) in [
            (&["--bundle", "/b1", "id"][..], "/b1"),
            (&["--bundle=/b2", "id"], "/b2"),
            (&["-b", "/b3", "id"], "/b3"),
            (&["-b=/b4", "id"], "/b4"),
            (&["-bundle", "/b5", "id"], "/b5"),
            (&["id", "--bundle", "/b6"], "/b6"),
            (&["--bundle", "/old", "--bundle", "rel/b7", "id"], "rel/b7"),
            (&["id"], "."),
            // Values of other options are skipped, never read as the bundle.
            (
                &["--pid-file", "--bundle", "--console-socket=/s", "id"],
                ".",
            ),
            (&["--detach", "--bundle", "/b8", "--no-pivot", "id"], "/b8"),
            (&["id", "--", "--bundle", "/not"], "."),
        ] {
            let c = create(&os(args)).unwrap();
            assert_eq!(c.bundle, PathBuf::from(bundle), "{args:?}");
            assert_eq!(c.config_path(), PathBuf::from(bundle).join("config.json"));
        }
    }

    #[test]
    fn id_and_config() {
        let c = create(&os(&["--pid-file", "/p", "-b", "/b", "web1"])).unwrap();
        assert_eq!(c.id.as_deref(), Some("web1".as_ref()));
        let c = create(&os(&["-f", "other.json", "-b", "/b", "x"])).unwrap();
        assert_eq!(c.config_path(), PathBuf::from("/b/other.json"));
        let c = create(&os(&["--config=/abs.json", "x"])).unwrap();
        assert_eq!(c.config_path(), PathBuf::from("/abs.json"));
        let c = create(&os(&["--", "-x"])).unwrap();
        assert_eq!(c.id.as_deref(), Some("-x".as_ref()));
        assert_eq!(create(&os(&[])).unwrap().id, None);
        assert_eq!(
            create(&os(&["id", "--bundle"])),
            Err(UsageError::NoValue("--bundle".into()))
        );
        assert_eq!(
            create(&os(&["id", "-b"])),
            Err(UsageError::NoValue("-b".into()))
        );
    }
}
