//! The poststop side on the rootfs as the host sees it (`root.path`, the
//! container's mount namespace is gone): undo what prestart wrote into the
//! image.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use pathrs::Root;
use rustix::fs::OFlags;

use super::guard::{self, HostIds};
use super::{file_facts, is_enoent, regular_file};
use crate::plan::RootfsStep;
use crate::reopen::reopen;

/// Runs a poststop step on the rootfs `root` (as the host sees it; its
/// mount id is `root_mnt`).
pub(super) fn run(
    step: &RootfsStep,
    root: &Root,
    root_mnt: u64,
    host: &HostIds,
) -> anyhow::Result<()> {
    match step {
        RootfsStep::ClearFile { dest, expected } => {
            clear_file(root, root_mnt, dest, expected, host)
        }
    }
}

/// Empties the machine-id file `dest` in the rootfs if it holds `expected`;
/// leaves alone (with a warning) a file that is not the image's own (see
/// [`guard::foreign_machine_id`]).
fn clear_file(
    root: &Root,
    root_mnt: u64,
    dest: &Path,
    expected: &str,
    host: &HostIds,
) -> anyhow::Result<()> {
    let handle = match root.resolve(dest) {
        Ok(h) => h,
        Err(e) if is_enoent(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    regular_file(&handle)?;
    if let Some(why) =
        guard::foreign_machine_id(&file_facts(handle.as_fd())?, &[root_mnt], host.machine_id)
    {
        log::warn!("{} {why}; left alone", dest.display());
        return Ok(());
    }
    let mut contents = String::new();
    reopen(&handle, OFlags::RDONLY)?
        .take(128)
        .read_to_string(&mut contents)?;
    if contents.trim() == expected {
        reopen(&handle, OFlags::WRONLY | OFlags::TRUNC)?;
        log::debug!("emptied {}", dest.display());
    } else if !contents.trim().is_empty() {
        log::info!("{} holds another id; left alone", dest.display());
    }
    Ok(())
}
