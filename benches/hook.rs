//! `make bench`: what the hook costs a container start. A benchmark, not a
//! test: it prints figures and asserts nothing about time.
//!
//! One table, every figure next to its target (issue 16):
//! - prestart, exec to exit, over OSH_BENCH_RUNS (default 200) runs, each on
//!   a fresh prepared container (a real mount namespace held by a sleeping
//!   process in its own cgroup, a real rootfs directory, the state and the
//!   config.json podman 4.3 writes, from tests/fixtures); plus the in-process
//!   breakdown the hook prints with OCI_SYSTEMD_HOOK_TIMINGS=1;
//! - the no-op path (a non-systemd container) and poststop, the same way;
//!   each also net of `/bin/true` in the same harness (difference of the
//!   medians);
//! - the hook's peak RSS ([`peak_rss_kib`]: `VmHWM` of its own address
//!   space at its exit, OSH_BENCH_RSS_RUNS runs of each path, default 20;
//!   OSH_BENCH_SMAPS=DIR keeps each run's `/proc/<pid>/smaps` there),
//!   its system calls (`strace -f -c`, one run each), the binary's size;
//! - the runtime wrapper's cost over exec'ing the runtime ([`wrapper_rows`]);
//! - end to end, when OSH_ROOTFS names a systemd rootfs: `podman run` →
//!   systemd `running` → `podman stop` → `podman rm`, with the hook
//!   (`--systemd=false`) against podman `--systemd=always` without it, runs
//!   alternating, OSH_BENCH_PAIRS (default 20) pairs; the ratio per pair and
//!   its median.
//!
//! OSH_BENCH_HOOK measures another build of the hook with the same harness.
//! Needs root. Setup of each run (namespace, cgroup, rootfs) is not timed.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

struct Run {
    wall: Duration,
    stderr: String,
    status: i32,
}

/// Spawns the hook with `state` on stdin and `env`, waits for it.
fn timed(state: &Value, env: &[(&str, &str)], cwd: &std::path::Path) -> Run {
    timed_exe(&hook(), state, env, cwd)
}

/// The hook binary measured: this build's, or OSH_BENCH_HOOK (another
/// build, e.g. the one before a change, measured by the same harness).
fn hook() -> String {
    std::env::var("OSH_BENCH_HOOK").unwrap_or_else(|_| HOOK.to_string())
}

fn timed_exe(exe: &str, state: &Value, env: &[(&str, &str)], cwd: &std::path::Path) -> Run {
    let payload = state.to_string();
    let start = Instant::now();
    // Reaped below with waitpid (the exit status as the kernel gives it).
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(exe)
        .current_dir(cwd)
        .env_remove("stage")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A program that exits before reading its stdin (the /bin/true
    // baseline) closes the pipe: EPIPE there is not an error of the harness.
    match child.stdin.take().unwrap().write_all(payload.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing the state: {e}"),
        _ => {}
    }
    let mut status = 0;
    let pid = child.id() as libc::pid_t;
    // SAFETY: waiting for our own child; status is a valid pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    let wall = start.elapsed();
    assert_eq!(r, pid, "waitpid");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        wall,
        stderr,
        status: libc::WEXITSTATUS(status),
    }
}

/// The peak resident set of one run of `exe` (with `state` on stdin,
/// `env` added, cwd `cwd`), in KiB: `VmHWM` of the program's own address
/// space, read from `/proc/<pid>/status` (through `procfs`) at its exit
/// stop (ptrace, `PTRACE_O_TRACEEXIT`), when its memory is still there.
///
/// Not wait4's `ru_maxrss`: at execve the kernel folds the peak of the
/// address space the process had before (exec_mmap in fs/exec.c) into
/// that figure, so a child spawned with vfork/posix_spawn reports at
/// least its parent's own peak (this harness's: 2.6 MiB here, whatever
/// program is measured). The trace costs no memory in the tracee.
fn peak_rss_kib(exe: &str, state: &Value, env: &[(&str, &str)], cwd: &std::path::Path) -> u64 {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(exe);
    cmd.current_dir(cwd)
        .env_remove("stage")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: ptrace(PTRACE_TRACEME) is a plain system call, safe between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    // Reaped below with waitpid.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let wait = || {
        let mut status = 0;
        // SAFETY: our own child; status is a valid pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    };
    // The stop after execve (SIGTRAP): ask for a stop at exit, go on.
    let status = wait();
    assert!(libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGTRAP);
    // Also killed should this harness die first (EXITKILL).
    // SAFETY: ptrace requests on our stopped tracee.
    unsafe {
        let opts = libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL;
        assert_eq!(
            libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts),
            0,
            "PTRACE_SETOPTIONS"
        );
        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
    }
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(state.to_string().as_bytes());
    let mut hwm = None;
    loop {
        let status = wait();
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        let mut sig = libc::WSTOPSIG(status);
        if status >> 8 == (libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8)) {
            let st = procfs::process::Process::new(pid)
                .unwrap()
                .status()
                .unwrap();
            hwm = st.vmhwm;
            if let Ok(d) = std::env::var("OSH_BENCH_SMAPS") {
                let _ = std::fs::copy(format!("/proc/{pid}/smaps"), format!("{d}/{pid}"));
            }
            sig = 0;
        }
        // SAFETY: as above; the stop's own signal is passed on.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, sig) };
    }
    hwm.unwrap_or_else(|| panic!("{exe}: no VmHWM at its exit"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(&v, 0.5)
}

/// One row of the table: a measure, how many runs, median / p95 / max (or
/// one figure, or a note), the target, the unit.
struct Row {
    name: String,
    runs: String,
    median: String,
    p95: String,
    max: String,
    target: String,
    unit: &'static str,
}

fn row(name: &str, mut v: Vec<f64>, target: &str, unit: &'static str) -> Row {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Row {
        name: name.into(),
        runs: v.len().to_string(),
        median: format!("{:.3}", percentile(&v, 0.5)),
        p95: format!("{:.3}", percentile(&v, 0.95)),
        max: format!("{:.3}", v[v.len() - 1]),
        target: target.into(),
        unit,
    }
}

/// A row with one figure (a difference of medians, a count, a size).
fn one(name: &str, runs: usize, figure: String, target: &str, unit: &'static str) -> Row {
    Row {
        name: name.into(),
        runs: runs.to_string(),
        median: figure,
        p95: String::new(),
        max: String::new(),
        target: target.into(),
        unit,
    }
}

fn print_table(rows: &[Row]) {
    let w = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(10)
        .max(10);
    let m = rows
        .iter()
        .map(|r| r.median.len())
        .max()
        .unwrap_or(9)
        .max(9);
    println!(
        "| {:<w$} | {:>5} | {:>m$} | {:>9} | {:>9} | {:<8} | {:<4} |",
        "measure", "runs", "median", "p95", "max", "target", "unit"
    );
    let widths = [w + 2, 7, m + 2, 11, 11, 10, 6];
    println!("|{}|", widths.map(|w| "-".repeat(w)).join("|"));
    for r in rows {
        println!(
            "| {:<w$} | {:>5} | {:>m$} | {:>9} | {:>9} | {:<8} | {:<4} |",
            r.name, r.runs, r.median, r.p95, r.max, r.target, r.unit
        );
    }
}

fn timing(stderr: &str, key: &str) -> f64 {
    stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {key} in hook output: {stderr}"))
        / 1000.0
}

fn podman_config() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/config/podman-4.3-systemd-false.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn noop_config() -> Value {
    let mut cfg = podman_config();
    cfg["process"]["args"] = json!(["sleep", "100"]);
    cfg
}

fn ms(r: &Run) -> f64 {
    r.wall.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    require_root();
    let runs: usize = std::env::var("OSH_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rows = Vec::new();
    let quiet = [("OCI_SYSTEMD_HOOK_LOG", "warn")];

    // prestart
    let (mut wall, mut parse, mut plan, mut apply) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let sb = Sandbox::new(podman_config());
        let state = json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
        let r = timed(
            &state,
            &[
                ("OCI_SYSTEMD_HOOK_TIMINGS", "1"),
                ("OCI_SYSTEMD_HOOK_LOG", "warn"),
            ],
            &sb.bundle,
        );
        assert_eq!(r.status, 0, "{}", r.stderr);
        wall.push(ms(&r));
        parse.push(timing(&r.stderr, "parse_us"));
        plan.push(timing(&r.stderr, "plan_us"));
        apply.push(timing(&r.stderr, "apply_us"));
    }

    // Baseline: what spawning any program costs this harness.
    let mut base = vec![];
    for _ in 0..runs {
        let r = timed_exe("/bin/true", &json!({}), &[], std::path::Path::new("/"));
        base.push(ms(&r));
    }
    let base_median = median(&base);

    // no-op: a non-systemd container (decided before any host fact is read).
    let sb = Sandbox::new(noop_config());
    let state = json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    let mut noop = vec![];
    for _ in 0..runs {
        let r = timed(&state, &quiet, &sb.bundle);
        assert_eq!(r.status, 0, "{}", r.stderr);
        noop.push(ms(&r));
    }
    drop(sb);

    // poststop: the machine-id is written back before each (untimed).
    let sb = Sandbox::new(podman_config());
    let state =
        json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "stopped", "bundle": sb.bundle});
    let mut post = vec![];
    for _ in 0..runs {
        std::fs::write(
            sb.rootfs.join("etc/machine-id"),
            format!("{}\n", sb.machine_id()),
        )
        .unwrap();
        let r = timed(&state, &quiet, std::path::Path::new("/"));
        assert_eq!(r.status, 0, "{}", r.stderr);
        assert_eq!(
            std::fs::read(sb.rootfs.join("etc/machine-id")).unwrap(),
            b""
        );
        post.push(ms(&r));
    }
    drop(sb);

    // System calls (strace -f -c), one run each on a fresh container.
    let sb = Sandbox::new(podman_config());
    let state = json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    let (out, sys_pre) = count_syscalls(&hook(), &state, &quiet, &sb.bundle);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state =
        json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "stopped", "bundle": sb.bundle});
    let (out, sys_post) = count_syscalls(&hook(), &state, &quiet, std::path::Path::new("/"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(sb);
    let sb = Sandbox::new(noop_config());
    let state = json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    let (out, sys_noop) = count_syscalls(&hook(), &state, &quiet, &sb.bundle);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(sb);

    let net = |v: &[f64]| format!("{:.3}", median(v) - base_median);
    rows.push(row("prestart, exec to exit", wall.clone(), "", "ms"));
    rows.push(row("  in process: parse state+config", parse, "", "ms"));
    rows.push(row("  in process: host facts + plan", plan, "", "ms"));
    rows.push(row("  in process: apply (setns, mounts)", apply, "", "ms"));
    rows.push(row("baseline: /bin/true, exec to exit", base, "", "ms"));
    rows.push(one(
        "prestart net of /bin/true (medians)",
        runs,
        net(&wall),
        "<= 1.3",
        "ms",
    ));
    rows.push(row(
        "no-op (not systemd), exec to exit",
        noop.clone(),
        "",
        "ms",
    ));
    rows.push(one(
        "no-op net of /bin/true (medians)",
        runs,
        net(&noop),
        "<= 0.3",
        "ms",
    ));
    rows.push(row("poststop, exec to exit", post.clone(), "", "ms"));
    rows.push(one(
        "poststop net of /bin/true (medians)",
        runs,
        net(&post),
        "",
        "ms",
    ));
    rows.extend(rss_rows());
    rows.push(one(
        "system calls, prestart (strace -f)",
        1,
        sys_pre.total.to_string(),
        "<= 150",
        "",
    ));
    rows.push(one(
        "system calls, no-op",
        1,
        sys_noop.total.to_string(),
        "<= 60",
        "",
    ));
    rows.push(one(
        "system calls, poststop",
        1,
        sys_post.total.to_string(),
        "",
        "",
    ));
    let size = std::fs::metadata(hook()).unwrap().len();
    rows.push(one(
        "binary size",
        1,
        format!("{:.0}", size as f64 / 1024.0),
        "",
        "KiB",
    ));
    rows.extend(wrapper_rows(runs));

    match std::env::var("OSH_ROOTFS") {
        Ok(rootfs) if !rootfs.is_empty() => rows.extend(end_to_end(&rootfs)),
        _ => rows.push(Row {
            name: "end to end: ratio hook / --systemd=always".into(),
            runs: "0".into(),
            median: "skipped (set OSH_ROOTFS to a systemd rootfs; `make bench` does)".into(),
            p95: String::new(),
            max: String::new(),
            target: "<= 1.0".into(),
            unit: "x",
        }),
    }

    print_table(&rows);
    println!("\nsystem calls, prestart: {sys_pre}");
    println!("system calls, no-op: {sys_noop}");
    println!("system calls, poststop: {sys_post}");
}

/// Peak RSS ([`peak_rss_kib`]) of prestart, the no-op and poststop, each
/// on its own container, and of `/bin/true` for scale.
fn rss_rows() -> Vec<Row> {
    let runs: usize = std::env::var("OSH_BENCH_RSS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let quiet = [("OCI_SYSTEMD_HOOK_LOG", "warn")];
    let mib = |k: u64| k as f64 / 1024.0;
    let (mut pre, mut noop, mut post, mut base) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let sb = Sandbox::new(podman_config());
        let state = json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
        pre.push(mib(peak_rss_kib(&hook(), &state, &quiet, &sb.bundle)));
        let state = json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "stopped", "bundle": sb.bundle});
        post.push(mib(peak_rss_kib(
            &hook(),
            &state,
            &quiet,
            std::path::Path::new("/"),
        )));
        base.push(mib(peak_rss_kib(
            "/bin/true",
            &json!({}),
            &[],
            std::path::Path::new("/"),
        )));
    }
    let sb = Sandbox::new(noop_config());
    let state = json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    for _ in 0..runs {
        noop.push(mib(peak_rss_kib(&hook(), &state, &quiet, &sb.bundle)));
    }
    vec![
        row("peak RSS, prestart (VmHWM at exit)", pre, "<= 2", "MiB"),
        row("peak RSS, no-op", noop, "<= 2", "MiB"),
        row("peak RSS, poststop", post, "<= 2", "MiB"),
        row("peak RSS, /bin/true (for scale)", base, "", "MiB"),
    ]
}

/// The runtime wrapper (`oci-systemd-hook runtime [--runtime PATH] [--]
/// ARGS...`, issue 12): what it costs over exec'ing the runtime directly.
/// The runtime is /bin/true in both arms, so the difference of the medians
/// is the wrapper's own work up to its exec (argument parsing, for
/// `create` reading and patching the bundle's config.json), with no runc
/// noise on top. `create` gets a fresh copy of a systemd container's
/// config.json before each run (untimed), in a bundle on tmpfs as
/// containerd's. When `runtime --help` fails (no
/// wrapper in this build) both rows say so.
fn wrapper_rows(runs: usize) -> Vec<Row> {
    let names = [
        "wrapper pass-through (state/kill/delete) over the runtime",
        "wrapper create (config patch) over the runtime's create",
    ];
    let has = Command::new(hook())
        .args(["runtime", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let targets = ["<= 0.3", "<= 1"];
    if !has {
        return names
            .iter()
            .zip(targets)
            .map(|(n, t)| one(n, 0, "n/a (no runtime subcommand)".into(), t, "ms"))
            .collect();
    }
    // A run that fails (the wrapper refused the arguments) ends the
    // measure: its row says what failed instead of a figure.
    let exe_ms = |exe: &str, args: &[&str]| -> Result<f64, String> {
        let start = Instant::now();
        let out = Command::new(exe)
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("{exe}: {e}"))?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if !out.status.success() {
            return Err(format!(
                "failed: {exe} {} ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(ms)
    };
    let id = "perf-bench-wrapper";
    let pass = (|| -> Result<f64, String> {
        let (mut direct, mut wrapped) = (vec![], vec![]);
        for _ in 0..runs {
            direct.push(exe_ms("/bin/true", &["state", id])?);
            wrapped.push(exe_ms(
                &hook(),
                &["runtime", "--runtime", "/bin/true", "--", "state", id],
            )?);
        }
        Ok(median(&wrapped) - median(&direct))
    })();
    // The bundle on tmpfs, where containerd's shim keeps it
    // (/run/containerd/io.containerd.runtime.v2.task/<ns>/<id>): on ext4 the
    // rename over config.json makes ext4 write the new file out at once
    // (auto_da_alloc), which no Docker or containerd create pays. The
    // wrapper reads config.json only; no rootfs is needed.
    let dir = tempfile::Builder::new()
        .prefix("osh-bench-bundle-")
        .tempdir_in("/run")
        .unwrap();
    let config_path = dir.path().join("config.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(&podman_config()).unwrap(),
    )
    .unwrap();
    let config = std::fs::read(&config_path).unwrap();
    let bundle = dir.path().to_str().unwrap().to_string();
    let create_args = ["create", "--bundle", &bundle, id];
    let mut wrapper_args = vec!["runtime", "--runtime", "/bin/true", "--"];
    wrapper_args.extend(create_args);
    let create = (|| -> Result<(f64, bool), String> {
        let (mut direct, mut wrapped) = (vec![], vec![]);
        let mut patched = false;
        for _ in 0..runs {
            std::fs::write(&config_path, &config).unwrap();
            direct.push(exe_ms("/bin/true", &create_args)?);
            wrapped.push(exe_ms(&hook(), &wrapper_args)?);
            patched = std::fs::read(&config_path).unwrap() != config;
            std::fs::write(&config_path, &config).unwrap();
        }
        Ok((median(&wrapped) - median(&direct), patched))
    })();
    let figure = |r: Result<String, String>| r.unwrap_or_else(|e| e);
    vec![
        one(
            names[0],
            runs,
            figure(pass.map(|p| format!("{p:.3}"))),
            targets[0],
            "ms",
        ),
        one(
            names[1],
            runs,
            figure(create.map(|(c, patched)| {
                if patched {
                    format!("{c:.3}")
                } else {
                    format!("{c:.3} (config.json left unchanged)")
                }
            })),
            targets[1],
            "ms",
        ),
    ]
}

/// podman run → running → stop → rm, seconds.
fn podman_cycle(rootfs: &str, hooks_dir: &str, with_hook: bool) -> f64 {
    let mut args: Vec<String> = vec![
        "--hooks-dir".into(),
        hooks_dir.into(),
        "run".into(),
        "-d".into(),
        "--network=none".into(),
    ];
    args.extend(["-e", "container=oci", "--stop-signal=SIGRTMIN+3"].map(String::from));
    args.push(
        if with_hook {
            "--systemd=false"
        } else {
            "--systemd=always"
        }
        .into(),
    );
    let capbnd = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = capbnd
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    if bnd & (1 << 24) == 0 {
        args.extend(
            [
                "--ulimit",
                "nofile=20000:20000",
                "--ulimit",
                "nproc=32768:32768",
            ]
            .map(String::from),
        );
    }
    args.extend([
        "--rootfs".to_string(),
        format!("{rootfs}:O"),
        "/sbin/init".to_string(),
    ]);
    let start = Instant::now();
    let out = Command::new("podman").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = Command::new("podman")
            .args(["exec", &id, "systemctl", "is-system-running"])
            .output()
            .unwrap();
        let state = String::from_utf8_lossy(&s.stdout).trim().to_string();
        if state == "running" || state == "degraded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached running ({state})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = Command::new("podman")
        .args(["stop", "-t", "10", &id])
        .output()
        .unwrap();
    assert!(stop.status.success());
    let total = start.elapsed().as_secs_f64();
    let _ = Command::new("podman").args(["rm", "-f", &id]).output();
    let _ = std::fs::remove_dir_all(format!("/var/log/journal/{}", &id[..32]));
    total
}

fn end_to_end(rootfs: &str) -> Vec<Row> {
    let pairs: usize = std::env::var("OSH_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let hooks = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let desc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/hooks.d/oci-systemd-hook.json"
    ))
    .unwrap()
    .replace("/usr/libexec/oci/hooks.d/oci-systemd-hook", &hook());
    std::fs::write(hooks.path().join("oci-systemd-hook.json"), desc).unwrap();
    // Warm up both paths once.
    podman_cycle(rootfs, hooks.path().to_str().unwrap(), true);
    podman_cycle(rootfs, empty.path().to_str().unwrap(), false);
    let (mut with, mut without, mut ratio) = (vec![], vec![], vec![]);
    for i in 0..pairs {
        // Alternate which goes first.
        let (a, b) = if i % 2 == 0 {
            let a = podman_cycle(rootfs, hooks.path().to_str().unwrap(), true);
            (
                a,
                podman_cycle(rootfs, empty.path().to_str().unwrap(), false),
            )
        } else {
            let b = podman_cycle(rootfs, empty.path().to_str().unwrap(), false);
            (
                podman_cycle(rootfs, hooks.path().to_str().unwrap(), true),
                b,
            )
        };
        with.push(a);
        without.push(b);
        ratio.push(a / b);
    }
    println!(
        "end to end: podman run -> systemd running -> podman stop -> rm ({pairs} alternating pairs), ratios per pair: {}",
        ratio
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    vec![
        row("end to end: with the hook (--systemd=false)", with, "", "s"),
        row(
            "end to end: podman --systemd=always, no hook",
            without,
            "",
            "s",
        ),
        row(
            "end to end: ratio hook / always, per pair",
            ratio,
            "<= 1.0",
            "x",
        ),
    ]
}
