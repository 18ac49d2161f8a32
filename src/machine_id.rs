//! The container's machine-id.
//!
//! Format from systemd's `machine-id(5)`: 32 lowercase hexadecimal
//! characters, not all zero. Source of the value, as the original
//! oci-systemd-hook did it:
//! 1. `container_uuid` in `process.env` (systemd's CONTAINER_INTERFACE.md),
//!    dashes removed, lower-cased;
//! 2. else the first 32 characters of the container id when they are hex
//!    (podman and CRI-O ids are 64 hex characters).
//!
//! When the chosen source is not valid hex (bare runc ids such as `web1`, a
//! free-form `container_uuid`), a valid id is derived deterministically: the
//! first 16 bytes of SHA-256 over a fixed prefix and the source, with the
//! UUID version-4 and variant bits set as `machine-id(5)` recommends.

use sha2::{Digest, Sha256};

/// A valid machine-id: 32 lowercase hex characters, not all zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineId(String);

impl MachineId {
    /// The 32 characters, without newline.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts `s` when it is already a valid machine-id after lower-casing.
    pub fn parse(s: &str) -> Option<MachineId> {
        let ok = s.len() == 32
            && s.bytes().all(|b| b.is_ascii_hexdigit())
            && s.bytes().any(|b| b != b'0');
        ok.then(|| MachineId(s.to_ascii_lowercase()))
    }

    /// The machine-id for a container (see the module docs for the rules).
    pub fn for_container(container_uuid: Option<&str>, id: &str) -> MachineId {
        match container_uuid.filter(|u| !u.is_empty()) {
            Some(uuid) => {
                let plain: String = uuid.chars().filter(|c| *c != '-').collect();
                MachineId::parse(&plain).unwrap_or_else(|| derive(uuid))
            }
            None => id
                .get(..32)
                .and_then(MachineId::parse)
                .unwrap_or_else(|| derive(id)),
        }
    }
}

impl std::fmt::Display for MachineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn derive(source: &str) -> MachineId {
    let mut h = Sha256::new();
    h.update(b"oci-systemd-hook machine-id\0");
    h.update(source.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    MachineId(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_id_gives_its_first_32_hex() {
        let id = "4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";
        assert_eq!(
            MachineId::for_container(None, id).as_str(),
            "4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f"
        );
    }

    #[test]
    fn container_uuid_wins_and_loses_dashes() {
        let m = MachineId::for_container(Some("0AF5A1C2-5D3B-4F6E-9A7B-1C2D3E4F5A6B"), "ffff");
        assert_eq!(m.as_str(), "0af5a1c25d3b4f6e9a7b1c2d3e4f5a6b");
    }

    #[test]
    fn non_hex_ids_derive_a_valid_stable_id() {
        let a = MachineId::for_container(None, "runc1");
        let b = MachineId::for_container(None, "runc1");
        let c = MachineId::for_container(None, "web1");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(MachineId::parse(a.as_str()).is_some());
        assert_eq!(&a.as_str()[12..13], "4");
        // A free-form container_uuid is derived from, not the id.
        let u = MachineId::for_container(Some("not-a-uuid"), "runc1");
        assert_ne!(u, a);
        assert!(MachineId::parse(u.as_str()).is_some());
    }

    #[test]
    fn path_characters_and_all_zero_never_pass_through() {
        for id in [
            "../../etc/passwd/../../../../../../../../..",
            "0000000000000000000000000000000000",
            "/",
        ] {
            let m = MachineId::for_container(None, id);
            assert!(
                m.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert_ne!(m.as_str(), "00000000000000000000000000000000");
        }
        // Multi-byte characters at the cut must not panic.
        let _ = MachineId::for_container(None, "ééééééééééééééééééééééééééééééééé");
    }

    #[test]
    fn parse_rules() {
        assert!(MachineId::parse("0123456789abcdefABCDEF0123456789").is_some());
        assert!(MachineId::parse("0123456789abcdef").is_none());
        assert!(MachineId::parse("0123456789abcdef0123456789abcdeg").is_none());
    }
}
