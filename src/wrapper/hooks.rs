//! Adding the hook to a config.json document, pure.
//!
//! runtime-spec `config.md#posix-platform-hooks`: `hooks` is an object of
//! arrays, one per stage, each entry `{"path", "args"?, "env"?, "timeout"?}`
//! with `args` as in execv (argv\[0\] first). The document is a
//! [`serde_json::Value`] (with serde_json's `preserve_order`), so every field
//! the hook does not know, and the order of keys, survives the rewrite. The
//! runtime wrapper passes a document with `hooks` only (its other fields stay
//! raw text, see `wrapper::prepare`).

use serde_json::{Map, Value, json};

/// The stages the wrapper adds the hook to, in this order. `prestart`, not
/// `createRuntime`: runc and crun run both at the same point (the
/// container's mounts are done, before pivot_root, in the runtime's
/// namespace), prestart is what the hooks.d descriptor registers and podman
/// runs (the code path every other test covers), and every runc Docker and
/// containerd ship runs it, while a runtime older than runtime-spec 1.0.2
/// (runc < 1.0.0-rc93) silently ignores `createRuntime` — systemd would then
/// fail to boot with no word from the hook.
pub const STAGES: [&str; 2] = ["prestart", "poststop"];

/// argv\[0\] of the added entries. argv\[1\] is the stage, so the hook never has
/// to infer it from the state.
pub const ARGV0: &str = "oci-systemd-hook";

/// A config.json whose `hooks` cannot take the hook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The document, `hooks` or `hooks.<stage>` has the wrong JSON type; the
    /// dotted field (`.` for the document) and the type it should have.
    #[error("`{field}` is not {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
}

/// The entry added for `stage`: `{"path": path, "args": ["oci-systemd-hook", stage]}`.
pub fn entry(path: &str, stage: &str) -> Value {
    json!({ "path": path, "args": [ARGV0, stage] })
}

/// Appends [`entry`] to `hooks.prestart` and `hooks.poststop` of `doc`,
/// after the hooks already there, creating `hooks` and the arrays when they
/// are missing or `null`. A stage that already has an entry whose `path`
/// satisfies `is_ours` is left as is (podman with hooks.d through this
/// wrapper, or a second `create` of the same bundle). Returns the stages the
/// hook was added to (empty: `doc` is unchanged).
///
/// # Errors
/// [`PatchError::WrongType`] when `doc` is not an object, `hooks` not an
/// object or a stage not an array; `doc` is then unchanged.
pub fn add(
    doc: &mut Value,
    path: &str,
    is_ours: impl Fn(&str) -> bool,
) -> Result<Vec<&'static str>, PatchError> {
    let wrong = |field: &str, expected| PatchError::WrongType {
        field: field.to_string(),
        expected,
    };
    let obj = doc.as_object_mut().ok_or_else(|| wrong(".", "an object"))?;
    // Check every part before changing anything.
    let hooks = match obj.get("hooks") {
        None | Some(Value::Null) => None,
        Some(Value::Object(h)) => Some(h),
        Some(_) => return Err(wrong("hooks", "an object")),
    };
    let mut todo = Vec::new();
    for stage in STAGES {
        let present = match hooks.and_then(|h| h.get(stage)) {
            None | Some(Value::Null) => false,
            Some(Value::Array(list)) => list
                .iter()
                .any(|e| e.get("path").and_then(Value::as_str).is_some_and(&is_ours)),
            Some(_) => return Err(wrong(&format!("hooks.{stage}"), "an array")),
        };
        if !present {
            todo.push(stage);
        }
    }
    if todo.is_empty() {
        return Ok(todo);
    }
    let hooks = obj.entry("hooks").or_insert(Value::Null);
    if hooks.is_null() {
        *hooks = Value::Object(Map::new());
    }
    let hooks = hooks.as_object_mut().expect("checked above");
    for stage in &todo {
        let list = hooks.entry(*stage).or_insert(Value::Null);
        if list.is_null() {
            *list = Value::Array(Vec::new());
        }
        list.as_array_mut()
            .expect("checked above")
            .push(entry(path, stage));
    }
    Ok(todo)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: &str = "/usr/libexec/oci/hooks.d/oci-systemd-hook";

    fn ours(p: &str) -> bool {
        p == HOOK
    }

    /// A Docker 20.10 config.json, cut down, with its own prestart hook
    /// (libnetwork) and fields the hook never reads.
    fn docker() -> Value {
        serde_json::from_str(
            r#"{"ociVersion":"1.0.2-dev","process":{"user":{"uid":0,"gid":0},"args":["/sbin/init"],
            "env":["PATH=/usr/bin"],"cwd":"/","capabilities":{"bounding":["CAP_CHOWN","CAP_NEW_IN_2030"]}},
            "root":{"path":"/var/lib/docker/overlay2/x/merged"},"hostname":"abc",
            "mounts":[{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro","nosuid"]}],
            "hooks":{"prestart":[{"path":"/proc/1/exe","args":["libnetwork-setkey","-exec-root=/var/run/docker","abc","def"]}]},
            "linux":{"resources":{"memory":{"limit":1073741824,"swap":-1},"cpu":{"shares":18446744073709551615}},
            "cgroupsPath":"/docker/abc","maskedPaths":["/proc/acpi"],"futureField":{"a":[1,2.5,null]}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn adds_after_existing_hooks_and_keeps_everything_else() {
        let before = docker();
        let mut doc = before.clone();
        assert_eq!(add(&mut doc, HOOK, ours), Ok(STAGES.to_vec()));
        let prestart = doc["hooks"]["prestart"].as_array().unwrap();
        assert_eq!(prestart.len(), 2);
        assert_eq!(prestart[0], before["hooks"]["prestart"][0]);
        assert_eq!(prestart[1], entry(HOOK, "prestart"));
        assert_eq!(
            doc["hooks"]["poststop"],
            json!([{"path": HOOK, "args": ["oci-systemd-hook", "poststop"]}])
        );
        // Without the added entries the document is the original, key order
        // and all (serialized text compared).
        let mut stripped = doc.clone();
        stripped["hooks"]["prestart"].as_array_mut().unwrap().pop();
        stripped["hooks"]
            .as_object_mut()
            .unwrap()
            .remove("poststop");
        assert_eq!(stripped, before);
        assert_eq!(stripped.to_string(), before.to_string());
        let keys: Vec<_> = doc.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "ociVersion",
                "process",
                "root",
                "hostname",
                "mounts",
                "hooks",
                "linux"
            ]
        );
        assert_eq!(
            doc["linux"]["resources"]["cpu"]["shares"].as_u64(),
            Some(u64::MAX)
        );
    }

    #[test]
    fn never_twice() {
        let mut doc = docker();
        add(&mut doc, HOOK, ours).unwrap();
        let once = doc.clone();
        assert_eq!(add(&mut doc, HOOK, ours), Ok(vec![]));
        assert_eq!(doc, once);
        // Already in one stage (e.g. by hooks.d): only the other is added.
        let mut doc = json!({"hooks": {"prestart": [{"path": HOOK}], "poststop": []}});
        assert_eq!(add(&mut doc, HOOK, ours), Ok(vec!["poststop"]));
        assert_eq!(doc["hooks"]["prestart"], json!([{"path": HOOK}]));
        assert_eq!(doc["hooks"]["poststop"], json!([entry(HOOK, "poststop")]));
    }

    #[test]
    fn missing_or_null_hooks_are_created() {
        for mut doc in [
            json!({"ociVersion": "1.0.2"}),
            json!({"hooks": null}),
            json!({"hooks": {"prestart": null, "createRuntime": [{"path": "/x"}]}}),
        ] {
            assert_eq!(add(&mut doc, HOOK, ours), Ok(STAGES.to_vec()));
            for stage in STAGES {
                assert_eq!(doc["hooks"][stage], json!([entry(HOOK, stage)]), "{doc}");
            }
        }
        let mut doc = json!({"hooks": {"createRuntime": [{"path": "/x"}]}});
        add(&mut doc, HOOK, ours).unwrap();
        assert_eq!(doc["hooks"]["createRuntime"], json!([{"path": "/x"}]));
    }

    #[test]
    fn wrong_types_change_nothing() {
        for (doc, field) in [
            (json!([1]), "."),
            (json!({"hooks": []}), "hooks"),
            (json!({"hooks": {"prestart": {}}}), "hooks.prestart"),
            (json!({"hooks": {"poststop": "x"}}), "hooks.poststop"),
        ] {
            let mut d = doc.clone();
            let e = add(&mut d, HOOK, ours).unwrap_err();
            assert!(
                matches!(&e, PatchError::WrongType { field: f, .. } if f == field),
                "{e}"
            );
            assert_eq!(d, doc);
        }
    }
}
