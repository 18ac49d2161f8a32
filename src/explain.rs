//! `oci-systemd-hook explain --bundle DIR [--pid PID] [--id ID]`: prints what
//! the hook would do for a real bundle (the decision, the prestart plan with
//! every step left out and why, the poststop plan) without touching
//! anything: no namespace is joined, nothing is created or mounted.
//!
//! The container id (for the machine-id) is `--id`, else guessed from the
//! bundle path (podman and CRI-O: `.../<id>/userdata`; otherwise the bundle
//! directory's name). Without `--pid` the container's cgroups are unknown,
//! so cgroup steps are not planned.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config;
use crate::decide::{Decision, decide};
use crate::facts::{HostFacts, host_facts};
use crate::plan::{self, SkipReason};

/// Usage line for `explain`.
pub const USAGE: &str = "usage: oci-systemd-hook explain --bundle DIR [--pid PID] [--id ID]";

/// Parsed `explain` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainArgs {
    /// The bundle directory (holds config.json).
    pub bundle: PathBuf,
    /// The container's init pid, to read its cgroups.
    pub pid: Option<i32>,
    /// The container id; guessed from the bundle path when absent.
    pub id: Option<String>,
}

/// Parses the arguments after `explain`.
///
/// # Errors
/// A message for a missing `--bundle`, an unknown flag, a flag without its
/// value or a pid that is not a positive number.
pub fn parse_args(args: &[String]) -> Result<ExplainArgs, String> {
    let (mut bundle, mut pid, mut id) = (None, None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{name} needs a value"))
        };
        match name {
            "--bundle" => bundle = Some(PathBuf::from(value()?)),
            "--pid" => {
                let v = value()?;
                pid = Some(
                    v.parse::<i32>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or(format!("--pid {v:?} is not a pid"))?,
                );
            }
            "--id" => id = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(ExplainArgs {
        bundle: bundle.ok_or("--bundle is required")?,
        pid,
        id,
    })
}

/// The container id implied by a bundle path.
pub fn id_from_bundle(bundle: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match name(bundle).as_deref() {
        Some("userdata") => bundle.parent().and_then(name).unwrap_or_default(),
        Some(n) => n.to_string(),
        None => String::new(),
    }
}

/// Writes the explanation to `out`.
///
/// # Errors
/// config.json cannot be loaded, or host facts cannot be read.
pub fn explain(args: &ExplainArgs, out: &mut impl Write) -> anyhow::Result<()> {
    write_explanation(args, out, |rootfs| {
        host_facts(args.pid, rootfs).context("reading host facts")
    })
}

/// [`explain`] with the host facts from `facts`, given the rootfs to look
/// the image's systemd up in (`None` without a pid when the rootfs is not
/// on the host; read only when the container is one to prepare).
fn write_explanation(
    args: &ExplainArgs,
    out: &mut impl Write,
    facts: impl FnOnce(Option<&Path>) -> anyhow::Result<HostFacts>,
) -> anyhow::Result<()> {
    let bundle = std::path::absolute(&args.bundle)?;
    let config = config::load_with_process(&bundle)?;
    let id = args.id.clone().unwrap_or_else(|| id_from_bundle(&bundle));
    writeln!(out, "bundle:   {}", bundle.display())?;
    writeln!(
        out,
        "rootfs:   {}{}",
        config.rootfs.display(),
        if config.readonly { " (read-only)" } else { "" }
    )?;
    writeln!(out, "id:       {id}")?;
    writeln!(
        out,
        "args[0]:  {}",
        config.args.first().map(String::as_str).unwrap_or("")
    )?;
    let machine_id = match decide(&config, &id) {
        Decision::Skip(why) => {
            writeln!(out, "decision: leave alone: {why}")?;
            return Ok(());
        }
        Decision::Apply(m) => m,
    };
    writeln!(
        out,
        "decision: prepare for systemd, machine-id {machine_id}"
    )?;
    let visible = args.pid.is_some() || config.rootfs.is_dir();
    let facts = facts(visible.then_some(config.rootfs.as_path()))?;
    write!(out, "host:     cgroup layout {}", facts.layout)?;
    match args.pid {
        Some(pid) => {
            let cg = facts
                .cgroups
                .systemd
                .as_ref()
                .or(facts.cgroups.unified.as_ref());
            writeln!(
                out,
                ", container cgroup {} (from /proc/{pid}/cgroup)",
                cg.map(|c| c.display().to_string()).unwrap_or("none".into())
            )?;
        }
        None => writeln!(out, "; no --pid: cgroup steps are not planned")?,
    }
    match (visible, facts.image_systemd) {
        (false, _) => writeln!(
            out,
            "image:    rootfs not on this host, no --pid: systemd version not looked up"
        )?,
        (true, None) => writeln!(out, "image:    no systemd found (libsystemd-shared-<N>.so)")?,
        (true, Some(v)) => writeln!(out, "image:    systemd {v} (libsystemd-shared-{v}.so)")?,
    }
    if visible {
        let choice = crate::cgmodel::choose(facts.layout, facts.image_systemd);
        writeln!(out, "cgroups:  {choice}")?;
    }
    let pre = plan::prestart(&config, &facts, &id, &machine_id)?;
    writeln!(out, "prestart:")?;
    writeln!(out, "  on the host:")?;
    numbered(out, "    ", &pre.host)?;
    writeln!(out, "  in the container's mount namespace:")?;
    numbered(out, "    ", &pre.container)?;
    // Without a pid the container's cgroups are unknown: said above.
    for s in pre
        .skipped
        .iter()
        .filter(|s| args.pid.is_some() || !matches!(s.reason, SkipReason::NoCgroup(_)))
    {
        writeln!(out, "  skip: {s}")?;
    }
    let post = plan::poststop(
        &config,
        &id,
        &machine_id,
        None,
        facts.layout == crate::cgroup::Layout::Legacy,
        facts.machined,
    );
    writeln!(out, "poststop:")?;
    if !post.host.is_empty() {
        writeln!(out, "  on the host:")?;
        numbered(out, "    ", &post.host)?;
    }
    if !post.rootfs.is_empty() {
        writeln!(out, "  on the rootfs:")?;
        numbered(out, "    ", &post.rootfs)?;
    }
    for s in &post.skipped {
        writeln!(out, "  skip: {s}")?;
    }
    Ok(())
}

/// Writes `steps` one a line, numbered from 1, after `indent`.
fn numbered(
    out: &mut impl Write,
    indent: &str,
    steps: &[impl std::fmt::Display],
) -> std::io::Result<()> {
    for (i, s) in steps.iter().enumerate() {
        writeln!(out, "{indent}{}. {s}", i + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args() {
        assert_eq!(
            parse_args(&strings(&["--bundle", "/b", "--pid=42", "--id", "x"])),
            Ok(ExplainArgs {
                bundle: "/b".into(),
                pid: Some(42),
                id: Some("x".into())
            })
        );
        assert!(
            parse_args(&strings(&["--pid", "1"]))
                .unwrap_err()
                .contains("--bundle")
        );
        assert!(
            parse_args(&strings(&["--bundle"]))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(parse_args(&strings(&["--bundle", "/b", "--pid", "-3"])).is_err());
        assert!(parse_args(&strings(&["--bundle", "/b", "--loud"])).is_err());
    }

    #[test]
    fn ids_from_bundles() {
        assert_eq!(
            id_from_bundle(Path::new(
                "/var/lib/containers/storage/overlay-containers/abc/userdata"
            )),
            "abc"
        );
        assert_eq!(id_from_bundle(Path::new("/srv/bundles/web1")), "web1");
    }

    /// A podman bundle (`<64-hex id>/userdata`) under `t` holding the
    /// podman 4.3 `--systemd=false` config.json fixture.
    fn podman_fixture_bundle(t: &tempfile::TempDir) -> PathBuf {
        let bundle = t
            .path()
            .join("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/userdata");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/config/podman-4.3-systemd-false.json"
            ),
            bundle.join("config.json"),
        )
        .unwrap();
        bundle
    }

    /// The one test of the explain text: the podman fixture on a hybrid
    /// host, with and without a pid, for a systemd 252 (v1 view) and a 262
    /// (cgroup2 view) image; and the 262 image on a legacy host (the hook's
    /// own cgroup2).
    #[test]
    fn golden_explain_text() {
        use crate::cgroup::{ContainerCgroups, Layout};
        let t = tempfile::tempdir().unwrap();
        let bundle = podman_fixture_bundle(&t);
        let cg = PathBuf::from("/libpod_parent/libpod-0123456789abcdef");
        for (layout, pid, image_systemd, golden) in [
            (Layout::Hybrid, None, None, "podman-hybrid-no-pid.txt"),
            (Layout::Hybrid, Some(42), Some(252), "podman-hybrid-pid.txt"),
            (
                Layout::Hybrid,
                Some(42),
                Some(262),
                "podman-hybrid-sid-pid.txt",
            ),
            (
                Layout::Legacy,
                Some(42),
                Some(262),
                "podman-legacy-sid-pid.txt",
            ),
        ] {
            let facts = HostFacts {
                layout,
                cgroups: match pid {
                    Some(_) => ContainerCgroups {
                        systemd: Some(cg.clone()),
                        memory: Some(cg.clone()),
                        unified: (layout == Layout::Hybrid).then(|| cg.clone()),
                    },
                    None => ContainerCgroups::default(),
                },
                systemd_mount: Some("/sys/fs/cgroup/systemd".into()),
                unified_mount: (layout == Layout::Hybrid).then(|| "/sys/fs/cgroup/unified".into()),
                cgroup_memory_limit: None,
                journal_root: "/var/log/journal".into(),
                selinux: false,
                host_machine_id: None,
                image_systemd,
                machined: crate::machine::Machined::NotSystemdHost,
            };
            let args = ExplainArgs {
                bundle: bundle.clone(),
                pid,
                id: None,
            };
            let mut out = Vec::new();
            write_explanation(&args, &mut out, |_| Ok(facts)).unwrap();
            let text = String::from_utf8(out)
                .unwrap()
                .replace(&bundle.display().to_string(), "<bundle>");
            let path = format!(
                "{}/tests/fixtures/explain/{golden}",
                env!("CARGO_MANIFEST_DIR")
            );
            if std::env::var_os("OSH_BLESS").is_some() {
                std::fs::write(&path, &text).unwrap();
            }
            assert_eq!(text, std::fs::read_to_string(&path).unwrap(), "{golden}");
        }
    }

    #[test]
    fn explains_the_podman_fixture_without_pid() {
        let t = tempfile::tempdir().unwrap();
        let bundle = podman_fixture_bundle(&t);
        let mut out = Vec::new();
        explain(
            &ExplainArgs {
                bundle,
                pid: None,
                id: None,
            },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "decision: prepare for systemd, machine-id 0123456789abcdef0123456789abcdef"
            ),
            "{text}"
        );
        assert!(
            text.contains("1. mount tmpfs on /run mode 755 size 67108864 with tmpcopyup"),
            "{text}"
        );
        assert!(
            text.contains("mount tmpfs on /tmp mode 1777 size 268435456"),
            "{text}"
        );
        assert!(text.contains("no --pid"), "{text}");
        assert!(text.contains("empty /etc/machine-id"), "{text}");
    }
}
