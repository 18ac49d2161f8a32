//! `oci-systemd-hook runtime`: an OCI runtime wrapper for engines that never
//! read hooks.d (Docker, containerd's `ctr`, Kubernetes on containerd).
//!
//! Registered as the engine's runtime in place of runc, it is called with
//! runc's command line. On `create` and `run` it finds the bundle as runc does
//! ([`argv`]), reads `config.json`'s `process` with the hook's own lenient
//! parser ([`config::parse_process`]: the other fields are the hook's
//! business at prestart) and, when the hook would act on the container
//! ([`crate::decide::skip_reason`], the same rule as at prestart), adds this binary as a `prestart` and a
//! `poststop` hook ([`hooks`]) and rewrites the file atomically (a temporary
//! file in the bundle with the same mode and owner, renamed over it; no
//! fsync, see [`write_atomic`]). Then it execs the real runtime with the arguments
//! unchanged. Any other subcommand is a plain exec: nothing is parsed beyond
//! finding the subcommand, no log is opened, no file read.
//!
//! The real runtime: `--runtime PATH`, else `$OCI_SYSTEMD_HOOK_RUNTIME`, else
//! `runc`, looked up on `PATH` as Docker and containerd look up runc.
//!
//! Two ways in, one binary:
//! - `oci-systemd-hook runtime [--runtime PATH] [--] RUNTIME-ARGS...` (Docker's
//!   `runtimeArgs`);
//! - a link named [`LINK_NAME`] to the binary, called with runc's arguments
//!   only: containerd's runc shim `BinaryName` and `ctr run --runc-binary`
//!   take a path and no arguments.
//!
//! Errors (unreadable or malformed config.json, a `hooks` of the wrong type,
//! a failed write): one line on stderr and in the system log, also appended
//! to the runtime's `--log` file (JSON when `--log-format json`) where
//! containerd's shim reads a failed command's reason back; exit 1;
//! config.json unchanged; the runtime is not run.

pub mod argv;
pub mod hooks;

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::value::RawValue;

use crate::{config, decide, log as hooklog, state};

/// The name of the link that makes the binary the wrapper with no
/// arguments of its own (installed next to the hook).
pub const LINK_NAME: &str = "oci-systemd-runtime";

/// Environment variable naming the real runtime when `--runtime` is absent.
pub const RUNTIME_ENV: &str = "OCI_SYSTEMD_HOOK_RUNTIME";

/// The real runtime when neither `--runtime` nor [`RUNTIME_ENV`] names one.
pub const DEFAULT_RUNTIME: &str = "runc";

/// Set in the real runtime's environment; a wrapper that finds it set was
/// started by itself (the runtime it was given is the wrapper again) and
/// stops instead of exec'ing itself forever.
pub const LOOP_ENV: &str = "OCI_SYSTEMD_HOOK_WRAPPED";

/// Usage of the wrapper, for `--help` and usage errors.
pub const USAGE: &str = "\
usage: oci-systemd-hook runtime [--runtime PATH] [--] RUNTIME-ARGS...
       oci-systemd-runtime RUNTIME-ARGS...

An OCI runtime wrapper: on create and run it adds this hook to the bundle's
config.json (prestart and poststop) when the container runs systemd, then
execs the real runtime (--runtime, else $OCI_SYSTEMD_HOOK_RUNTIME, else runc
on PATH) with RUNTIME-ARGS unchanged.";

/// Runs the wrapper with `args` (what follows `runtime`, or argv\[1..\] of
/// the [`LINK_NAME`] link). Returns only on failure, with the exit code:
/// 2 for a usage error, 1 for any other.
pub fn main(args: &[OsString]) -> u8 {
    let own = match argv::parse_own(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("oci-systemd-hook: runtime: {e}\n{USAGE}");
            return 2;
        }
    };
    if std::env::var_os(LOOP_ENV).is_some() {
        eprintln!(
            "oci-systemd-hook: error: runtime: the runtime it was given runs this wrapper again \
             ({LOOP_ENV} is set); name the real runtime with --runtime or ${RUNTIME_ENV}"
        );
        return 1;
    }
    let runtime = own
        .runtime
        .or_else(|| std::env::var_os(RUNTIME_ENV).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_RUNTIME.into());
    let args = &own.runtime_args;
    let globals = argv::globals(args);
    if let Some(i) = globals.subcommand
        && argv::patches(&args[i])
    {
        hooklog::init();
        if let Err(e) = prepare(&args[i + 1..]) {
            let line = format!("{e:#}");
            log::error!("{line}");
            if let Some(log) = &globals.log {
                append_runtime_log(log, globals.log_json, &line);
            }
            return 1;
        }
    }
    let err = std::process::Command::new(&runtime)
        .args(args)
        .env(LOOP_ENV, "1")
        .exec();
    eprintln!(
        "oci-systemd-hook: error: runtime: cannot run {}: {err}",
        runtime.to_string_lossy()
    );
    1
}

/// Adds the hook to the config of a `create`/`run` whose arguments (after
/// the subcommand) are `args`, when the hook acts on that container.
fn prepare(args: &[OsString]) -> anyhow::Result<()> {
    let create = argv::create(args)?;
    let id = create
        .id
        .as_deref()
        .map(OsStr::to_string_lossy)
        .unwrap_or_default();
    if id.is_empty() {
        hooklog::set_context("", "runtime", None);
    } else {
        hooklog::set_context(&id, state::short_id(&id), Some("runtime"));
    }
    let path = create.config_path();
    let bytes = config::read(&path)?;
    let summary = config::parse_process(&bytes, &path)?;
    if let Some(why) = decide::skip_reason(&summary) {
        log::debug!(
            "not a systemd container ({why}); {} left alone",
            path.display()
        );
        return Ok(());
    }
    let hook = hook_path()?;
    let hook_str = hook
        .to_str()
        .with_context(|| format!("the hook's path {} is not UTF-8", hook.display()))?;
    // Only `hooks` becomes a Value; every other top-level field stays its
    // raw text, written back byte for byte in its place (a 16 KiB config.json
    // is mostly seccomp, which the wrapper never needs to build).
    let mut top: indexmap::IndexMap<String, Box<RawValue>> = match serde_json::from_slice(&bytes) {
        Ok(t) => t,
        // Valid JSON of another type (an array): as hooks::add says it.
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return Err(hooks::PatchError::WrongType {
                field: ".".into(),
                expected: "an object",
            })
            .with_context(|| format!("{}: cannot add the hook", path.display()));
        }
        Err(e) => {
            return Err(e).with_context(|| format!("{} is not valid JSON", path.display()));
        }
    };
    let mut doc = serde_json::Value::Object(serde_json::Map::new());
    if let Some(raw) = top.get("hooks") {
        let hooks: serde_json::Value = serde_json::from_str(raw.get())
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        doc["hooks"] = hooks;
    }
    let added = hooks::add(&mut doc, hook_str, |p| same_file(Path::new(p), &hook))
        .with_context(|| format!("{}: cannot add the hook", path.display()))?;
    if added.is_empty() {
        log::debug!("{} already has the hook", path.display());
        return Ok(());
    }
    // An existing `hooks` keeps its place; a new one comes last.
    top.insert(
        "hooks".to_string(),
        serde_json::value::to_raw_value(&doc["hooks"]).context("serializing hooks")?,
    );
    let out = serde_json::to_vec(&top).context("serializing config.json")?;
    write_atomic(&path, &out).with_context(|| format!("cannot rewrite {}", path.display()))?;
    // Debug, not info: on `create` the runtime's stderr is often the
    // container's own (containerd's shim), and this is no news.
    log::debug!(
        "added {hook_str} to {} ({})",
        path.display(),
        added.join(", ")
    );
    Ok(())
}

/// This binary's path as the runtime will run the hook (`/proc/self/exe`).
fn hook_path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("reading /proc/self/exe")?;
    if exe.to_string_lossy().ends_with(" (deleted)") {
        bail!(
            "this binary ({}) was replaced while running; run the command again",
            exe.display()
        );
    }
    Ok(exe)
}

/// Whether `a` is `b`, by path or by file identity (another spelling or a
/// link of the same installed binary).
fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Replaces the regular file `path` with `bytes`: a temporary file in the
/// same directory with `path`'s mode and owner, written, renamed over
/// `path`. A reader sees the old file or the new one, never a part. On
/// error `path` is unchanged and the temporary file removed.
///
/// No fsync: config.json lives as long as the container's bundle, which
/// the engine wrote without one (containerd's shim bundle: one
/// `os.WriteFile`, on tmpfs under `/run/containerd`) and recreates after a
/// crash, and the runtime exec'd next reads it from the page cache. The two
/// fsyncs made `create` cost about 2 ms more on ext4 (issue 16's bench).
///
/// # Errors
/// When `path` is not a regular file (a symlink is not followed: renaming
/// over it would replace the link), or any step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let md = std::fs::symlink_metadata(path)?;
    if !md.is_file() {
        bail!("not a regular file");
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.oci-systemd-hook.")
        .tempfile_in(dir)
        .context("creating a temporary file")?;
    let file = tmp.as_file();
    if (file.metadata()?.uid(), file.metadata()?.gid()) != (md.uid(), md.gid()) {
        std::os::unix::fs::fchown(file, Some(md.uid()), Some(md.gid()))
            .context("setting the owner")?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(md.mode() & 0o7777))
        .context("setting the mode")?;
    tmp.write_all(bytes).context("writing")?;
    tmp.persist(path).map_err(|e| e.error).context("renaming")?;
    Ok(())
}

/// Appends `line` to the runtime's `--log` file in its format (runc's logrus
/// JSON `{"level","msg"}`, without `time`, or text), best effort:
/// containerd's shim reports the last error `msg` of that file when a
/// command fails.
fn append_runtime_log(path: &Path, json: bool, line: &str) {
    let msg = format!("oci-systemd-hook: {line}");
    let text = if json {
        serde_json::json!({"level": "error", "msg": msg}).to_string()
    } else {
        format!("level=error msg={msg:?}")
    };
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{text}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_keeps_mode_and_leaves_no_temporary_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.json");
        std::fs::write(&p, b"{}").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}");
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.json"]);
        // A symlink is refused, the link and its target untouched.
        let l = t.path().join("link.json");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(write_atomic(&l, b"x").is_err());
        assert!(std::fs::symlink_metadata(&l).unwrap().is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}");
        assert!(write_atomic(&t.path().join("missing.json"), b"x").is_err());
    }
}
