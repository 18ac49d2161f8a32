//! The OCI state a runtime writes to a hook's stdin.
//!
//! Source: runtime-spec `runtime.md#state` and `config.md#posix-platform-hooks`
//! ("hooks MUST receive the state of the container on stdin"). Real inputs
//! captured from podman 4.3 (crun and runc) and bare runc 1.1 live in
//! `tests/fixtures/state/` (copied from the project's shared fixtures).
//!
//! Parsing goes through [`oci_spec::runtime::State`]; before that the JSON
//! value is normalised for what runtimes really send:
//! - the pre-1.0 key `bundlePath` is accepted when `bundle` is missing;
//! - an empty string counts as a missing field;
//! - crun's extra `root` field (the rootfs) is ignored: it is never the bundle;
//! - a `status` outside the runtime-spec's four values is dropped (the hook
//!   never relies on it).

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;

/// Largest state document accepted on stdin, in bytes. Real states are well
/// under 4 KiB; anything larger is refused without reading it all.
pub const MAX_STATE_BYTES: u64 = 1024 * 1024;

/// Why the state on stdin cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the OCI state from stdin: {0}")]
    Read(#[from] std::io::Error),
    #[error("the OCI state on stdin is larger than {MAX_STATE_BYTES} bytes")]
    TooLarge,
    #[error("the OCI state on stdin is empty")]
    Empty,
    #[error("the OCI state on stdin is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("the OCI state on stdin has no usable `{0}` field")]
    Missing(&'static str),
    #[error(
        "the OCI state's bundle {0:?} is not an absolute path (runtime-spec: \"the absolute path to the container's bundle directory\")"
    )]
    RelativeBundle(PathBuf),
}

/// The fields of the OCI state that the hook uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookState {
    /// Container id as given by the runtime (`id`), never empty.
    pub id: String,
    /// The container's init process (`pid`) when the runtime gave one that is
    /// greater than zero; `None` at poststop.
    pub pid: Option<i32>,
    /// Absolute or relative path of the bundle (`bundle`, or the old
    /// `bundlePath`), never empty.
    pub bundle: PathBuf,
}

impl HookState {
    /// The first 12 characters of the id, as podman shows it; used in logs.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

/// The first 12 characters of `id` (all of it when shorter).
pub fn short_id(id: &str) -> &str {
    match id.char_indices().nth(12) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// Reads at most [`MAX_STATE_BYTES`] from `input` and parses it.
///
/// # Errors
/// [`StateError`] on a read error, an oversized or empty document, invalid
/// JSON or a missing `id`/`bundle`.
pub fn read(input: impl Read) -> Result<HookState, StateError> {
    let mut buf = Vec::new();
    input.take(MAX_STATE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_STATE_BYTES {
        return Err(StateError::TooLarge);
    }
    parse(&buf)
}

/// Parses one state document (see the module docs for the accepted shapes).
///
/// # Errors
/// [`StateError::Empty`], [`StateError::Json`] (not JSON, or JSON of the wrong
/// shape), [`StateError::Missing`] for an absent or empty `id` or bundle,
/// [`StateError::RelativeBundle`] for a bundle that is not absolute.
pub fn parse(bytes: &[u8]) -> Result<HookState, StateError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StateError::Empty);
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(StateError::Json)?;
    let Some(obj) = value.as_object_mut() else {
        return Err(StateError::Json(serde::de::Error::custom(
            "expected a JSON object",
        )));
    };
    // An empty string counts as missing.
    obj.retain(|_, v| v.as_str() != Some(""));
    if !obj.contains_key("bundle")
        && let Some(old) = obj.remove("bundlePath")
    {
        obj.insert("bundle".into(), old);
    }
    // crun adds `root` (the rootfs); it must never stand in for the bundle.
    obj.remove("root");
    if let Some(status) = obj.get("status").and_then(Value::as_str)
        && !matches!(status, "creating" | "created" | "running" | "stopped")
    {
        obj.remove("status");
    }
    let state: oci_spec::runtime::State =
        serde_json::from_value(value).map_err(StateError::Json)?;
    if state.id().is_empty() {
        return Err(StateError::Missing("id"));
    }
    if state.bundle().as_os_str().is_empty() {
        return Err(StateError::Missing("bundle"));
    }
    if !state.bundle().is_absolute() {
        return Err(StateError::RelativeBundle(state.bundle().clone()));
    }
    Ok(HookState {
        id: state.id().clone(),
        pid: state.pid().filter(|p| *p > 0),
        bundle: state.bundle().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state");

    fn fixture(name: &str) -> HookState {
        let bytes = std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture present");
        parse(&bytes).expect("fixture parses")
    }

    const PODMAN_ID: &str = "4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";
    const PODMAN_BUNDLE: &str = "/var/lib/containers/storage/overlay-containers/4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b/userdata";

    #[test]
    fn podman_crun_prestart_uses_bundle_not_root() {
        let s = fixture("podman-4.3-crun-prestart.json");
        assert_eq!(s.id, PODMAN_ID);
        assert_eq!(s.pid, Some(29311));
        assert_eq!(s.bundle, PathBuf::from(PODMAN_BUNDLE));
    }

    #[test]
    fn podman_runc_prestart() {
        let s = fixture("podman-4.3-runc-prestart.json");
        assert_eq!(s.pid, Some(28986));
        assert_eq!(s.bundle, PathBuf::from(PODMAN_BUNDLE));
        assert_eq!(s.short_id(), "4f3c2a1b9e8d");
    }

    #[test]
    fn poststop_fixtures_have_no_pid() {
        for f in [
            "podman-4.3-crun-poststop.json",
            "podman-4.3-runc-poststop.json",
            "runc-1.1-direct-poststop.json",
        ] {
            assert_eq!(fixture(f).pid, None, "{f}");
        }
    }

    #[test]
    fn bare_runc_prestart() {
        let s = fixture("runc-1.1-direct-prestart.json");
        assert_eq!(s.id, "runc1");
        assert_eq!(s.pid, Some(21156));
        assert_eq!(s.bundle, PathBuf::from("/srv/bundles/runc1"));
        assert_eq!(s.short_id(), "runc1");
    }

    #[test]
    fn old_bundle_path_key_is_accepted() {
        let s = parse(br#"{"ociVersion":"1.0.0","id":"a","pid":3,"bundlePath":"/b"}"#).unwrap();
        assert_eq!(s.bundle, PathBuf::from("/b"));
    }

    #[test]
    fn empty_bundle_falls_back_to_bundle_path_and_empty_counts_as_missing() {
        let s = parse(br#"{"id":"a","bundle":"","bundlePath":"/b"}"#).unwrap();
        assert_eq!(s.bundle, PathBuf::from("/b"));
        assert!(matches!(
            parse(br#"{"id":"a","bundle":""}"#),
            Err(StateError::Missing("bundle"))
        ));
        assert!(matches!(
            parse(br#"{"id":"","bundle":"/b"}"#),
            Err(StateError::Missing("id"))
        ));
    }

    #[test]
    fn relative_bundle_is_refused() {
        assert!(matches!(
            parse(br#"{"id":"a","bundle":"userdata"}"#),
            Err(StateError::RelativeBundle(_))
        ));
    }

    #[test]
    fn crun_root_is_never_the_bundle() {
        assert!(matches!(
            parse(br#"{"id":"a","root":"/rootfs"}"#),
            Err(StateError::Missing("bundle"))
        ));
    }

    #[test]
    fn zero_or_negative_pid_is_no_pid() {
        assert_eq!(
            parse(br#"{"id":"a","bundle":"/b","pid":0}"#).unwrap().pid,
            None
        );
        assert_eq!(
            parse(br#"{"id":"a","bundle":"/b","pid":-4}"#).unwrap().pid,
            None
        );
    }

    #[test]
    fn unknown_status_is_tolerated() {
        assert!(parse(br#"{"id":"a","bundle":"/b","status":"paused"}"#).is_ok());
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        assert!(matches!(parse(b""), Err(StateError::Empty)));
        assert!(matches!(parse(b"  \n"), Err(StateError::Empty)));
        assert!(matches!(parse(b"not json"), Err(StateError::Json(_))));
        assert!(matches!(
            parse(br#"{"id":"a","bund"#),
            Err(StateError::Json(_))
        ));
        assert!(matches!(parse(b"[1,2]"), Err(StateError::Json(_))));
        assert!(matches!(
            parse(br#"{"id":5,"bundle":"/b"}"#),
            Err(StateError::Json(_))
        ));
        assert!(matches!(
            parse(br#"{"id":"a","bundle":"/b","pid":"x"}"#),
            Err(StateError::Json(_))
        ));
    }

    #[test]
    fn oversized_input_is_refused() {
        let big = vec![b' '; (MAX_STATE_BYTES + 10) as usize];
        assert!(matches!(read(&big[..]), Err(StateError::TooLarge)));
    }
}
