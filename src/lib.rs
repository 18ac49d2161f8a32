//! oci-systemd-hook: an OCI hook that prepares a container so that systemd can
//! run as its PID 1 without `--privileged`.
//!
//! Data flow: [`state`] + [`config`] + host facts ([`facts`], [`cgroup`]) →
//! [`decide`] → [`plan`] (pure) → [`apply`] (the only code that mounts) →
//! exit code ([`run`]).

pub mod apply;
pub mod cgmodel;
pub mod cgroup;
pub mod config;
pub mod copyup;
pub mod decide;
pub mod explain;
pub mod facts;
pub mod image;
pub mod log;
pub mod machine;
pub mod machine_id;
pub mod mountinfo;
pub mod mounts;
pub mod plan;
pub mod reopen;
pub mod run;
pub mod stage;
pub mod state;
pub mod wrapper;
