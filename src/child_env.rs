//! The environment of every process metalab starts: never one of metalab's secrets.
//!
//! A lab's Vagrantfile is Ruby that Vagrant runs with the environment it inherits, and so are
//! its provisioners, `scripts/setup-host` and the commands suites run on the host: whatever
//! metalab holds in its environment (the Metal API token, a CI job's credentials) they could
//! read. So every child is started from [`command`] (or [`async_command`]), which clears the
//! environment and passes on only what the chosen [`Policy`] keeps. Clippy refuses
//! `Command::new` anywhere else in the library (`clippy.toml`), so a new spawn cannot forget it.
//!
//! Variables metalab sets for a child itself (`.env(...)` after this) are not filtered: they
//! are what that child is given on purpose.

use std::ffi::{OsStr, OsString};
use std::sync::OnceLock;

/// Which of metalab's own variables a child inherits. A variable named like a secret
/// ([`is_secret`]) never reaches a child, whichever policy is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Everything but secrets: a trusted team's own variables (`ACME_MEMORY`, say) still reach
    /// its Vagrantfile. The default.
    Scrubbed,
    /// Only what a process needs to run (`PATH`, `HOME`, the locale...) and metalab's own
    /// variables: for a lab that is not trusted.
    AllowListed,
}

static CHOSEN: OnceLock<Policy> = OnceLock::new();

/// Chooses the policy for the whole process: once, at startup, before any child is started.
/// Refused (giving back the policy in force) once it has been chosen or a child started under
/// the default: a run whose children got different environments could not be reasoned about.
pub fn choose(policy: Policy) -> Result<(), Policy> {
    CHOSEN.set(policy).map_err(|_| chosen())
}

/// The policy in force: the one chosen, else [`Policy::Scrubbed`] from now on.
pub fn chosen() -> Policy {
    *CHOSEN.get_or_init(|| Policy::Scrubbed)
}

/// A command for `program` whose environment is metalab's, as the chosen policy keeps it.
pub fn command(program: impl AsRef<OsStr>) -> std::process::Command {
    command_with(program, chosen(), std::env::vars_os())
}

/// [`command`], for tokio.
pub fn async_command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    command(program).into()
}

#[allow(clippy::disallowed_methods)] // the one place a process is made
fn command_with(
    program: impl AsRef<OsStr>,
    policy: Policy,
    inherited: impl Iterator<Item = (OsString, OsString)>,
) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command
        .env_clear()
        .envs(inherited.filter(|(name, _)| policy.keeps(name)));
    command
}

impl Policy {
    /// Whether a child inherits the variable `name`. A name that is not UTF-8 cannot be judged
    /// by it, and no tool needs one: it is dropped.
    pub fn keeps(self, name: &OsStr) -> bool {
        let Some(name) = name.to_str() else {
            return false;
        };
        !is_secret(name)
            && match self {
                Policy::Scrubbed => true,
                Policy::AllowListed => is_allowed(name),
            }
    }
}

/// Parts of a name that make it a secret's wherever they appear, case aside: `GITHUB_TOKEN`,
/// `ACTIONS_ID_TOKEN_REQUEST_URL`, `AWS_SECRET_ACCESS_KEY`, `PGPASSWORD`, `CI_JOB_JWT`,
/// `GOOGLE_APPLICATION_CREDENTIALS`...
const SECRET_PARTS: [&str; 8] = [
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "APIKEY",
    "JWT",
];

/// Variables that may hold a secret although their names do not say so: `METALAB_HISTORY` may be
/// a `postgres://` URL with its password.
const SECRET_NAMES: [&str; 1] = [crate::history::ENV];

/// Whether the variable `name` holds a secret, going by its name: it is one of
/// [`SECRET_NAMES`], it contains one of
/// [`SECRET_PARTS`], or `KEY` is one of its `_`-separated words (`AWS_ACCESS_KEY_ID`,
/// `SSH_PRIVATE_KEY`, `DO_API_KEY`, but not `KEYBOARD` or `MONKEY`). Metal's
/// `METAL_AUTH_TOKEN` and `PACKET_AUTH_TOKEN` are such names, and `token_env` must be one.
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    SECRET_NAMES.contains(&name.as_str())
        || SECRET_PARTS.iter().any(|part| name.contains(part))
        || name.split('_').any(|w| w == "KEY")
}

/// Variables an untrusted lab's processes get: what a process needs to run, and metalab's own.
const ALLOWED: [&str; 11] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "TMPDIR",
    "VAGRANT_HOME",
    "LIBVIRT_DEFAULT_URI",
];

/// Prefixes of allowed names: the locale's `LC_*`, and metalab's `METALAB_*` (its state
/// directory, its config).
const ALLOWED_PREFIXES: [&str; 2] = ["LC_", "METALAB_"];

fn is_allowed(name: &str) -> bool {
    ALLOWED.contains(&name) || ALLOWED_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_credentials_and_metal_tokens_are_secrets() {
        for name in [
            "METAL_AUTH_TOKEN",
            "PACKET_AUTH_TOKEN",
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "ACTIONS_RUNTIME_TOKEN",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AZURE_CLIENT_SECRET",
            "DOCKER_PASSWORD",
            "PGPASSWORD",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "CI_JOB_JWT_V2",
            "SSH_PRIVATE_KEY",
            "DATADOG_APIKEY",
            "npm_config__authToken",
            "METALAB_HISTORY",
        ] {
            assert!(is_secret(name), "{name} is a secret");
        }
    }

    #[test]
    fn ordinary_names_are_not_secrets() {
        for name in [
            "PATH",
            "HOME",
            "ACME_MEMORY",
            "KEYBOARD_LAYOUT",
            "MONKEY",
            "LAB_THROTTLE",
            "METALAB_HOME",
            "CI",
            "GITHUB_ACTIONS",
            "GITHUB_WORKSPACE",
        ] {
            assert!(!is_secret(name), "{name} is not a secret");
        }
    }

    #[test]
    fn scrubbed_keeps_everything_but_secrets() {
        let keeps = |name: &str| Policy::Scrubbed.keeps(OsStr::new(name));
        assert!(keeps("ACME_MEMORY") && keeps("PATH") && keeps("SSH_AUTH_SOCK"));
        assert!(!keeps("GITHUB_TOKEN") && !keeps("METAL_AUTH_TOKEN"));
    }

    #[test]
    fn allow_listed_keeps_only_the_list_and_never_a_secret() {
        let keeps = |name: &str| Policy::AllowListed.keeps(OsStr::new(name));
        for name in ["PATH", "HOME", "LC_ALL", "METALAB_HOME", "VAGRANT_HOME"] {
            assert!(keeps(name), "{name} is kept");
        }
        for name in [
            "ACME_MEMORY",
            "SSH_AUTH_SOCK",
            "METALAB_TOKEN",
            "GITHUB_TOKEN",
        ] {
            assert!(!keeps(name), "{name} is dropped");
        }
    }

    /// Only the default is ever in force in this test binary: its other tests start children.
    #[test]
    fn the_policy_cannot_change_once_in_force() {
        assert_eq!(chosen(), Policy::Scrubbed);
        assert_eq!(choose(Policy::AllowListed), Err(Policy::Scrubbed));
        assert_eq!(chosen(), Policy::Scrubbed);
    }

    #[test]
    fn a_name_that_is_not_utf8_is_dropped() {
        use std::os::unix::ffi::OsStrExt;
        let odd = OsStr::from_bytes(b"ACME_\xff");
        assert!(!Policy::Scrubbed.keeps(odd));
    }

    /// `env` in a real process, started as every child is, from an environment holding a
    /// token: it sees what the policy keeps, and what metalab sets for it on purpose.
    #[test]
    fn a_real_child_sees_only_what_the_policy_keeps() {
        let inherited = || {
            [
                ("PATH", "/usr/bin:/bin"),
                ("METAL_AUTH_TOKEN", "tok-in-env"),
                ("GITHUB_TOKEN", "ghs-in-env"),
                ("ACME_MEMORY", "640"),
            ]
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        };
        let seen = |policy| {
            let out = command_with("env", policy, inherited())
                .env("METALAB_VM", "node1")
                .output()
                .expect("env runs");
            let mut lines: Vec<String> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(String::from)
                .collect();
            lines.sort();
            lines
        };
        assert_eq!(
            seen(Policy::Scrubbed),
            ["ACME_MEMORY=640", "METALAB_VM=node1", "PATH=/usr/bin:/bin"]
        );
        assert_eq!(
            seen(Policy::AllowListed),
            ["METALAB_VM=node1", "PATH=/usr/bin:/bin"]
        );
    }
}
