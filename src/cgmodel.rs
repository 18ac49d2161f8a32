//! Which cgroup tree the container sees, per container: from the host's
//! layout and the image's systemd version, as systemd-nspawn chose
//! (`nspawn-cgroup.c` / `detect_unified_cgroup_hierarchy_from_image`, which
//! reads the version from `libsystemd-shared-<N>.so` in the image; see
//! [`crate::image`]). Pure: [`choose`] is a table of rules, unit-tested as
//! one.
//!
//! The rules (host layout × image systemd → model):
//!
//! | host | image systemd | model |
//! |---|---|---|
//! | unified | any, or none found | [`Model::HostCgroup2`] (unchanged) |
//! | hybrid | none found, or ≥ 256 | [`Model::HostCgroup2`] |
//! | hybrid | 230–255 | [`Model::V1`] (both views boot; v1 is what these images were proven with) |
//! | hybrid | < 230 | [`Model::V1`] (no unified support) |
//! | legacy | none found, or ≥ 258 | [`Model::PrivateCgroup2`] |
//! | legacy | < 258 | [`Model::V1`] |
//!
//! systemd ≥ 258 has no cgroup v1 support at all and decides from
//! `statfs("/sys/fs/cgroup")` alone: a tmpfs there makes it refuse to boot
//! ("Detected unsupported legacy cgroup hierarchy"). systemd 256 and 257
//! declare v1 obsolete (NEWS for 256: refused by default on a host) and, on
//! a v1 view, boot but taint themselves (`Tainted=cgroupsv1`, measured with
//! Debian trixie's 257 on a hybrid host); on the cgroup2 view they boot
//! untainted, so a hybrid host gives them that. 230–255 boot to `running`
//! on either view (bullseye 247, bookworm 252 under podman+crun,
//! podman+runc and bare runc) and keep the v1 view they were proven with.
//! systemd learnt the unified hierarchy in 230 (nspawn's minimum).
//! The cgroup namespace does not change the model, only where the own
//! cgroup is bound (see `plan`).

use std::fmt;

use crate::cgroup::Layout;

/// The first systemd without cgroup v1 support (v258, "cgroup v1 support has
/// been removed").
pub const SYSTEMD_V2_ONLY: u32 = 258;
/// The first systemd that declares cgroup v1 obsolete (v256) and taints
/// itself `cgroupsv1` on it.
pub const SYSTEMD_V1_OBSOLETE: u32 = 256;
/// The first systemd that runs on the unified hierarchy (v230; nspawn's
/// `cg_all_unified` minimum for images).
pub const SYSTEMD_UNIFIED_MIN: u32 = 230;

/// What the container gets at `/sys/fs/cgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// cgroup v1: a read-only tmpfs on `/sys/fs/cgroup` with the
    /// `name=systemd` hierarchy at `/sys/fs/cgroup/systemd`, the container's
    /// own cgroup writable (hybrid and legacy hosts, systemd < 258).
    V1,
    /// The host's cgroup2 hierarchy (`/sys/fs/cgroup` on unified hosts,
    /// `/sys/fs/cgroup/unified` on hybrid ones) at `/sys/fs/cgroup`: read-only
    /// with the container's own cgroup (`0::` of `/proc/<pid>/cgroup`)
    /// writable at its path; with a private cgroupns the own cgroup at
    /// `/sys/fs/cgroup`.
    HostCgroup2,
    /// A legacy host has no cgroup2 mounted: the hook mounts one privately
    /// in the container's mount namespace, makes a cgroup2 directory for the
    /// container and moves its processes there (nspawn ≤ 257's
    /// `sync_cgroup`), and removes the directory at poststop.
    PrivateCgroup2,
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::V1 => "v1 (name=systemd)",
            Model::HostCgroup2 => "cgroup2 (the host's)",
            Model::PrivateCgroup2 => "cgroup2 (mounted by the hook)",
        })
    }
}

/// Why [`choose`] chose a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The host is unified: cgroup2 is all there is.
    UnifiedHost,
    /// No `libsystemd-shared-<N>.so` in the image: taken as a current
    /// systemd (nspawn's rule).
    NoSystemdFound,
    /// The image's systemd (the version) has no cgroup v1 support.
    V2Only(u32),
    /// The image's systemd (the version) declares cgroup v1 obsolete: on a
    /// hybrid host it gets the cgroup2 view.
    V1Obsolete(u32),
    /// The image's systemd (the version) runs on v1 and is kept there.
    V1Systemd(u32),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::UnifiedHost => f.write_str("the host is unified (cgroup2 only)"),
            Reason::NoSystemdFound => {
                f.write_str("no libsystemd-shared-<N>.so in the image, taken as a current systemd")
            }
            Reason::V2Only(v) => write!(
                f,
                "the image's systemd {v} has no cgroup v1 support (>= {SYSTEMD_V2_ONLY})"
            ),
            Reason::V1Obsolete(v) => write!(
                f,
                "the image's systemd {v} deems cgroup v1 obsolete (>= {SYSTEMD_V1_OBSOLETE}, tainted on v1)"
            ),
            Reason::V1Systemd(v) if *v < SYSTEMD_UNIFIED_MIN => write!(
                f,
                "the image's systemd {v} has no unified-hierarchy support (< {SYSTEMD_UNIFIED_MIN})"
            ),
            Reason::V1Systemd(v) => write!(
                f,
                "the image's systemd {v} supports cgroup v1 (< {SYSTEMD_V2_ONLY}): the v1 view"
            ),
        }
    }
}

/// A chosen model and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// What the container sees at `/sys/fs/cgroup`.
    pub model: Model,
    /// Why.
    pub reason: Reason,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.model, self.reason)
    }
}

/// Chooses the model for a container on a host of `layout` whose image has
/// systemd `image_systemd` (`None`: none found). See the module docs for the
/// table.
pub fn choose(layout: Layout, image_systemd: Option<u32>) -> Choice {
    let (model, reason) = match (layout, image_systemd) {
        (Layout::Unified, _) => (Model::HostCgroup2, Reason::UnifiedHost),
        (Layout::Hybrid, None) => (Model::HostCgroup2, Reason::NoSystemdFound),
        (Layout::Legacy, None) => (Model::PrivateCgroup2, Reason::NoSystemdFound),
        (Layout::Hybrid, Some(v)) if v >= SYSTEMD_V2_ONLY => {
            (Model::HostCgroup2, Reason::V2Only(v))
        }
        (Layout::Hybrid, Some(v)) if v >= SYSTEMD_V1_OBSOLETE => {
            (Model::HostCgroup2, Reason::V1Obsolete(v))
        }
        (Layout::Legacy, Some(v)) if v >= SYSTEMD_V2_ONLY => {
            (Model::PrivateCgroup2, Reason::V2Only(v))
        }
        (Layout::Hybrid | Layout::Legacy, Some(v)) => (Model::V1, Reason::V1Systemd(v)),
    };
    Choice { model, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Layout::*;
    use Model::*;

    #[test]
    fn the_rule_table() {
        // host layout, image systemd, model
        let table: &[(Layout, Option<u32>, Model)] = &[
            (Unified, None, HostCgroup2),
            (Unified, Some(219), HostCgroup2),
            (Unified, Some(247), HostCgroup2),
            (Unified, Some(262), HostCgroup2),
            (Hybrid, None, HostCgroup2),
            (Hybrid, Some(219), V1),
            (Hybrid, Some(229), V1),
            (Hybrid, Some(230), V1),
            (Hybrid, Some(247), V1),
            (Hybrid, Some(252), V1),
            (Hybrid, Some(255), V1),
            (Hybrid, Some(256), HostCgroup2),
            (Hybrid, Some(257), HostCgroup2),
            (Hybrid, Some(258), HostCgroup2),
            (Hybrid, Some(262), HostCgroup2),
            (Legacy, None, PrivateCgroup2),
            (Legacy, Some(219), V1),
            (Legacy, Some(252), V1),
            (Legacy, Some(256), V1),
            (Legacy, Some(257), V1),
            (Legacy, Some(258), PrivateCgroup2),
            (Legacy, Some(262), PrivateCgroup2),
        ];
        for &(layout, systemd, want) in table {
            assert_eq!(
                choose(layout, systemd).model,
                want,
                "{layout} host, image systemd {systemd:?}"
            );
        }
    }

    #[test]
    fn reasons_name_the_version_and_the_rule() {
        assert_eq!(
            choose(Hybrid, Some(262)).to_string(),
            "cgroup2 (the host's): the image's systemd 262 has no cgroup v1 support (>= 258)"
        );
        assert_eq!(
            choose(Legacy, Some(252)).to_string(),
            "v1 (name=systemd): the image's systemd 252 supports cgroup v1 (< 258): the v1 view"
        );
        assert!(
            choose(Hybrid, Some(219))
                .to_string()
                .contains("no unified-hierarchy support")
        );
        assert_eq!(choose(Unified, Some(252)).reason, Reason::UnifiedHost);
        assert_eq!(choose(Hybrid, Some(257)).reason, Reason::V1Obsolete(257));
        assert!(
            choose(Legacy, None)
                .to_string()
                .starts_with("cgroup2 (mounted by the hook): no libsystemd-shared")
        );
    }
}
