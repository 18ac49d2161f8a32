//! systemd-machined on the system bus (`org.freedesktop.machine1(5)`),
//! through zbus' blocking API.
//!
//! Prestart: [`connect`] opens the system bus socket on the host side, before
//! the hook joins the container's mount namespace (after it the socket's path
//! would resolve there); [`register`] makes the call last, after the
//! container steps. The D-Bus client runs threads, and `setns` into a mount
//! namespace refuses a process with threads (`EINVAL`), so no zbus code runs
//! before the container steps are done.
//!
//! `RegisterMachineEx` (systemd ≥ 259) takes the init's pidfd, so machined
//! pins the very process the hook checked; older machined answers
//! `UnknownMethod` and gets `RegisterMachine` with the pid. At prestart the
//! init has not exec'd systemd yet; machined records the leader all the same
//! (systemd-nspawn registers before its exec too).
//!
//! Poststop: [`terminate`] calls `TerminateMachine` only when machined's
//! machine of that name has this container's id and root directory, so a
//! name another container holds is never touched.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use zbus::blocking::Connection;
use zbus::zvariant::{Fd, OwnedObjectPath, OwnedValue, Value};

use crate::machine::{CLASS, Machine};

/// The system bus socket (D-Bus specification, "Well-known Message Bus
/// Instances").
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";
const DEST: &str = "org.freedesktop.machine1";
const PATH: &str = "/org/freedesktop/machine1";
const MANAGER: &str = "org.freedesktop.machine1.Manager";
const MACHINE: &str = "org.freedesktop.machine1.Machine";
/// How long one call may take: machined may have to be started by bus
/// activation first. A hung bus must not hold the container's start for
/// the runtime's whole hook timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long all of a registration or termination may take, the bus's
/// `Hello` included (which zbus does not bound): a bus that never answers
/// costs this much once and one warning, not a hung container start.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f` on a thread of its own and waits at most [`TOTAL_TIMEOUT`];
/// `None` when it did not finish (the thread is left to the process's exit)
/// or could not start.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("machined".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.recv_timeout(TOTAL_TIMEOUT).ok()
}

/// What became of the registration: the end of prestart's summary line, or
/// its one warning ([`Registration::is_failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// machined has the machine (`ex`: through `RegisterMachineEx`, with
    /// the pidfd).
    Registered { name: String, ex: bool },
    /// No system bus to connect to.
    NoBus(String),
    /// The bus has no machined (`ServiceUnknown`, `NameHasNoOwner`: no
    /// systemd-container package).
    NoMachined,
    /// The bus or machined refused or failed.
    Failed(String),
}

impl Registration {
    /// Whether this deserves the one warning.
    pub fn is_failure(&self) -> bool {
        matches!(self, Registration::Failed(_))
    }
}

impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Registration::Registered { name, ex } => write!(
                f,
                "registered as machine {name} with systemd-machined{}",
                if *ex { " (by pidfd)" } else { "" }
            ),
            Registration::NoBus(e) => write!(
                f,
                "systemd-machined registration: no system bus at {SYSTEM_BUS_SOCKET} ({e})"
            ),
            Registration::NoMachined => write!(
                f,
                "systemd-machined registration: machined is not on the system bus"
            ),
            Registration::Failed(e) => write!(
                f,
                "cannot register with systemd-machined: {e}; the container runs unregistered"
            ),
        }
    }
}

/// A connected system bus socket and the machine to register on it.
pub(super) struct Pending {
    stream: UnixStream,
    machine: Machine,
}

/// Connects the system bus socket for `machine` (host side).
///
/// # Errors
/// [`Registration::NoBus`] when there is no bus to connect to.
pub(super) fn connect(machine: &Machine) -> Result<Pending, Registration> {
    let stream =
        UnixStream::connect(SYSTEM_BUS_SOCKET).map_err(|e| Registration::NoBus(e.to_string()))?;
    Ok(Pending {
        stream,
        machine: machine.clone(),
    })
}

fn bus(stream: UnixStream) -> zbus::Result<Connection> {
    zbus::blocking::connection::Builder::async_io_unix_stream(stream)
        .method_timeout(CALL_TIMEOUT)
        .build()
}

/// The D-Bus error name of `e`, when machined or the bus answered with one.
fn error_name(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str()),
        _ => None,
    }
}

fn no_machined(e: &zbus::Error) -> bool {
    matches!(
        error_name(e),
        Some(
            "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
        )
    )
}

/// Registers the machine with leader `pid`, pinned by `pidfd`, within
/// [`TOTAL_TIMEOUT`].
pub(super) fn register(pending: Pending, pidfd: BorrowedFd<'_>, pid: i32) -> Registration {
    let pidfd = match pidfd.try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => return Registration::Failed(format!("dup the pidfd: {e}")),
    };
    bounded(move || register_now(pending, pidfd.as_fd(), pid)).unwrap_or_else(|| {
        Registration::Failed(format!(
            "no answer on the system bus within {} s",
            TOTAL_TIMEOUT.as_secs()
        ))
    })
}

fn register_now(pending: Pending, pidfd: BorrowedFd<'_>, pid: i32) -> Registration {
    let Pending { stream, machine } = pending;
    let conn = match bus(stream) {
        Ok(c) => c,
        Err(e) => return Registration::Failed(format!("system bus: {e}")),
    };
    // machined takes "" for no root directory; D-Bus strings are UTF-8.
    let root = machine.root_directory.to_str().unwrap_or("");
    let id = machine.id_bytes().to_vec();
    let props: Vec<(&str, Value<'_>)> = vec![
        ("Id", Value::from(id.clone())),
        ("Service", Value::from(machine.service.as_str())),
        ("Class", Value::from(CLASS)),
        ("LeaderPIDFD", Value::from(Fd::from(pidfd))),
        ("RootDirectory", Value::from(root)),
    ];
    let ex = conn.call_method(
        Some(DEST),
        PATH,
        Some(MANAGER),
        "RegisterMachineEx",
        &(machine.name.as_str(), props),
    );
    let result = match ex {
        Ok(_) => {
            return Registration::Registered {
                name: machine.name,
                ex: true,
            };
        }
        Err(e) if error_name(&e) == Some("org.freedesktop.DBus.Error.UnknownMethod") => conn
            .call_method(
                Some(DEST),
                PATH,
                Some(MANAGER),
                "RegisterMachine",
                &(
                    machine.name.as_str(),
                    id,
                    machine.service.as_str(),
                    CLASS,
                    pid as u32,
                    root,
                ),
            ),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Registration::Registered {
            name: machine.name,
            ex: false,
        },
        Err(e) if no_machined(&e) => Registration::NoMachined,
        Err(e) => Registration::Failed(e.to_string()),
    }
}

/// What [`terminate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Termination {
    /// machined had the machine and was asked to terminate it.
    Terminated,
    /// machined has no machine of that name (it dropped it when the
    /// container's unit ended), or no machined, or no bus.
    Gone(String),
    /// A machine of that name with another id or root directory: another
    /// container's, left alone.
    Foreign,
}

/// Terminates `machine` in machined when it is still there and still ours,
/// within [`TOTAL_TIMEOUT`].
///
/// # Errors
/// The bus or machined failed or did not answer (the caller warns; poststop
/// goes on).
pub(super) fn terminate(machine: &Machine) -> Result<Termination, String> {
    let machine = machine.clone();
    bounded(move || terminate_now(&machine).map_err(|e| e.to_string())).unwrap_or_else(|| {
        Err(format!(
            "no answer on the system bus within {} s",
            TOTAL_TIMEOUT.as_secs()
        ))
    })
}

fn terminate_now(machine: &Machine) -> Result<Termination, zbus::Error> {
    let stream = match UnixStream::connect(SYSTEM_BUS_SOCKET) {
        Ok(s) => s,
        Err(e) => return Ok(Termination::Gone(format!("no system bus ({e})"))),
    };
    let conn = bus(stream)?;
    let gone = |e: &zbus::Error| {
        no_machined(e) || error_name(e) == Some("org.freedesktop.machine1.NoSuchMachine")
    };
    let path: OwnedObjectPath = match conn.call_method(
        Some(DEST),
        PATH,
        Some(MANAGER),
        "GetMachine",
        &(machine.name.as_str(),),
    ) {
        Ok(reply) => reply.body().deserialize()?,
        Err(e) if gone(&e) => return Ok(Termination::Gone(e.to_string())),
        Err(e) => return Err(e),
    };
    let props: std::collections::HashMap<String, OwnedValue> = conn
        .call_method(
            Some(DEST),
            &path,
            Some("org.freedesktop.DBus.Properties"),
            "GetAll",
            &(MACHINE,),
        )?
        .body()
        .deserialize()?;
    let id: Option<Vec<u8>> = props
        .get("Id")
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| Vec::<u8>::try_from(v).ok());
    let root: Option<String> = props
        .get("RootDirectory")
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| String::try_from(v).ok());
    if id.as_deref() != Some(&machine.id_bytes()[..])
        || root.as_deref() != Some(machine.root_directory.to_str().unwrap_or(""))
    {
        return Ok(Termination::Foreign);
    }
    match conn.call_method(
        Some(DEST),
        PATH,
        Some(MANAGER),
        "TerminateMachine",
        &(machine.name.as_str(),),
    ) {
        Ok(_) => Ok(Termination::Terminated),
        Err(e) if gone(&e) => Ok(Termination::Gone(e.to_string())),
        Err(e) => Err(e),
    }
}
