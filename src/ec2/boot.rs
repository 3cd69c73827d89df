//! What an instance is told at its first boot, as cloud-init user data: the host key it must
//! present (so metalab knows it before the first connection, rather than trusting whatever
//! answers), root's login with the run's key, and the time it powers itself off. With
//! `InstanceInitiatedShutdownBehavior=terminate`, powering off terminates the instance: the
//! expiry holds even if metalab and the machine it ran on are gone.

use chrono::{DateTime, Utc};

/// A host key pair generated for one instance.
pub struct HostKey {
    /// OpenSSH private key text; it goes into the user data only.
    pub private: String,
    /// `ssh-ed25519 AAAA...`, without a comment: what the pin file holds.
    pub public: String,
}

impl HostKey {
    /// A new ed25519 host key pair, made in memory: it never touches this machine's disk.
    pub fn generate() -> anyhow::Result<HostKey> {
        let pair = crate::transport::keys::KeyPair::ed25519("")?;
        Ok(HostKey {
            private: pair.private,
            public: pair.public,
        })
    }
}

/// The `#cloud-config` user data of an instance of `run` that expires at `expires`.
pub fn user_data(run: &str, host_key: &HostKey, expires: DateTime<Utc>) -> String {
    let private: String = host_key
        .private
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let epoch = expires.timestamp();
    format!(
        "#cloud-config\n\
         # metalab run {run}: this host powers itself off, and so terminates, at {expires}.\n\
         disable_root: false\n\
         ssh_pwauth: false\n\
         ssh_deletekeys: true\n\
         ssh_genkeytypes: []\n\
         ssh_keys:\n  ed25519_private: |\n{private}  ed25519_public: {public}\n\
         bootcmd:\n  - [sh, -c, '{expiry}']\n",
        expires = expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        public = host_key.public,
        expiry = expiry_command(epoch),
    )
}

/// Run at every boot: power off now if the expiry has passed, else at it (a timer of systemd's,
/// which outlives cloud-init; `shutdown` where there is no systemd).
fn expiry_command(epoch: i64) -> String {
    format!(
        "left=$(({epoch} - $(date +%s))); \
         if [ \"$left\" -le 0 ]; then poweroff; \
         elif command -v systemd-run >/dev/null; then systemd-run --unit=metalab-expiry --on-active=\"$left\" systemctl poweroff; \
         else shutdown -P \"+$(( (left + 59) / 60 ))\"; fi"
    )
}

/// The expiry time a user data script holds, if it is metalab's: what a test, or a person
/// reading an instance's user data, checks.
pub fn expiry_of(user_data: &str) -> Option<i64> {
    let start = user_data.find("left=$((")? + "left=$((".len();
    let end = user_data[start..].find(' ')? + start;
    user_data[start..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_data_carries_the_host_key_and_the_expiry() {
        let key = HostKey::generate().unwrap();
        let expires = DateTime::parse_from_rfc3339("2026-11-26T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let data = user_data("20261126-150000-abcd", &key, expires);
        assert!(data.starts_with("#cloud-config\n"));
        assert!(data.contains(&format!("ed25519_public: {}\n", key.public)));
        assert!(data.contains("    -----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert_eq!(expiry_of(&data), Some(expires.timestamp()));
        assert!(key.public.starts_with("ssh-ed25519 ") && !key.public.contains('\n'));
    }

    /// The expiry script, run by a real shell with `poweroff` and `systemd-run` replaced by
    /// stubs that say what they were asked.
    #[test]
    fn the_expiry_script_powers_off_at_once_when_late_and_else_sets_a_timer() {
        let dir = tempfile::tempdir().unwrap();
        for stub in ["poweroff", "systemd-run"] {
            let path = dir.path().join(stub);
            std::fs::write(&path, format!("#!/bin/sh\necho {stub} \"$@\"\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let run = |epoch: i64| {
            let out = crate::child_env::command("sh")
                .args(["-c", &expiry_command(epoch)])
                .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let now = Utc::now().timestamp();
        assert_eq!(run(now - 10), "poweroff\n");
        let timer = run(now + 3600);
        assert!(
            timer.starts_with("systemd-run --unit=metalab-expiry --on-active=3"),
            "{timer}"
        );
        assert!(timer.ends_with(" systemctl poweroff\n"), "{timer}");
    }
}
