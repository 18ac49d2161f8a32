//! The OCI state parser on arbitrary stdin bytes: never panics; what it
//! accepts has a non-empty id and an absolute bundle.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = oci_systemd_hook::state::read(data) {
        assert!(!s.id.is_empty());
        assert!(s.bundle.is_absolute());
        assert!(s.pid.is_none_or(|p| p > 0));
        let _ = s.short_id();
    }
});
