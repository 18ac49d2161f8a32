//! The `oci-systemd-hook` binary: thin wrapper around [`oci_systemd_hook::run`].
//!
//! Its entry point is C's `main`, not std's start-up (`#![no_main]`): a hook
//! runs once per container start and stop, and std's start-up spends about
//! twenty system calls on a stack-overflow handler (it reads
//! `/proc/self/maps` for the main thread's stack, maps an alternate signal
//! stack, installs SIGSEGV/SIGBUS handlers), more than the no-op path's own
//! work. [`main`] keeps the two things of std's start-up that the hook
//! relies on: fds 0–2 are open (a closed one is opened on `/dev/null`, so
//! that no file the hook opens can become its stdout or stderr), and SIGPIPE
//! is ignored (a write to a closed stderr is an error, not death). A stack
//! overflow is then a plain SIGSEGV, without std's message. Arguments come
//! from std as usual (glibc hands them to std's `.init_array` hook). The
//! unit-test build of this file keeps std's start-up (the test harness has
//! its own `main`).
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

use oci_systemd_hook::run::{Invocation, run};
use oci_systemd_hook::{explain, wrapper};

const USAGE: &str = "\
usage: oci-systemd-hook [prestart|createRuntime|poststop] < state.json
       oci-systemd-hook explain --bundle DIR [--pid PID] [--id ID]
       oci-systemd-hook runtime [--runtime PATH] [--] RUNTIME-ARGS...

An OCI hook that prepares a container for systemd as PID 1 (tmpfs on /run,
/run/lock and /tmp, the journal, the cgroup tree, /etc/machine-id) at
prestart and cleans up at poststop. Runtimes pass the OCI state on stdin.
The stage comes from $stage, else the argument, else the state (a pid means
prestart). Log level: OCI_SYSTEMD_HOOK_LOG=error|warn|info|debug.

explain prints what the hook would do for a bundle, touching nothing.
runtime wraps an OCI runtime (runc by default) for Docker and containerd:
on create and run it adds this hook to config.json, then execs the runtime;
called as oci-systemd-runtime (a link) it takes the runtime's arguments only.
Exit codes: 0 done or nothing to do, 1 error, 2 usage error (explain, runtime).";

/// The process entry point (see the module docs): std's stdio and SIGPIPE
/// set-up, then [`hook_main`]; stdout is flushed before the exit code is
/// returned (std's start-up would flush it at exit).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    sanitize_stdio();
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = hook_main();
    let _ = std::io::Write::flush(&mut std::io::stdout());
    libc::c_int::from(code)
}

/// Opens `/dev/null` on each of fds 0, 1 and 2 that is closed, as std's
/// start-up does (one `poll`; an `open` only for a closed fd). Aborts when
/// that fails, as std does.
fn sanitize_stdio() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: fds is a valid array of 3 pollfd for the call's duration.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if r < 0 {
        return;
    }
    for p in fds {
        if p.revents & libc::POLLNVAL != 0 {
            // SAFETY: a C string literal; open returns the lowest free fd,
            // which is p.fd since the lower ones are open by now.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != p.fd {
                std::process::abort();
            }
        }
    }
}

fn hook_main() -> u8 {
    // The runtime wrapper first: it execs the real runtime and must not
    // read any argument the runtime owns (`--help`, `--version`).
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name() == Some(wrapper::LINK_NAME.as_ref()) {
        return wrapper::main(&argv.collect::<Vec<_>>());
    }
    let rest: Vec<_> = argv.collect();
    if rest.first().is_some_and(|a| a == "runtime") {
        return wrapper::main(&rest[1..]);
    }
    let arg1 = std::env::args_os()
        .nth(1)
        .map(|a| a.to_string_lossy().into_owned());
    match arg1.as_deref() {
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return 0;
        }
        Some("--version" | "-V") => {
            println!("oci-systemd-hook {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Some("explain") => {
            let rest: Vec<String> = std::env::args_os()
                .skip(2)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let args = match explain::parse_args(&rest) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("oci-systemd-hook: {e}\n{}", explain::USAGE);
                    return 2;
                }
            };
            return match explain::explain(&args, &mut std::io::stdout().lock()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("oci-systemd-hook: error: {e:#}");
                    1
                }
            };
        }
        _ => {}
    }
    oci_systemd_hook::log::init();
    let invocation = Invocation {
        arg1,
        env_stage: std::env::var("stage").ok(),
    };
    run(&invocation, std::io::stdin().lock())
}
