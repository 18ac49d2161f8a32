//! What one hook run costs, as a count of system calls (`strace -f -c`):
//! a prestart of a systemd container and the no-op of a container that is
//! not one, each on a prepared container (tests/common: a real mount
//! namespace held by a sleeping process in its own cgroup, a real rootfs,
//! podman 4.3's config.json). A count, stable on a noisy machine, never a
//! time. Needs root and strace(1).
//!
//! The no-op's limit is issue 16's target (60; it makes 26). The
//! prestart's is not: the target is 150 and the hook makes 328 here
//! (hybrid cgroups, no journald, podman 4.3's config.json: tmpfs on /run,
//! /run/lock and /tmp with copy-up, the journal and cgroup binds, the
//! machine-id). Where they go: about 17 to start the statically linked
//! binary (.cargo/config.toml; a dynamic one, RUSTFLAGS set, makes 27 more)
//! and read the state; about 90 on the host side before the setns
//! (config.json, the host facts with the image's systemd version, about 15,
//! pinning the container with a pidfd, the journal directory, the cgroup
//! checks, `open_tree` clones, the log socket); in the container, safety:
//! pathrs' safe procfs handle for reopening `O_PATH` handles, 47 once (a
//! detached `subset=pid` procfs, checked twice by pathrs), then 3 per
//! reopen; per tmpfs about 21 (the `RESOLVE_IN_ROOT` lookup, type, identity
//! and mount checks of the guard; the mount table read after the setns is
//! kept current across the tmpfs mounts, read again only for a tmpfs that
//! follows a bind, as the v1 cgroup tmpfs does) plus the copy-up (about 8 per file); per bind
//! about 12 (the lookup or mkdir, the guard's type and mount checks,
//! `move_mount`, private, flags). The limit is that count with about 10%
//! room for a host with another cgroup layout, a journald socket or a
//! dynamic build, so that a regression (a reopen per file through
//! `Handle::reopen` again: about 28 calls each; a pathrs error per missing
//! path: about 9; the mount table read after each mount: 4 each) fails.
//! OSH_COST_HOOK runs the test against another build of the hook;
//! OSH_COST_TRACE=DIR keeps the
//! strace output there.

mod common;

use common::*;
use serde_json::{Value, json};

/// Most system calls one prestart may make (see the module docs).
const PRESTART_MAX: u64 = 360;
/// Most system calls one no-op (not a systemd container) may make.
const NOOP_MAX: u64 = 60;

/// The hook measured: this build's, or OSH_COST_HOOK.
fn hook() -> String {
    std::env::var("OSH_COST_HOOK").unwrap_or_else(|_| HOOK.to_string())
}

fn podman_config() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/config/podman-4.3-systemd-false.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Runs the hook's prestart on `sb`'s container under `strace -f` (log level
/// warn), asserts it succeeded, and returns its system call counts.
fn prestart_counted(sb: &Sandbox) -> Syscalls {
    let state = json!({"ociVersion": "1.0.2", "id": sb.id, "status": "creating", "pid": sb.pid(), "bundle": sb.bundle});
    let (out, calls) = count_syscalls(
        &hook(),
        &state,
        &[("OCI_SYSTEMD_HOOK_LOG", "warn")],
        &sb.bundle,
    );
    assert_ok(&out);
    calls
}

#[test]
fn prestart_stays_within_its_syscall_budget() {
    let sb = Sandbox::new(podman_config());
    let calls = prestart_counted(&sb);
    // The prestart really happened: /run is the hook's tmpfs.
    let run = sb
        .mount_at("/run")
        .expect("no mount on /run after prestart");
    assert_eq!(run.fs_type, "tmpfs");
    eprintln!("prestart: {calls}");
    assert!(
        calls.total <= PRESTART_MAX,
        "prestart made {calls} system calls, more than {PRESTART_MAX}"
    );
}

#[test]
fn noop_stays_within_its_syscall_budget() {
    let mut cfg = podman_config();
    cfg["process"]["args"] = json!(["sleep", "100"]);
    let sb = Sandbox::new(cfg);
    let calls = prestart_counted(&sb);
    assert!(sb.mount_at("/run").is_none(), "the no-op mounted /run");
    eprintln!("no-op: {calls}");
    assert!(
        calls.total <= NOOP_MAX,
        "the no-op made {calls} system calls, more than {NOOP_MAX}"
    );
}
