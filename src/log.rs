//! Logging: every record goes to stderr (runtimes show a failing hook's
//! stderr) and to the system log: journald when its socket is there (native
//! protocol, `SYSLOG_IDENTIFIER=oci-systemd-hook` plus the fields
//! `OCI_CONTAINER_ID`, `OCI_STAGE` and, for plan steps, `OCI_ACTION`), else
//! syslog (`/dev/log`). Each line carries the short container id and stage.
//! Read it with `journalctl -t oci-systemd-hook`, or
//! `journalctl OCI_CONTAINER_ID=<id>`.
//!
//! The level comes from `OCI_SYSTEMD_HOOK_LOG` (`error`, `warn`, `info`,
//! `debug`; default `info`). The system log is connected once, at the first
//! record or at [`connect`], whichever comes first: prestart calls
//! [`connect`] once it knows it has work, before it joins a container's mount
//! namespace (whose `/dev/log` is the container's); a run that logs nothing
//! (the no-op at level `warn`) never opens a socket.

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};
use systemd_journal_logger::JournalLog;

/// Environment variable that sets the log level.
pub const LEVEL_ENV: &str = "OCI_SYSTEMD_HOOK_LOG";

/// The syslog identifier on every record.
pub const IDENTIFIER: &str = "oci-systemd-hook";

/// The syslog socket used when journald's is not there: Linux's (the
/// `syslog` crate's `unix()` would also try the BSD and macOS paths
/// `/var/run/syslog` and `/var/run/log`, a socket and a connect each).
pub const SYSLOG_SOCKET: &str = "/dev/log";

enum Sink {
    Journal(JournalLog),
    Syslog(syslog::Logger<LoggerBackend, Formatter3164>),
}

/// Where records go besides stderr: `Pending` until [`connect`] (or the
/// first record), then the sink found, if any.
enum Slot {
    Pending,
    Connected(Option<Sink>),
}

struct HookLogger {
    sink: Mutex<Slot>,
    context: Mutex<String>,
    /// The journal fields of the context (`OCI_CONTAINER_ID`, `OCI_STAGE`).
    fields: Mutex<Vec<(&'static str, String)>>,
}

static LOGGER: HookLogger = HookLogger {
    sink: Mutex::new(Slot::Pending),
    context: Mutex::new(String::new()),
    fields: Mutex::new(Vec::new()),
};

fn journal(fields: &[(&str, String)]) -> Option<JournalLog> {
    if !systemd_journal_logger::connected_to_journal()
        && !std::path::Path::new("/run/systemd/journal/socket").exists()
    {
        return None;
    }
    let j = JournalLog::new()
        .ok()?
        .with_syslog_identifier(IDENTIFIER.to_string());
    Some(j.with_extra_fields(fields.iter().map(|(k, v)| (k.to_string(), v.to_string()))))
}

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

/// Installs the logger once (the level from [`LEVEL_ENV`]); later calls do
/// nothing. Opens nothing: the system log is connected by [`connect`] or the
/// first record.
pub fn init() {
    let level = std::env::var(LEVEL_ENV)
        .ok()
        .and_then(|s| parse_level(&s))
        .unwrap_or(LevelFilter::Info);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Connects the system log (journald's socket, else `/dev/log`) unless it
/// is connected already. Call it before joining another mount namespace: a
/// record logged there must not look for the socket in the container.
pub fn connect() {
    if let Ok(mut slot) = LOGGER.sink.lock() {
        connect_slot(&mut slot);
    }
}

fn connect_slot(slot: &mut Slot) {
    if matches!(slot, Slot::Connected(_)) {
        return;
    }
    let fields = LOGGER.fields.lock().map(|f| f.clone()).unwrap_or_default();
    let formatter = Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "oci-systemd-hook".into(),
        pid: std::process::id(),
    };
    *slot = Slot::Connected(journal(&fields).map(Sink::Journal).or_else(|| {
        syslog::unix_custom(formatter, SYSLOG_SOCKET)
            .ok()
            .map(Sink::Syslog)
    }));
}

/// `s` with every control character (newline, carriage return, tab, escape,
/// …) written as Rust's `char::escape_debug` writes it (`\n`, `\u{1b}`),
/// so that a container id or a path from the runtime's input can never start
/// a line of its own on stderr or in the syslog. Everything else is kept.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Sets the prefix of every following line (`<short id>` or
/// `<short id> <stage>`) and the journal fields `OCI_CONTAINER_ID` (the full
/// id) and `OCI_STAGE`.
pub fn set_context(id: &str, short_id: &str, stage: Option<&str>) {
    if let Ok(mut c) = LOGGER.context.lock() {
        *c = match stage {
            Some(stage) => format!("{short_id} {stage}"),
            None => short_id.to_string(),
        };
    }
    let mut fields = vec![("OCI_CONTAINER_ID", id.to_string())];
    if let Some(stage) = stage {
        fields.push(("OCI_STAGE", stage.to_string()));
    }
    if let Ok(mut f) = LOGGER.fields.lock() {
        f.clone_from(&fields);
    }
    if let Ok(mut slot) = LOGGER.sink.lock()
        && matches!(*slot, Slot::Connected(Some(Sink::Journal(_))))
        && let Some(j) = journal(&fields)
    {
        *slot = Slot::Connected(Some(Sink::Journal(j)));
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
        let line = escape_controls(&line);
        let level = record.level().as_str().to_ascii_lowercase();
        let _ = writeln!(std::io::stderr(), "oci-systemd-hook: {level}: {line}");
        let Ok(mut slot) = self.sink.lock() else {
            return;
        };
        connect_slot(&mut slot);
        let Slot::Connected(sink) = &mut *slot else {
            return;
        };
        match sink.as_mut() {
            // Journal fields come from the extra fields and the record's
            // key-values (`action = ...` becomes OCI_ACTION).
            Some(Sink::Journal(j)) => {
                let args = format_args!("{line}");
                let rec = Record::builder()
                    .args(args)
                    .level(record.level())
                    .target(record.target())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .key_values(record.key_values())
                    .build();
                let _ = j.journal_send(&rec);
            }
            Some(Sink::Syslog(s)) => {
                let _ = match record.level() {
                    Level::Error => s.err(&line),
                    Level::Warn => s.warning(&line),
                    Level::Info => s.info(&line),
                    Level::Debug | Level::Trace => s.debug(&line),
                };
            }
            None => {}
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

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("abc d/é"), "abc d/é");
        assert_eq!(
            escape_controls("id\nerror: fake\r\t\u{1b}[1m\u{7f}\u{85}"),
            "id\\nerror: fake\\r\\t\\u{1b}[1m\\u{7f}\\u{85}"
        );
        assert!(!escape_controls("a\nb").contains('\n'));
    }
}
