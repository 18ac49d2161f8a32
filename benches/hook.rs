//! `make bench`: what the hook costs a container start. A benchmark, not a
//! test: it prints figures and asserts nothing about time.
//!
//! - prestart, exec to exit, over OSH_BENCH_RUNS (default 200) runs, each on
//!   a fresh prepared container (a real mount namespace held by a sleeping
//!   process in its own cgroup, a real rootfs directory, the state and the
//!   config.json podman 4.3 writes, from tests/fixtures); plus the in-process
//!   breakdown the hook prints with OCI_SYSTEMD_HOOK_TIMINGS=1;
//! - the no-op path (a non-systemd container) and poststop, the same way;
//! - the hook's peak RSS (wait4 rusage);
//! - end to end, when OSH_ROOTFS names a systemd rootfs: `podman run` →
//!   systemd `running` → `podman stop` → `podman rm`, with the hook
//!   (`--systemd=false`) against podman `--systemd=always` without it, runs
//!   alternating, OSH_BENCH_PAIRS (default 10) pairs; the ratio per pair and
//!   its median.
//!
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
    maxrss_kib: i64,
    stderr: String,
    status: i32,
}

/// Spawns the hook with `state` on stdin and `env`, waits with wait4 for its
/// rusage.
fn timed(state: &Value, env: &[(&str, &str)], cwd: &std::path::Path) -> Run {
    timed_exe(HOOK, state, env, cwd)
}

fn timed_exe(exe: &str, state: &Value, env: &[(&str, &str)], cwd: &std::path::Path) -> Run {
    let payload = state.to_string();
    let start = Instant::now();
    // Reaped below with wait4, which std's Child does not offer.
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
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waiting for our own child; status and usage are valid pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(r, pid, "wait4");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        wall,
        maxrss_kib: usage.ru_maxrss,
        stderr,
        status: libc::WEXITSTATUS(status),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn row(name: &str, mut v: Vec<f64>, unit: &str) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "| {name:<34} | {:>5} | {:>9.3} | {:>9.3} | {:>9.3} | {unit:<4} |",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        v[v.len() - 1]
    )
}

fn print_header() {
    println!(
        "| {:<34} | {:>5} | {:>9} | {:>9} | {:>9} | {:<4} |",
        "measure", "runs", "median", "p95", "max", "unit"
    );
    let widths = [36, 7, 11, 11, 11, 6];
    println!("|{}|", widths.map(|w| "-".repeat(w)).join("|"));
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

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    require_root();
    let runs: usize = std::env::var("OSH_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rows = Vec::new();
    let mut rss = Vec::new();

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
        wall.push(r.wall.as_secs_f64() * 1000.0);
        parse.push(timing(&r.stderr, "parse_us"));
        plan.push(timing(&r.stderr, "plan_us"));
        apply.push(timing(&r.stderr, "apply_us"));
        rss.push(r.maxrss_kib as f64);
    }
    rows.push(row("prestart, exec to exit", wall, "ms"));
    rows.push(row("  in process: parse state+config", parse, "ms"));
    rows.push(row("  in process: host facts + plan", plan, "ms"));
    rows.push(row("  in process: apply (setns, mounts)", apply, "ms"));

    // Baseline: what spawning any program costs this harness.
    let mut base = vec![];
    for _ in 0..runs {
        let r = timed_exe("/bin/true", &json!({}), &[], std::path::Path::new("/"));
        base.push(r.wall.as_secs_f64() * 1000.0);
    }
    rows.push(row("baseline: /bin/true, exec to exit", base, "ms"));

    // no-op: a non-systemd container (decided before any host fact is read).
    let mut cfg = podman_config();
    cfg["process"]["args"] = json!(["sleep", "100"]);
    let sb = Sandbox::new(cfg);
    let state = json!({"ociVersion": "1.0.2-dev", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    let mut noop = vec![];
    for _ in 0..runs {
        let r = timed(&state, &[("OCI_SYSTEMD_HOOK_LOG", "warn")], &sb.bundle);
        assert_eq!(r.status, 0, "{}", r.stderr);
        noop.push(r.wall.as_secs_f64() * 1000.0);
        rss.push(r.maxrss_kib as f64);
    }
    drop(sb);
    rows.push(row("no-op (not systemd), exec to exit", noop, "ms"));

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
        let r = timed(
            &state,
            &[("OCI_SYSTEMD_HOOK_LOG", "warn")],
            std::path::Path::new("/"),
        );
        assert_eq!(r.status, 0, "{}", r.stderr);
        assert_eq!(
            std::fs::read(sb.rootfs.join("etc/machine-id")).unwrap(),
            b""
        );
        post.push(r.wall.as_secs_f64() * 1000.0);
        rss.push(r.maxrss_kib as f64);
    }
    drop(sb);
    rows.push(row("poststop, exec to exit", post, "ms"));
    rows.push(row(
        "peak RSS of the hook (all runs)",
        rss.iter().map(|k| k / 1024.0).collect(),
        "MiB",
    ));

    print_header();
    for r in &rows {
        println!("{r}");
    }

    match std::env::var("OSH_ROOTFS") {
        Ok(rootfs) if !rootfs.is_empty() => end_to_end(&rootfs),
        _ => println!(
            "\nend to end: skipped (set OSH_ROOTFS to a systemd rootfs; `make bench` does)"
        ),
    }
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

fn end_to_end(rootfs: &str) {
    let pairs: usize = std::env::var("OSH_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let hooks = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let desc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/hooks.d/oci-systemd-hook.json"
    ))
    .unwrap()
    .replace("/usr/libexec/oci/hooks.d/oci-systemd-hook", HOOK);
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
        "\nend to end: podman run -> systemd running -> podman stop -> rm ({pairs} alternating pairs)"
    );
    print_header();
    println!("{}", row("with the hook (--systemd=false)", with, "s"));
    println!("{}", row("podman --systemd=always, no hook", without, "s"));
    println!(
        "{}",
        row("ratio hook / always, per pair", ratio.clone(), "x")
    );
    println!(
        "ratios per pair: {}",
        ratio
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
