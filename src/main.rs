//! The `oci-systemd-hook` binary: thin wrapper around [`oci_systemd_hook::run`].

use std::process::ExitCode;

use oci_systemd_hook::explain;
use oci_systemd_hook::run::{Invocation, run};

const USAGE: &str = "\
usage: oci-systemd-hook [prestart|createRuntime|poststop] < state.json
       oci-systemd-hook explain --bundle DIR [--pid PID] [--id ID]

An OCI hook that prepares a container for systemd as PID 1 (tmpfs on /run,
/run/lock and /tmp, the journal, the cgroup tree, /etc/machine-id) at
prestart and cleans up at poststop. Runtimes pass the OCI state on stdin.
The stage comes from $stage, else the argument, else the state (a pid means
prestart). Log level: OCI_SYSTEMD_HOOK_LOG=error|warn|info|debug.

explain prints what the hook would do for a bundle, touching nothing.
Exit codes: 0 done or nothing to do, 1 error, 2 usage error (explain).";

fn main() -> ExitCode {
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
