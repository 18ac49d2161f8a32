//! The binary's command-line behaviour on bad or trivial input. Needs no
//! root: none of these reach a mount.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const HOOK: &str = env!("CARGO_BIN_EXE_oci-systemd-hook");

fn run(args: &[&str], stdin: &[u8], cwd: &Path, clear_env: bool) -> Output {
    let mut cmd = Command::new(HOOK);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if clear_env {
        cmd.env_clear().env("PWD", cwd);
    } else {
        cmd.env_remove("stage");
    }
    let mut child = cmd.spawn().unwrap();
    // The hook may exit before reading everything (e.g. oversized input).
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

fn one_error_line(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let lines = stderr_lines(o);
    assert_eq!(lines.len(), 1, "exactly one line: {lines:?}");
    assert!(
        lines[0].starts_with("oci-systemd-hook: error: "),
        "{lines:?}"
    );
    assert!(lines[0].contains(needle), "{needle:?} in {lines:?}");
}

#[test]
fn explain_usage_errors_exit_2() {
    for args in [
        &["explain"][..],
        &["explain", "--bundle"],
        &["explain", "--bundle", "/b", "--pid", "x"],
    ] {
        let o = Command::new(HOOK).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("usage: oci-systemd-hook explain"));
    }
    let o = Command::new(HOOK)
        .args(["explain", "--bundle", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn version_and_help() {
    let o = Command::new(HOOK).arg("--version").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("oci-systemd-hook "));
    let o = Command::new(HOOK).arg("--help").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("prestart"));
}

#[test]
fn bad_state_gives_one_error_line_and_exit_1() {
    let t = tempfile::tempdir().unwrap();
    one_error_line(&run(&[], b"", t.path(), false), "empty");
    one_error_line(&run(&[], b"{not json", t.path(), false), "not valid JSON");
    one_error_line(
        &run(
            &[],
            br#"{"id":"x","status":"creating","pid":1,"bundle":"/b"#,
            t.path(),
            false,
        ),
        "not valid JSON",
    );
    one_error_line(
        &run(
            &[],
            br#"{"ociVersion":"1.0.2","status":"creating"}"#,
            t.path(),
            false,
        ),
        "`id`",
    );
    one_error_line(
        &run(&[], br#"{"id":"a","pid":5}"#, t.path(), false),
        "`bundle`",
    );
    let big = vec![b' '; 2 * 1024 * 1024];
    one_error_line(&run(&[], &big, t.path(), false), "larger than");
}

#[test]
fn missing_or_invalid_config_fails_prestart() {
    let t = tempfile::tempdir().unwrap();
    let state = format!(
        r#"{{"id":"a","pid":{},"bundle":"{}"}}"#,
        std::process::id(),
        t.path().display()
    );
    one_error_line(&run(&[], state.as_bytes(), t.path(), false), "config.json");
    std::fs::write(t.path().join("config.json"), b"{").unwrap();
    one_error_line(&run(&[], state.as_bytes(), t.path(), false), "config.json");
    // A FIFO must not hang the hook; an oversized file is refused unread.
    std::fs::remove_file(t.path().join("config.json")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        t.path().join("config.json"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    one_error_line(
        &run(&[], state.as_bytes(), t.path(), false),
        "not a regular file",
    );
    std::fs::remove_file(t.path().join("config.json")).unwrap();
    std::fs::File::create(t.path().join("config.json"))
        .unwrap()
        .set_len(5 * 1024 * 1024)
        .unwrap();
    one_error_line(&run(&[], state.as_bytes(), t.path(), false), "larger than");
    std::fs::write(
        t.path().join("config.json"),
        br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"}}"#,
    )
    .unwrap();
    one_error_line(&run(&[], state.as_bytes(), t.path(), false), "no `process`");
}

#[test]
fn more_bad_input_prestart() {
    let t = tempfile::tempdir().unwrap();
    // A relative bundle.
    one_error_line(
        &run(
            &[],
            br#"{"id":"a","pid":5,"bundle":"userdata"}"#,
            t.path(),
            false,
        ),
        "absolute",
    );
    // The bundle is a file.
    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let state = format!(r#"{{"id":"a","pid":5,"bundle":"{}"}}"#, file.display());
    one_error_line(&run(&[], state.as_bytes(), t.path(), false), "config.json");
    // A systemd config but a pid that does not exist.
    std::fs::write(
        t.path().join("config.json"),
        br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["/sbin/init"]}}"#,
    )
    .unwrap();
    let state = format!(
        r#"{{"id":"../../etc/x","pid":2147483000,"bundle":"{}"}}"#,
        t.path().display()
    );
    one_error_line(&run(&[], state.as_bytes(), t.path(), false), "2147483000");
    // Empty args: not a systemd container, nothing to do.
    std::fs::write(
        t.path().join("config.json"),
        br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","user":{"uid":0,"gid":0},"args":[]}}"#,
    )
    .unwrap();
    let state = format!(r#"{{"id":"a","pid":1,"bundle":"{}"}}"#, t.path().display());
    assert_eq!(
        run(&[], state.as_bytes(), t.path(), false).status.code(),
        Some(0)
    );
}

#[test]
fn unknown_explicit_stage_is_logged_and_exits_0() {
    let t = tempfile::tempdir().unwrap();
    let o = run(
        &["poststart"],
        br#"{"id":"a","pid":5,"bundle":"/nonexistent"}"#,
        t.path(),
        false,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stderr_lines(&o).iter().any(|l| l.contains("poststart")));
}

#[test]
fn non_systemd_container_is_a_no_op_at_prestart() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("config.json"),
        br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["sleep","10"]}}"#,
    )
    .unwrap();
    // pid 1 is never a container's init; the hook must decide before touching it.
    let state = format!(r#"{{"id":"a","pid":1,"bundle":"{}"}}"#, t.path().display());
    let o = run(&[], state.as_bytes(), t.path(), false);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a systemd container"));
}

#[test]
fn poststop_without_path_empties_machine_id_and_is_repeatable() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    std::fs::write(rootfs.join("etc/machine-id"), format!("{}\n", &id[..32])).unwrap();
    std::fs::write(
        t.path().join("config.json"),
        br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["/sbin/init"]}}"#,
    )
    .unwrap();
    let state = format!(
        r#"{{"ociVersion":"1.0.2","id":"{id}","status":"stopped","bundle":"{}"}}"#,
        t.path().display()
    );
    for _ in 0..2 {
        let o = run(&[], state.as_bytes(), Path::new("/"), true);
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        assert_eq!(std::fs::read(rootfs.join("etc/machine-id")).unwrap(), b"");
    }
    // Another id is left alone.
    std::fs::write(
        rootfs.join("etc/machine-id"),
        b"ffffffffffffffffffffffffffffffff\n",
    )
    .unwrap();
    assert_eq!(
        run(&[], state.as_bytes(), Path::new("/"), true)
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        std::fs::read(rootfs.join("etc/machine-id")).unwrap(),
        b"ffffffffffffffffffffffffffffffff\n"
    );
}

#[test]
fn poststop_with_bundle_gone_exits_0() {
    let o = run(
        &["poststop"],
        br#"{"id":"a","bundle":"/nonexistent/bundle"}"#,
        Path::new("/"),
        true,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

#[test]
fn control_characters_in_the_id_never_start_a_line_of_their_own() {
    let t = tempfile::tempdir().unwrap();
    // The short id (12 characters) and the rest: both reach log lines.
    let id = "ab\ncd\roci-systemd-hook: error: faked\n\u{1b}[2K";
    let state = serde_json::json!({"id": id, "pid": 5, "bundle": "/nonexistent"}).to_string();
    // An explicit stage the hook does not handle: one info line.
    let o = run(&["bogus"], state.as_bytes(), t.path(), false);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let lines = stderr_lines(&o);
    assert_eq!(lines.len(), 1, "exactly one line: {lines:?}");
    assert!(lines[0].contains(r"ab\ncd\roci-sy: stage"), "{lines:?}");
    // A failing prestart (no config.json): one error line.
    let o = run(&[], state.as_bytes(), t.path(), false);
    one_error_line(&o, "config.json");
    assert!(!o.stderr.contains(&b'\r') && !o.stderr.contains(&0x1b));
}

// The runtime wrapper, with /bin/echo as the "runtime": what it is exec'd
// with is on stdout.

const SYSTEMD_CONFIG: &str = r#"{"ociVersion":"1.0.2-dev","process":{"args":["/sbin/init"],"cwd":"/","x-unknown":[1,2]},"root":{"path":"rootfs"},"hooks":{"prestart":[{"path":"/usr/bin/true"}]},"linux":{"cgroupsPath":"/docker/a"}}"#;

fn wrapper_bundle(config: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("config.json"), config).unwrap();
    t
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn runtime_adds_the_hook_on_create_and_execs_with_the_arguments_unchanged() {
    let t = wrapper_bundle(SYSTEMD_CONFIG);
    let b = t.path().to_str().unwrap();
    let args = [
        "runtime",
        "--runtime",
        "/bin/echo",
        "--",
        "--root",
        "/r",
        "--log",
        "/l",
        "create",
        "--bundle",
        b,
        "--pid-file",
        "/p",
        "id1",
    ];
    let o = run(&args, b"", t.path(), false);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout_of(&o),
        format!("--root /r --log /l create --bundle {b} --pid-file /p id1\n")
    );
    assert!(o.stderr.is_empty(), "{o:?}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path().join("config.json")).unwrap()).unwrap();
    let hook = std::fs::canonicalize(HOOK).unwrap();
    let hook = hook.to_str().unwrap();
    assert_eq!(
        doc["hooks"],
        serde_json::json!({
            "prestart": [{"path": "/usr/bin/true"},
                         {"path": hook, "args": ["oci-systemd-hook", "prestart"]}],
            "poststop": [{"path": hook, "args": ["oci-systemd-hook", "poststop"]}]
        })
    );
    assert_eq!(doc["process"]["x-unknown"], serde_json::json!([1, 2]));
    // A second create of the same bundle adds nothing.
    let before = std::fs::read(t.path().join("config.json")).unwrap();
    let o = run(&args, b"", t.path(), false);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(std::fs::read(t.path().join("config.json")).unwrap(), before);
}

#[test]
fn runtime_link_name_and_env_runtime_default_bundle_is_the_cwd() {
    let t = wrapper_bundle(SYSTEMD_CONFIG);
    let link = t.path().join("oci-systemd-runtime");
    std::os::unix::fs::symlink(HOOK, &link).unwrap();
    let o = Command::new(&link)
        .args(["run", "-d", "id2"])
        .current_dir(t.path())
        .env("OCI_SYSTEMD_HOOK_RUNTIME", "/bin/echo")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout_of(&o), "run -d id2\n");
    let text = std::fs::read_to_string(t.path().join("config.json")).unwrap();
    assert!(
        text.contains(r#""args":["oci-systemd-hook","poststop"]"#),
        "{text}"
    );
}

#[test]
fn runtime_leaves_a_non_systemd_container_and_other_commands_alone() {
    let config = SYSTEMD_CONFIG.replace("/sbin/init", "/bin/sh");
    let t = wrapper_bundle(&config);
    let b = t.path().to_str().unwrap();
    let o = run(
        &["runtime", "--runtime=/bin/echo", "create", "-b", b, "x"],
        b"",
        t.path(),
        false,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("config.json")).unwrap(),
        config
    );
    // Fields only the hook needs (root.path, id mappings of a user
    // namespace) never stop a container the hook leaves alone.
    let odd = r#"{"process":{"args":["sh"]},"linux":{"namespaces":[{"type":"user"}]}}"#;
    std::fs::write(t.path().join("config.json"), odd).unwrap();
    let o = run(
        &["runtime", "--runtime=/bin/echo", "create", "-b", b, "x"],
        b"",
        t.path(),
        false,
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout_of(&o), format!("create -b {b} x\n"));
    assert_eq!(
        std::fs::read_to_string(t.path().join("config.json")).unwrap(),
        odd
    );
    // Not create/run: no config read even when there is none.
    for sub in ["start", "state", "delete", "kill"] {
        let o = run(
            &[
                "runtime",
                "--runtime",
                "/bin/echo",
                sub,
                "--bundle",
                "/nonexistent",
                "x",
            ],
            b"",
            t.path(),
            false,
        );
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        assert_eq!(stdout_of(&o), format!("{sub} --bundle /nonexistent x\n"));
    }
}

#[test]
fn runtime_errors_leave_config_unchanged_and_do_not_run_the_runtime() {
    let bad_hooks = SYSTEMD_CONFIG.replace(
        r#""hooks":{"prestart":[{"path":"/usr/bin/true"}]}"#,
        r#""hooks":[]"#,
    );
    for (config, needle) in [
        (bad_hooks.as_str(), "`hooks` is not an object"),
        (r#"{"process":{"args":["/sbin/init"]}"#, "is not valid JSON"),
        (
            r#"{"process":{"args":"/sbin/init"},"root":{"path":"r"}}"#,
            "process.args",
        ),
    ] {
        let t = wrapper_bundle(config);
        let log = t.path().join("log.json");
        let b = t.path().to_str().unwrap();
        let l = log.to_str().unwrap();
        let o = run(
            &[
                "runtime",
                "--runtime",
                "/bin/echo",
                "--log",
                l,
                "--log-format",
                "json",
                "create",
                "--bundle",
                b,
                "x",
            ],
            b"",
            t.path(),
            false,
        );
        one_error_line(&o, needle);
        assert!(o.stdout.is_empty(), "the runtime ran: {o:?}");
        assert_eq!(
            std::fs::read_to_string(t.path().join("config.json")).unwrap(),
            config
        );
        let entry: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
        assert_eq!(entry["level"], "error");
        assert!(entry["msg"].as_str().unwrap().contains(needle), "{entry}");
    }
    // No config.json at all.
    let t = tempfile::tempdir().unwrap();
    let o = run(
        &["runtime", "--runtime", "/bin/echo", "create", "x"],
        b"",
        t.path(),
        false,
    );
    one_error_line(&o, "config.json");
    assert!(o.stdout.is_empty(), "{o:?}");
    // Usage errors exit 2; a runtime that is the wrapper again stops.
    let o = run(&["runtime", "--runtime"], b"", t.path(), false);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = run(
        &[
            "runtime",
            "--runtime",
            HOOK,
            "--",
            "runtime",
            "--runtime",
            HOOK,
            "state",
            "x",
        ],
        b"",
        t.path(),
        false,
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("OCI_SYSTEMD_HOOK_WRAPPED"),
        "{o:?}"
    );
}
