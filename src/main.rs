//! The `oci-systemd-hook` binary: thin wrapper around [`oci_systemd_hook::run`].

use std::process::ExitCode;

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

fn main() -> ExitCode {
    // The runtime wrapper first: it execs the real runtime and must not
    // read any argument the runtime owns (`--help`, `--version`).
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name() == Some(wrapper::LINK_NAME.as_ref()) {
        return ExitCode::from(wrapper::main(&argv.collect::<Vec<_>>()));
    }
    let rest: Vec<_> = argv.collect();
    if rest.first().is_some_and(|a| a == "runtime") {
        return ExitCode::from(wrapper::main(&rest[1..]));
    }
    let arg1 = std::env::args_os()
        .nth(1)
        .map(|a| a.to_string_lossy().into_owned());
    match arg1.as_deref() {
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("oci-systemd-hook {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
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
                    return ExitCode::from(2);
                }
            };
            return match explain::explain(&args, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("oci-systemd-hook: error: {e:#}");
                    ExitCode::from(1)
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
    ExitCode::from(run(&invocation, std::io::stdin().lock()))
}
