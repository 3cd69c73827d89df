//! Identifiers the server makes up: UUIDs and SSH key fingerprints.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A random (version 4) UUID, the form the API uses for every id.
pub fn uuid() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A fingerprint in the API's colon-separated form. It is derived from the key text, which
/// is enough to tell keys apart; it is not the MD5 of the decoded key that the API computed.
pub fn fingerprint(key: &str) -> String {
    let digest = Sha256::digest(key.trim().as_bytes());
    digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_the_v4_shape_and_differ() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert_ne!(id, uuid());
    }

    #[test]
    fn fingerprints_are_stable_and_colon_separated() {
        assert_eq!(
            fingerprint("ssh-ed25519 AAAA"),
            fingerprint("ssh-ed25519 AAAA\n")
        );
        assert_eq!(fingerprint("k").split(':').count(), 16);
    }
}
