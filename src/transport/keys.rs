//! SSH key pairs metalab makes itself: a run's login key for the hosts it creates, and the host
//! key it gives a new instance (so that it knows the key before it first connects).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{LineEnding, PrivateKey};

/// A new ed25519 key pair.
pub struct KeyPair {
    /// OpenSSH private key text.
    pub private: String,
    /// `ssh-ed25519 AAAA... COMMENT`, or without the comment when it is empty.
    pub public: String,
}

impl KeyPair {
    /// A new ed25519 key pair carrying `comment`, from the operating system's randomness.
    pub fn ed25519(comment: &str) -> anyhow::Result<KeyPair> {
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&rand::random()));
        key.set_comment(comment);
        let private = key
            .to_openssh(LineEnding::LF)
            .context("cannot encode a new SSH key")?
            .to_string();
        let public = key
            .public_key()
            .to_openssh()
            .context("cannot encode a new SSH key")?;
        Ok(KeyPair { private, public })
    }

    /// Writes the private half to `path`, readable by its owner alone from the start (the
    /// directory is made if need be), replacing what was there.
    pub fn write_private(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot write the key {}", path.display()))?;
        file.write_all(self.private.as_bytes())
            .with_context(|| format!("cannot write the key {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_key_is_one_openssh_reads_and_only_its_owner_can_read_its_file() {
        let pair = KeyPair::ed25519("metalab-test").unwrap();
        assert!(pair.public.starts_with("ssh-ed25519 AAAA"));
        assert!(pair.public.ends_with(" metalab-test"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/id_ed25519");
        pair.write_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // OpenSSH itself derives the same public key from the file.
        let derived = crate::child_env::command("ssh-keygen")
            .args(["-y", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(derived.status.success());
        let derived = String::from_utf8(derived.stdout).unwrap();
        assert_eq!(derived.trim(), pair.public);
        assert_ne!(KeyPair::ed25519("").unwrap().private, pair.private);
    }

    #[test]
    fn a_key_without_a_comment_is_its_type_and_base64_alone() {
        let pair = KeyPair::ed25519("").unwrap();
        assert_eq!(pair.public.split(' ').count(), 2, "{}", pair.public);
    }
}
