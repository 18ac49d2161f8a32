//! Differential test of config.json reading (issue 13 §2): a corpus of
//! variants of `runc spec`, each run under runc (and crun when installed) as
//! `runc run` of `/bin/true` on a read-only rootfs, and read by the hook's
//! parser ([`oci_systemd_hook::config::load_with_process`], what prestart
//! reads). The hook may refuse only what every runtime refuses, or what it
//! needs itself: those exceptions are listed in [`Variant::hook_needs`] with
//! the reason.
//!
//! Needs root and runc (installed by `integration/setup-host.sh`); without
//! either it fails with the reason. crun is used when installed; on a hybrid
//! cgroup host whose cgroup2 holds `hugetlb` it needs
//! `integration/host-quirks.sh` (which setup-host.sh runs). Every container
//! gets a unique id and is deleted (`delete -f`), the runtimes keep their
//! state in the test's temporary directory, and cgroups named after an id are
//! removed if a runtime left one.
//!
//! Run: `cargo test --test config_differential -- --nocapture` prints the
//! table (variant → runc / crun / hook).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_systemd_hook::config;
use serde_json::{Value, json};

/// What the hook must do with a variant (so that the corpus stays what it
/// claims to be, whatever the runtimes do).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hook {
    Reads,
    Refuses,
}

struct Variant {
    name: &'static str,
    /// Changes the `runc spec` base (already set up to run `/bin/true`).
    edit: fn(&mut Value),
    /// Changes the serialized text (for what a JSON value cannot express:
    /// duplicate or differently cased keys); identity for most.
    text: fn(String) -> String,
    hook: Hook,
    /// Why the hook may refuse this variant even where a runtime runs it:
    /// the field is one the hook itself needs.
    hook_needs: Option<&'static str>,
}

fn same(s: String) -> String {
    s
}

fn v(name: &'static str, hook: Hook, edit: fn(&mut Value)) -> Variant {
    Variant {
        name,
        edit,
        text: same,
        hook,
        hook_needs: None,
    }
}

fn obj(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    v.as_object_mut().unwrap()
}

fn corpus() -> Vec<Variant> {
    use Hook::*;
    vec![
        v("runc spec (base)", Reads, |_| {}),
        // The three of issue 13.
        v("process without user", Reads, |c| {
            obj(&mut c["process"]).remove("user");
        }),
        v("unknown capability CAP_FOO", Reads, |c| {
            for set in ["bounding", "effective", "permitted", "ambient"] {
                c["process"]["capabilities"][set]
                    .as_array_mut()
                    .unwrap()
                    .push("CAP_FOO".into());
            }
        }),
        v("unknown personality domain", Reads, |c| {
            c["linux"]["personality"] = json!({"domain": "LINUX_FUTURE"});
        }),
        // Unused but odd.
        v("unknown top-level keys", Reads, |c| {
            c["futureThing"] = json!({"a": [1, null]});
            c["x-vendor"] = json!("z");
        }),
        v("unknown ociVersion", Reads, |c| {
            c["ociVersion"] = "9.9.9".into()
        }),
        v("seccomp: unknown action", Reads, |c| {
            c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_FUTURE"}]});
        }),
        v("seccomp: unknown arch", Reads, |c| {
            c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_QUANTUM"]});
        }),
        v("unknown namespace type", Reads, |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "futurens"}));
        }),
        v("hooks with odd fields", Reads, |c| {
            c["hooks"] = json!({"prestart": [{"path": "/bin/true", "extra": {"x": 1}}],
                "futureStage": [{"path": "/bin/false"}]});
        }),
        v("annotations", Reads, |c| {
            c["annotations"] = json!({"io.example/x": "y", "oci-systemd-hook": "z"});
        }),
        v("unknown rlimit type", Reads, |c| {
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_FUTURE", "hard": 1, "soft": 1}]);
        }),
        v("unknown mount key", Reads, |c| {
            c["mounts"][0]["futureKey"] = json!({"x": [5]});
        }),
        v("optional parts null", Reads, |c| {
            c["linux"]["resources"] = Value::Null;
            c["hostname"] = Value::Null;
            c["root"]["readonly"] = Value::Null;
        }),
        v("negative memory limit", Reads, |c| {
            c["linux"]["resources"]["memory"] = json!({"limit": -1});
        }),
        v("memory limit 64 MiB", Reads, |c| {
            c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
        }),
        v("absolute root.path", Reads, |_| {}), // set in main: <bundle>/rootfs
        v("missing process.cwd", Reads, |c| {
            obj(&mut c["process"]).remove("cwd");
        }),
        v("relative process.cwd", Reads, |c| {
            c["process"]["cwd"] = "tmp".into()
        }),
        v("bad mount type", Reads, |c| {
            c["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": "/mnt", "type": "nosuchfs", "source": "x"}));
        }),
        v("empty process.args", Reads, |c| {
            c["process"]["args"] = json!([])
        }),
        v("noNewPrivileges a string", Reads, |c| {
            c["process"]["noNewPrivileges"] = "yes".into();
        }),
        v("user namespace with mappings", Reads, |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            c["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            c["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        }),
        // Malformed or missing parts the hook uses.
        v("missing root", Refuses, |c| {
            obj(c).remove("root");
        }),
        v("root.path not a string", Refuses, |c| {
            c["root"]["path"] = json!(5)
        }),
        v("missing process", Refuses, |c| {
            obj(c).remove("process");
        }),
        v("process.args a string", Refuses, |c| {
            c["process"]["args"] = "/bin/true".into();
        }),
        Variant {
            name: "memory limit a string",
            edit: |c| c["linux"]["resources"]["memory"] = json!({"limit": "64m"}),
            text: same,
            hook: Refuses,
            hook_needs: Some(
                "linux.resources.memory.limit sizes /tmp: a limit that is not an integer is a \
                 mistake to report (runc refuses it; crun ignores it and runs without the limit \
                 asked for)",
            ),
        },
        v("mount without destination", Refuses, |c| {
            obj(&mut c["mounts"][0]).remove("destination");
        }),
        v("user namespace without mappings", Refuses, |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
        }),
        Variant {
            name: "key `Root` in another case",
            edit: |_| {},
            text: |s| s.replacen("\"root\":", "\"Root\":", 1),
            hook: Refuses,
            hook_needs: Some(
                "root.path: runtime-spec keys are case-sensitive (crun agrees); only runc's Go \
                 decoder matches keys case-insensitively",
            ),
        },
        Variant {
            name: "duplicate key process.args",
            edit: |_| {},
            text: |s| s.replacen("\"args\":", "\"args\":[\"/bin/false\"],\"args\":", 1),
            hook: Refuses,
            hook_needs: Some(
                "process.args decides whether to act: a duplicated key is ambiguous (RFC 8259 \
                 says names SHOULD be unique; Go takes the last, others the first)",
            ),
        },
    ]
}

/// A runtime's verdict on one variant: `Ok` when `/bin/true` ran and exited 0.
type Verdict = Result<(), String>;

struct Runtime {
    name: &'static str,
    bin: PathBuf,
    state: PathBuf,
}

impl Runtime {
    fn find(name: &'static str, state_dir: &Path) -> Option<Runtime> {
        let bin = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
            .map(|d| d.join(name))
            .find(|p| p.is_file())?;
        let state = state_dir.join(format!("state-{name}"));
        std::fs::create_dir_all(&state).unwrap();
        Some(Runtime { name, bin, state })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.state);
        c
    }

    /// `RUNTIME run --bundle BUNDLE ID` in the foreground, then `delete -f`.
    fn run(&self, bundle: &Path, id: &str) -> Verdict {
        let out = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let _ = self
            .cmd()
            .args(["delete", "-f", id])
            .stdin(Stdio::null())
            .output();
        remove_cgroups_named(id);
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            // runc logs `time="…" level=error msg="…"`.
            let line = line
                .split_once("msg=\"")
                .map_or(line, |(_, m)| m.trim_end_matches('"'));
            Err(line.to_string())
        }
    }
}

/// Removes cgroup directories named `id` (or ending in it) that a runtime
/// left under the hierarchies, one and two levels down.
fn remove_cgroups_named(id: &str) {
    let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = vec!["/sys/fs/cgroup".into()];
    roots.extend(hier.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    for root in roots {
        for dir in [root.join(id), root.join("user.slice").join(id)] {
            if dir.is_dir() {
                eprintln!("note: removing cgroup {} a runtime left", dir.display());
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// `/bin/true` and the libraries `ldd` names, hard-linked (or copied) into
/// `rootfs`, plus the mount points of `runc spec` (the rootfs is read-only).
fn make_rootfs(rootfs: &Path, template: Option<&Path>) {
    std::fs::create_dir_all(rootfs).unwrap();
    if let Some(t) = template {
        for rel in walk(t) {
            let (src, dst) = (t.join(&rel), rootfs.join(&rel));
            if src.is_dir() {
                std::fs::create_dir_all(&dst).unwrap();
            } else {
                std::fs::hard_link(&src, &dst)
                    .or_else(|_| std::fs::copy(&src, &dst).map(drop))
                    .unwrap();
            }
        }
        return;
    }
    let ldd = Command::new("ldd").arg("/bin/true").output().unwrap();
    assert!(ldd.status.success(), "ldd /bin/true: {ldd:?}");
    let mut files = vec![PathBuf::from("/bin/true")];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        if let Some(p) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from)
        {
            files.push(p);
        }
    }
    for f in files {
        let dst = rootfs.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", f.display()));
    }
    for d in ["proc", "dev", "sys", "tmp", "mnt"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap().flatten() {
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                stack.push(r.clone());
            }
            out.push(r);
        }
    }
    out.sort(); // parents before children
    out
}

/// The `runc spec` config, set up to run `/bin/true` without a terminal.
fn base_spec(runc: &Runtime, dir: &Path) -> Value {
    let out = Command::new(&runc.bin)
        .args(["spec", "--bundle"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "runc spec: {out:?}");
    let mut c: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    std::fs::remove_file(dir.join("config.json")).unwrap();
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = json!(["/bin/true"]);
    assert_eq!(
        c["root"]["readonly"],
        json!(true),
        "runc spec: read-only rootfs"
    );
    // Root's bounding set may lack CAP_SYS_RESOURCE: keep RLIMIT_NOFILE low.
    for r in c["process"]["rlimits"].as_array_mut().into_iter().flatten() {
        for k in ["hard", "soft"] {
            if r[k].as_u64().is_some_and(|n| n > 20000) {
                r[k] = 20000.into();
            }
        }
    }
    c
}

fn short(r: &Verdict) -> String {
    match r {
        Ok(()) => "runs".into(),
        Err(e) => format!("refuses: {}", e.chars().take(90).collect::<String>()),
    }
}

#[test]
fn the_hook_refuses_only_what_the_runtimes_refuse() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs containers with runc and crun: run it as root (make test-privileged)"
    );
    let t = tempfile::tempdir().unwrap();
    let runc = Runtime::find("runc", t.path()).expect(
        "runc is not installed: the differential config test needs it \
         (integration/setup-host.sh installs it; apt-get install runc)",
    );
    let mut runtimes = vec![runc];
    match Runtime::find("crun", t.path()) {
        Some(c) => runtimes.push(c),
        None => eprintln!("note: crun is not installed: comparing with runc only"),
    }
    let base = base_spec(&runtimes[0], t.path());
    let template = t.path().join("rootfs-template");
    make_rootfs(&template, None);

    let mut rows = vec![];
    let mut failures = vec![];
    for (i, var) in corpus().iter().enumerate() {
        let bundle = t.path().join(format!("b{i}"));
        make_rootfs(&bundle.join("rootfs"), Some(&template));
        let mut c = base.clone();
        (var.edit)(&mut c);
        if var.name == "absolute root.path" {
            c["root"]["path"] = bundle.join("rootfs").to_str().unwrap().into();
        }
        let text = (var.text)(serde_json::to_string_pretty(&c).unwrap());
        std::fs::write(bundle.join("config.json"), &text).unwrap();

        let hook = config::load_with_process(&bundle).map(drop).map_err(|e| {
            format!("{:#}", anyhow::Error::from(e)).replace(&format!("{}/", bundle.display()), "")
        });
        let verdicts: Vec<Verdict> = runtimes
            .iter()
            .enumerate()
            .map(|(j, rt)| {
                let id = format!("osh-diff-{}-{i}-{j}", std::process::id());
                rt.run(&bundle, &id)
            })
            .collect();
        std::fs::remove_dir_all(&bundle).unwrap();

        let got = if hook.is_ok() {
            Hook::Reads
        } else {
            Hook::Refuses
        };
        if got != var.hook {
            failures.push(format!(
                "{}: the hook should {:?} it, got {hook:?}",
                var.name, var.hook
            ));
        }
        let run_by: Vec<&str> = runtimes
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| v.is_ok())
            .map(|(rt, _)| rt.name)
            .collect();
        if let Err(e) = &hook
            && !run_by.is_empty()
            && var.hook_needs.is_none()
        {
            failures.push(format!(
                "{}: the hook refuses a config that {} runs: {e}",
                var.name,
                run_by.join(" and "),
            ));
        }
        if i == 0 {
            for (rt, v) in runtimes.iter().zip(&verdicts) {
                assert!(
                    v.is_ok(),
                    "{} does not run the base `runc spec` config of /bin/true, so nothing can be \
                     compared: {v:?} (crun on a hybrid host whose cgroup2 holds hugetlb: run \
                     integration/host-quirks.sh)",
                    rt.name
                );
            }
        }
        let mut row = format!("| {} |", var.name);
        for v in &verdicts {
            row += &format!(" {} |", short(v));
        }
        row += &match &hook {
            Ok(()) => " reads |".to_string(),
            Err(e) => format!(
                " refuses: {}{} |",
                e.chars().take(110).collect::<String>(),
                if var.hook_needs.is_some() {
                    " (hook needs it)"
                } else {
                    ""
                }
            ),
        };
        rows.push(row);
    }
    let mut header = "| variant |".to_string();
    for rt in &runtimes {
        header += &format!(" {} |", rt.name);
    }
    header += " hook |";
    println!("{header}");
    for r in &rows {
        println!("{r}");
    }
    for rt in &runtimes {
        let left: Vec<_> = std::fs::read_dir(&rt.state).unwrap().flatten().collect();
        assert!(left.is_empty(), "{} left containers: {left:?}", rt.name);
    }
    assert!(
        failures.is_empty(),
        "{}\n{header}\n{}",
        failures.join("\n"),
        rows.join("\n")
    );
}
