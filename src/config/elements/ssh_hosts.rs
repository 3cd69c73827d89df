//! `[[provider.hosts]]`: the machines of the `ssh` provider's inventory.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;

use super::provider::{ProviderKind, RawProvider};
use crate::config::located::{LocatedError, SourceFile};

/// One machine of an SSH inventory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshHostConfig {
    /// For messages and reports; default: the address.
    pub name: Option<String>,
    /// The host name or IP address to connect to.
    pub address: String,
    /// The SSH port. Default 22.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// The user to log in as. Default `root`.
    #[serde(default = "default_ssh_user")]
    pub user: String,
    /// The private key to log in with (relative to the lab root, or `~/`).
    pub identity: PathBuf,
    /// The OpenSSH known_hosts file the host's key must be in. Default `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Add a host that is not in `known_hosts` yet on first contact (never a changed key).
    #[serde(default)]
    pub trust_first_use: bool,
    /// metalab's state directory on the host. Default `/var/lib/metalab`.
    #[serde(default = "default_remote_home")]
    pub home: String,
}

impl SshHostConfig {
    /// The name for messages and reports: `name`, or else the address.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.address.clone())
    }
}

/// The default SSH port, here and for metal devices: 22.
pub(super) fn default_ssh_port() -> u16 {
    22
}

/// The default login, here and for metal devices: `root`.
pub(super) fn default_ssh_user() -> String {
    "root".into()
}

/// metalab's default state directory on a remote machine, here and for metal devices.
pub(super) fn default_remote_home() -> String {
    crate::state::DEFAULT_HOME.into()
}

/// The `ssh` provider needs an inventory; paths in it are resolved like every other path.
pub(in crate::config) fn ssh_hosts(
    file: &SourceFile,
    root: &Path,
    p: &RawProvider,
) -> Result<Vec<SshHostConfig>, LocatedError> {
    if *p.kind.get_ref() == ProviderKind::Ssh && p.hosts.is_empty() {
        return Err(file
            .error_at(p.kind.span(), "the ssh provider needs at least one host")
            .with_key("provider.kind")
            .with_hint("add [[provider.hosts]] with address, user and identity"));
    }
    let hosts: Vec<SshHostConfig> = p
        .hosts
        .iter()
        .map(|h| SshHostConfig {
            identity: expand(root, &h.identity),
            known_hosts: h.known_hosts.as_ref().map(|k| expand(root, k)),
            ..h.clone()
        })
        .collect();
    if *p.kind.get_ref() == ProviderKind::Ssh {
        missing_identity(file, root, &hosts)?;
    }
    Ok(hosts)
}

/// A host's identity must be a file before anything starts: located at its `identity`.
fn missing_identity(
    file: &SourceFile,
    root: &Path,
    hosts: &[SshHostConfig],
) -> Result<(), LocatedError> {
    let Some(host) = hosts.iter().position(|h| !h.identity.is_file()) else {
        return Ok(());
    };
    // Read again from the text, for the places of the values.
    #[derive(Deserialize)]
    struct Outer {
        provider: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        hosts: Vec<Identity>,
    }
    #[derive(Deserialize)]
    struct Identity {
        identity: Spanned<PathBuf>,
    }
    let outer: Outer = toml::from_str(&file.text).map_err(|e| file.toml_error(&e))?;
    let path = &hosts[host].identity;
    let what = if path.exists() {
        "is not a file"
    } else {
        "does not exist"
    };
    Err(file
        .error_at(
            outer.provider.hosts[host].identity.span(),
            format!(
                "identity {} of host {} {what}",
                path.display(),
                hosts[host].display_name()
            ),
        )
        .with_key("provider.hosts.identity")
        .with_hint(format!(
            "set `identity` to the private key's path, relative to {} or starting with ~/",
            root.display()
        )))
}

/// `~/x` → the home directory; relative → under the lab root.
fn expand(root: &Path, p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        Err(_) => root.join(p),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::testing::{lab, load, loaded, located, rejected};

    use super::*;

    const ONE_HOST: &str =
        "[provider]\nkind = \"ssh\"\n[[provider.hosts]]\naddress = \"10.0.0.5\"\n";

    /// `toml` in a scratch lab that holds the key `keys/id`.
    fn with_key(toml: &str) -> Config {
        let dir = lab(toml);
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/id"), "").unwrap();
        load(&dir).unwrap_or_else(|e| panic!("refused:\n{e}"))
    }

    #[test]
    fn a_host_has_defaults_but_its_address_and_identity() {
        let c = with_key(&format!("{ONE_HOST}identity = \"keys/id\"\n"));
        let [h] = c.ssh_hosts.as_slice() else {
            panic!("{:?}", c.ssh_hosts)
        };
        assert_eq!(h.display_name(), "10.0.0.5");
        assert_eq!((h.port, h.user.as_str()), (22, "root"));
        assert_eq!(h.home, "/var/lib/metalab");
        assert_eq!(h.known_hosts, None);
        assert!(!h.trust_first_use);
    }

    #[test]
    fn relative_paths_are_under_the_lab_root() {
        let c = with_key(&format!(
            "{ONE_HOST}identity = \"keys/id\"\nknown_hosts = \"keys/known\"\n"
        ));
        assert_eq!(c.ssh_hosts[0].identity, c.root.join("keys/id"));
        assert_eq!(c.ssh_hosts[0].known_hosts, Some(c.root.join("keys/known")));
    }

    #[test]
    fn a_tilde_is_the_home_directory() {
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
        let key = tempfile::NamedTempFile::new_in(&home).unwrap();
        let name = key.path().file_name().unwrap().to_str().unwrap();
        let c = loaded(&format!("{ONE_HOST}identity = \"~/{name}\"\n"));
        assert_eq!(c.ssh_hosts[0].identity, home.join(name));
    }

    #[test]
    fn a_missing_identity_is_located_at_its_value() {
        let e = rejected(&format!(
            "{ONE_HOST}identity = \"keys/id\"\n[[provider.hosts]]\naddress = \"b\"\nidentity = \"keys/nope\"\n"
        ));
        assert_eq!((e.line, e.column), (5, 12));
        assert_eq!(e.key.as_deref(), Some("provider.hosts.identity"));
        assert!(
            e.message.starts_with("identity /")
                && e.message
                    .ends_with("keys/id of host 10.0.0.5 does not exist"),
            "{}",
            e.message
        );
        assert!(e.hint.unwrap().contains("or starting with ~/"));
    }

    #[test]
    fn a_missing_identity_of_a_later_host_is_located_there() {
        let dir = lab(&format!(
            "{ONE_HOST}identity = \"keys/id\"\n[[provider.hosts]]\naddress = \"b\"\nidentity = \"keys/nope\"\n"
        ));
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/id"), "").unwrap();
        let e = located(load(&dir));
        assert_eq!((e.line, e.column), (8, 12));
        assert!(
            e.message.ends_with("keys/nope of host b does not exist"),
            "{}",
            e.message
        );
    }

    #[test]
    fn identities_are_not_needed_by_another_provider() {
        loaded(
            "[provider]\nkind = \"local\"\n[[provider.hosts]]\naddress = \"h\"\nidentity = \"keys/nope\"\n",
        );
    }

    #[test]
    fn the_ssh_provider_without_hosts_is_located_at_its_kind() {
        let e = rejected("[provider]\nkind = \"ssh\"\n");
        assert_eq!((e.line, e.column), (2, 8));
        assert_eq!(e.key.as_deref(), Some("provider.kind"));
        assert_eq!(e.message, "the ssh provider needs at least one host");
        assert_eq!(
            e.hint.as_deref(),
            Some("add [[provider.hosts]] with address, user and identity")
        );
    }

    #[test]
    fn a_host_needs_an_identity() {
        let e = rejected(ONE_HOST);
        assert_eq!((e.line, e.column), (3, 1));
        assert_eq!(e.key.as_deref(), Some("provider.hosts.identity"));
        assert_eq!(
            e.message,
            "missing required key `identity` in [[provider.hosts]]"
        );
    }

    #[test]
    fn a_host_needs_an_address() {
        let e = rejected("[provider]\nkind = \"ssh\"\n[[provider.hosts]]\nidentity = \"k\"\n");
        assert_eq!((e.line, e.column), (3, 1));
        assert_eq!(e.key.as_deref(), Some("provider.hosts.address"));
        assert_eq!(
            e.message,
            "missing required key `address` in [[provider.hosts]]"
        );
    }
}
