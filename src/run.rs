//! One hook run: input → decision → plan → apply → exit code.
//!
//! Exit code policy (kept here only):
//! - `0`: the work was done, or there was nothing to do (not a systemd
//!   container, opted out, an explicitly named stage the hook does not
//!   handle, a poststop whose bundle or rootfs is already gone);
//! - `1`: an error; one line on stderr and in syslog. At prestart the
//!   runtime then aborts the container start. At poststop the container is
//!   already deleted by then (podman and runc run poststop after deletion),
//!   so the error is reported but blocks nothing.
//!
//! Error class: when the hook refused on purpose (a safety rule: an
//! [`ApplyError::Refused`], a [`Refusal`], a refusing [`PlanError`]), the
//! error line's message starts with [`REFUSED`] (`refused: `) and the journal
//! record carries `OCI_ERROR=refused`; any other error has neither. The
//! marker is stable: tests and log filters may match on it.

use std::io::Read;
use std::time::Instant;

use anyhow::Context;

use crate::apply::{ApplyError, Refusal};
use crate::config;
use crate::decide::{Decision, decide};
use crate::facts::host_facts;
use crate::plan::{self, PlanError};
use crate::stage::{self, Stage, StageChoice};
use crate::state::{self, HookState};
use crate::{apply, log as hooklog};

/// What the hook was called with besides stdin.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `argv[1]`, when given.
    pub arg1: Option<String>,
    /// The `stage` environment variable, when set.
    pub env_stage: Option<String>,
}

/// Exit code for success and for "nothing to do".
pub const EXIT_OK: u8 = 0;
/// Exit code for any error.
pub const EXIT_ERROR: u8 = 1;

/// Runs the hook; returns the process exit code.
pub fn run(invocation: &Invocation, stdin: impl Read) -> u8 {
    let start = Instant::now();
    let state = match state::read(stdin) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return EXIT_ERROR;
        }
    };
    let stage = match stage::choose(
        invocation.env_stage.as_deref(),
        invocation.arg1.as_deref(),
        state.pid,
    ) {
        StageChoice::Known(s) => s,
        StageChoice::Unknown(name) => {
            hooklog::set_context(&state.id, state.short_id(), None);
            log::info!("stage {name:?} is not one this hook handles; nothing to do");
            return EXIT_OK;
        }
    };
    hooklog::set_context(&state.id, state.short_id(), Some(&stage.to_string()));
    let result = match stage {
        Stage::Prestart => prestart(&state, start),
        Stage::Poststop => poststop(&state),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(e) if is_refusal(&e) => {
            log::error!(oci_error = "refused"; "{REFUSED}{e:#}");
            EXIT_ERROR
        }
        Err(e) => {
            log::error!("{e:#}");
            EXIT_ERROR
        }
    }
}

/// The start of the message of an error line when the hook refused on
/// purpose (see the module docs).
pub const REFUSED: &str = "refused: ";

/// Whether `e` is a refusal of a safety rule rather than a failure.
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApplyError>()
        .is_some_and(ApplyError::is_refusal)
        || e.downcast_ref::<Refusal>().is_some()
        || e.downcast_ref::<PlanError>()
            .is_some_and(PlanError::is_refusal)
}

/// Environment variable that makes prestart print its phase timings to
/// stderr (`timings: parse_us=… plan_us=… apply_us=…`), for `make bench`.
pub const TIMINGS_ENV: &str = "OCI_SYSTEMD_HOOK_TIMINGS";

fn prestart(state: &HookState, start: Instant) -> anyhow::Result<()> {
    let pid = state
        .pid
        .context("the OCI state has no pid, which prestart needs")?;
    let config = config::load_with_process(&state.bundle)?;
    let machine_id = match decide(&config, &state.id) {
        Decision::Skip(why) => {
            log::info!("not a systemd container ({why}); nothing to do");
            return Ok(());
        }
        Decision::Apply(m) => m,
    };
    let parsed = Instant::now();
    let facts = host_facts(Some(pid), Some(&config.rootfs)).context("reading host facts")?;
    let plan = plan::prestart(&config, &facts, &state.id, &machine_id)?;
    for s in &plan.skipped {
        if s.is_warning() {
            log::warn!("skip {s}");
        } else {
            log::debug!("skip {s}");
        }
    }
    let planned = Instant::now();
    let registration = apply::prestart(&plan, pid, &config.rootfs)?;
    if std::env::var_os(TIMINGS_ENV).is_some() {
        let us = |a: Instant, b: Instant| b.duration_since(a).as_micros();
        eprintln!(
            "oci-systemd-hook: timings: parse_us={} plan_us={} apply_us={}",
            us(start, parsed),
            us(parsed, planned),
            us(planned, Instant::now())
        );
    }
    // The machine's fate ends the one summary line; only a failure gets a
    // line (a warning) of its own.
    let machine = match registration {
        Some(r) if r.is_failure() => {
            log::warn!("{r}");
            String::new()
        }
        Some(r) => format!("; {r}"),
        None => plan
            .skipped
            .iter()
            .find(|s| s.step == plan::Skipped::Machine && !s.is_warning())
            .map(|s| format!("; {s}"))
            .unwrap_or_default(),
    };
    log::info!(
        "prepared {} for systemd: {} host and {} container steps, machine-id {machine_id}, {} host, cgroups {}{machine}",
        config.rootfs.display(),
        plan.host.len(),
        plan.container.len(),
        facts.layout,
        plan.cgroup_model
            .map(|c| c.to_string())
            .unwrap_or("not planned".into())
    );
    Ok(())
}

fn poststop(state: &HookState) -> anyhow::Result<()> {
    let config = match config::load(&state.bundle) {
        Ok(c) => c,
        Err(config::ConfigError::Load { path, source }) if !path.exists() => {
            log::info!("{} is gone ({source}); nothing to clean", path.display());
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let machine_id = match decide(&config, &state.id) {
        Decision::Skip(why) => {
            log::debug!("not a systemd container ({why}); nothing to do");
            return Ok(());
        }
        Decision::Apply(m) => m,
    };
    let plan = plan::poststop(
        &config,
        &state.id,
        &machine_id,
        crate::facts::host_machine_id().as_deref(),
        crate::cgroup::detect_layout().is_ok_and(|l| l == crate::cgroup::Layout::Legacy),
        crate::machine::probe(),
    );
    apply::poststop(&plan, &config.rootfs)?;
    log::info!("cleaned {}", config.rootfs.display());
    Ok(())
}
