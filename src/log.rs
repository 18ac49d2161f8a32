//! Logging: every record goes to stderr (runtimes show a failing hook's
//! stderr) and to syslog, which journald also serves (`journalctl -t
//! oci-systemd-hook`). Each line carries the short container id and stage.
//!
//! The level comes from `OCI_SYSTEMD_HOOK_LOG` (`error`, `warn`, `info`,
//! `debug`; default `info`). The syslog socket is connected once at start,
//! before the hook joins a container's mount namespace.

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};

/// Environment variable that sets the log level.
pub const LEVEL_ENV: &str = "OCI_SYSTEMD_HOOK_LOG";

struct HookLogger {
    syslog: Mutex<Option<syslog::Logger<LoggerBackend, Formatter3164>>>,
    context: Mutex<String>,
}

static LOGGER: HookLogger = HookLogger {
    syslog: Mutex::new(None),
    context: Mutex::new(String::new()),
};

/// Parses a level name; `None` for an unknown one.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        _ => None,
    }
}

/// Installs the logger once; later calls do nothing.
pub fn init() {
    let level = std::env::var(LEVEL_ENV)
        .ok()
        .and_then(|s| parse_level(&s))
        .unwrap_or(LevelFilter::Info);
    let formatter = Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "oci-systemd-hook".into(),
        pid: std::process::id(),
    };
    if let Ok(mut slot) = LOGGER.syslog.lock() {
        *slot = syslog::unix(formatter).ok();
    }
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Sets the prefix of every following line, e.g. `4f3c2a1b9e8d prestart`.
pub fn set_context(context: String) {
    if let Ok(mut c) = LOGGER.context.lock() {
        *c = context;
    }
}

impl Log for HookLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let context = self.context.lock().map(|c| c.clone()).unwrap_or_default();
        let line = if context.is_empty() {
            format!("{}", record.args())
        } else {
            format!("{context}: {}", record.args())
        };
        let level = record.level().as_str().to_ascii_lowercase();
        let _ = writeln!(std::io::stderr(), "oci-systemd-hook: {level}: {line}");
        if let Ok(mut slot) = self.syslog.lock()
            && let Some(s) = slot.as_mut()
        {
            let _ = match record.level() {
                Level::Error => s.err(&line),
                Level::Warn => s.warning(&line),
                Level::Info => s.info(&line),
                Level::Debug | Level::Trace => s.debug(&line),
            };
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }
}
