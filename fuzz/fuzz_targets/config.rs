//! config.json parsing and flattening, then the decision, on arbitrary
//! bytes: never panics; a chosen machine-id is always valid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oci_systemd_hook::decide::{Decision, decide};
use oci_systemd_hook::machine_id::MachineId;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = oci_systemd_hook::config::parse(data, std::path::Path::new("/bundle")) else { return };
    assert!(config.rootfs.is_absolute());
    for d in &config.mount_destinations {
        assert!(d.is_absolute());
        assert!(!d.components().any(|c| matches!(c, std::path::Component::ParentDir)));
    }
    if let Decision::Apply(m) = decide(&config, "4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b") {
        assert!(MachineId::parse(m.as_str()).is_some());
    }
});
