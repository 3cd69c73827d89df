//! Who gets into a lab's VMs: only the run. Each lane makes an SSH key of its own on its host;
//! a box booted straight from its kernel (metalab's own) takes the key's public half on its
//! kernel command line, lets in nothing else (no shared insecure key, no password), and writes
//! its host key to its serial console, which libvirt writes to a file the run reads: so the host
//! key is known before the first connection, rather than trusted from whoever answers first on
//! the shared management network. (Wiring in the Vagrantfile wrapper; the box's side is in
//! boxes/debian12/build.sh.)
//!
//! Other boxes keep Vagrant's own handling (`insert_key`: a fresh key per machine after the first
//! login) and their host key is pinned on first contact.

use std::time::Duration;

use crate::transport::{Command, Transport, sh_quote};

/// What a VM's console says before its host key, on a line of its own.
const ANNOUNCEMENT: &str = "metalab-host-key: ";

/// A lane's login key, made on its host.
pub struct LoginKey {
    /// The private key's path on the host, for Vagrant and for metalab's sessions.
    pub path: String,
    /// The public key's base64 blob (ed25519), as the kernel command line carries it.
    pub public_blob: String,
}

/// Makes a fresh ed25519 key at `path` on `host` (replacing any), and the console directory.
pub async fn make_login_key(
    host: &dyn Transport,
    path: &str,
    consoles: &str,
) -> anyhow::Result<LoginKey> {
    let key = sh_quote(path);
    let script = format!(
        "mkdir -p \"$(dirname {key})\" {consoles} && rm -f {key} {key}.pub && \
         ssh-keygen -q -t ed25519 -N '' -C metalab-run -f {key} && cut -d' ' -f2 {key}.pub",
        consoles = sh_quote(consoles)
    );
    let out =
        crate::transport::stdout_of(host, &Command::new(script, Duration::from_secs(60))).await?;
    let public_blob = out.trim().to_string();
    anyhow::ensure!(
        !public_blob.is_empty() && !public_blob.contains(char::is_whitespace),
        "ssh-keygen made no public key at {path}.pub"
    );
    Ok(LoginKey {
        path: path.to_string(),
        public_blob,
    })
}

/// The host key a VM announced on its serial console (`console`, a file on `host`), as an
/// OpenSSH public key line; `None` when it announced none (a box that does not). Only the
/// console's last 4 MiB are read: the announcement comes at boot, before any suite could write
/// there.
pub async fn announced_host_key(host: &dyn Transport, console: &str) -> Option<String> {
    let cmd = Command::new(
        format!("tail -c 4194304 {} 2>/dev/null || true", sh_quote(console)),
        Duration::from_secs(30),
    )
    .sudo(true);
    let text = crate::transport::stdout_of(host, &cmd).await.ok()?;
    announcement(&text)
}

/// The last announcement in a console's text: the one of the VM's latest boot.
fn announcement(console: &str) -> Option<String> {
    console
        .lines()
        .rev()
        .filter_map(|l| l.trim_end_matches('\r').split_once(ANNOUNCEMENT))
        .map(|(_, key)| key.trim().to_string())
        .find(|key| {
            let mut parts = key.split(' ');
            matches!(
                (parts.next(), parts.next(), parts.next()),
                (Some("ssh-ed25519"), Some(blob), None) if !blob.is_empty()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_well_formed_announcement_is_the_host_key() {
        let console = "[    0.000000] Linux version 6.1\r\n\
                       metalab-host-key: ssh-ed25519 AAAAold\r\n\
                       Debian GNU/Linux 12 node1 ttyS0\r\n\
                       metalab-host-key: ssh-ed25519 AAAAnew\r\n\
                       metalab-host-key: ssh-rsa AAAAwrongtype\r\n\
                       metalab-host-key: ssh-ed25519 AAAA extra words\r\n";
        assert_eq!(
            announcement(console).as_deref(),
            Some("ssh-ed25519 AAAAnew")
        );
        assert_eq!(announcement("no such line\n"), None);
    }

    #[tokio::test]
    async fn a_login_key_is_made_on_the_host_and_its_public_half_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lane/vm_key").display().to_string();
        let consoles = dir.path().join("lane/console").display().to_string();
        let host = crate::transport::local::Local;
        let key = make_login_key(&host, &path, &consoles).await.unwrap();
        let public = std::fs::read_to_string(format!("{path}.pub")).unwrap();
        assert!(public.starts_with(&format!("ssh-ed25519 {} ", key.public_blob)));
        assert!(std::path::Path::new(&consoles).is_dir());
        let again = make_login_key(&host, &path, &consoles).await.unwrap();
        assert_ne!(again.public_blob, key.public_blob, "a fresh key each time");
        std::fs::write(
            dir.path().join("lane/console/d.log"),
            "metalab-host-key: ssh-ed25519 AAAAx\n",
        )
        .unwrap();
        let console = dir.path().join("lane/console/d.log").display().to_string();
        assert_eq!(
            announced_host_key(&host, &console).await.as_deref(),
            Some("ssh-ed25519 AAAAx")
        );
        assert_eq!(announced_host_key(&host, "/nonexistent").await, None);
    }
}
