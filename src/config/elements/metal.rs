//! `[provider.metal]`: the `metal` provider's devices, created per run through the Packet /
//! Equinix Metal API and deleted after it.

use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::provider::{ProviderKind, RawProvider};
use super::ssh_hosts::{default_remote_home, default_ssh_port, default_ssh_user};
use crate::config::located::{LocatedError, SourceFile, refuse};
use crate::config::values::positive_duration;

/// The `metal` provider: devices created per run, deleted after it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetalConfig {
    /// The project the devices are created in (its id). Required.
    pub project: String,
    /// The device plan, e.g. `c3.small.x86`. Required.
    pub plan: String,
    /// Tried in order when one has no capacity; `"any"` lets the API choose. Default `["any"]`.
    #[serde(default = "default_metros", deserialize_with = "some_metros")]
    pub metros: Vec<String>,
    /// The operating system slug, e.g. `debian_12`. Required.
    pub operating_system: String,
    /// How many devices to create (the suites are spread over them). Default 1.
    #[serde(default = "one")]
    pub devices: usize,
    /// Each device gets `termination_time = now + ttl`: the platform deletes it even if metalab
    /// dies. Default 3h.
    #[serde(default = "default_ttl", deserialize_with = "positive_duration")]
    pub ttl: Duration,
    /// Extra tags; `metalab` and `run:<run-id>` are always set.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The API root. Default [`crate::metal::DEFAULT_BASE_URL`].
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The devices' SSH port. Default 22.
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    /// The user to log in to the devices as. Default `root`.
    #[serde(default = "default_ssh_user")]
    pub user: String,
    /// The environment variable holding the API token. Default `METAL_AUTH_TOKEN` (with
    /// `PACKET_AUTH_TOKEN` accepted). The token itself never goes in a file. Its name must be a
    /// secret's, so that no process metalab starts inherits it ([`crate::child_env`]).
    #[serde(default = "default_token_env", deserialize_with = "secret_name")]
    pub token_env: String,
    /// How long a device may take to become active. Default 30m.
    #[serde(
        default = "default_provision_timeout",
        deserialize_with = "positive_duration"
    )]
    pub provision_timeout: Duration,
    /// How often a provisioning device is looked at. Default 10s.
    #[serde(default = "default_poll", deserialize_with = "positive_duration")]
    pub poll: Duration,
    /// How long an active device may take to answer SSH (its first boot may still be running
    /// cloud-init). Default 10m.
    #[serde(default = "default_ssh_timeout", with = "humantime_serde")]
    pub ssh_timeout: Duration,
    /// metalab's state directory on the devices. Default `/var/lib/metalab`.
    #[serde(default = "default_remote_home")]
    pub home: String,
}

fn default_metros() -> Vec<String> {
    vec!["any".into()]
}
/// With no metro to try, no device could ever be made.
fn some_metros<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let metros = Vec::<String>::deserialize(d)?;
    if metros.is_empty() {
        return Err(refuse(
            "no metro to create the devices in",
            "name at least one, e.g. metros = [\"da\", \"sv\"], or [\"any\"] to let the API choose (the default)",
        ));
    }
    Ok(metros)
}
fn one() -> usize {
    1
}
fn default_ttl() -> Duration {
    Duration::from_secs(3 * 3600)
}
fn default_api_url() -> String {
    crate::metal::DEFAULT_BASE_URL.into()
}
fn default_token_env() -> String {
    "METAL_AUTH_TOKEN".into()
}
/// A token in a variable not named like a secret would reach every process metalab starts.
fn secret_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    if !crate::child_env::is_secret(&name) {
        return Err(refuse(
            format!(
                "`{name}` is not named like a secret, so the processes metalab starts (Vagrant, your Vagrantfile) would inherit the token"
            ),
            "name it with TOKEN, SECRET, PASSWORD or a word KEY in it, e.g. METAL_AUTH_TOKEN",
        ));
    }
    Ok(name)
}
fn default_provision_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_poll() -> Duration {
    Duration::from_secs(10)
}
fn default_ssh_timeout() -> Duration {
    Duration::from_secs(10 * 60)
}

/// `[provider.metal]` as written: a token here is refused with its location.
#[derive(Deserialize)]
pub(in crate::config) struct RawMetal {
    token: Option<Spanned<toml::Value>>,
    #[serde(flatten)]
    _rest: toml::Table,
}

/// `[provider.metal]`, required by the metal provider. A token in the file is refused: it would
/// end up in version control, logs and archives.
pub(in crate::config) fn metal(
    file: &SourceFile,
    p: &RawProvider,
) -> Result<Option<MetalConfig>, LocatedError> {
    let Some(raw) = &p.metal else {
        if *p.kind.get_ref() == ProviderKind::Metal {
            return Err(file
                .error_at(
                    p.kind.span(),
                    "the metal provider needs a [provider.metal] table",
                )
                .with_key("provider.kind")
                .with_hint("set project, plan, operating_system (and metros)"));
        }
        return Ok(None);
    };
    if let Some(token) = &raw.token {
        return Err(file
            .error_at(token.span(), "the API token must not be written in a file")
            .with_key("provider.metal.token")
            .with_hint("remove it, and set METAL_AUTH_TOKEN (or the variable `token_env` names) in the environment"));
    }
    // Deserialized again from the text, so that errors keep their place in the file.
    #[derive(Deserialize)]
    struct Outer {
        provider: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        metal: MetalConfig,
    }
    let outer: Outer = toml::from_str(&file.text).map_err(|e| file.toml_error(&e))?;
    Ok(Some(outer.provider.metal))
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    use super::*;

    const METAL: &str = "[provider]\nkind = \"metal\"\n[provider.metal]\nproject = \"p\"\nplan = \"c3.small.x86\"\noperating_system = \"debian_12\"\n";

    #[test]
    fn defaults_of_the_optional_settings() {
        let m = loaded(METAL).metal.expect("[provider.metal] is read");
        assert_eq!((m.project.as_str(), m.plan.as_str()), ("p", "c3.small.x86"));
        assert_eq!(m.metros, ["any"]);
        assert_eq!(m.devices, 1);
        assert_eq!(m.ttl, Duration::from_secs(3 * 3600));
        assert!(m.tags.is_empty());
        assert_eq!(m.api_url, crate::metal::DEFAULT_BASE_URL);
        assert_eq!((m.ssh_port, m.user.as_str()), (22, "root"));
        assert_eq!(m.token_env, "METAL_AUTH_TOKEN");
        assert_eq!(m.provision_timeout, Duration::from_secs(30 * 60));
        assert_eq!(m.poll, Duration::from_secs(10));
        assert_eq!(m.ssh_timeout, Duration::from_secs(10 * 60));
        assert_eq!(m.home, "/var/lib/metalab");
    }

    #[test]
    fn durations_are_human_readable() {
        let m = loaded(&format!(
            "{METAL}ttl = \"90m\"\npoll = \"2s\"\nssh_timeout = \"90s\"\n"
        ))
        .metal
        .unwrap();
        assert_eq!(
            (m.ttl, m.poll, m.ssh_timeout),
            (
                Duration::from_secs(5400),
                Duration::from_secs(2),
                Duration::from_secs(90)
            )
        );
    }

    #[test]
    fn no_metros_is_located_at_the_value() {
        let e = rejected(&format!("{METAL}metros = []\n"));
        assert_eq!((e.line, e.column), (7, 10));
        assert_eq!(e.key.as_deref(), Some("provider.metal.metros"));
        assert_eq!(e.message, "no metro to create the devices in");
        assert!(e.hint.unwrap().contains("[\"any\"]"));
    }

    #[test]
    fn a_zero_duration_is_located_at_the_value() {
        for key in ["ttl", "provision_timeout", "poll"] {
            let e = rejected(&format!("{METAL}{key} = \"0s\"\n"));
            assert_eq!((e.line, e.column), (7, key.len() + 4), "{key}");
            assert_eq!(e.key, Some(format!("provider.metal.{key}")));
            assert_eq!(
                e.message,
                "0s is no time at all: this duration must be above zero"
            );
        }
    }

    #[test]
    fn a_missing_required_key_is_named_with_its_table() {
        let e = rejected(
            "[provider]\nkind = \"metal\"\n[provider.metal]\nplan = \"c3\"\noperating_system = \"d\"\n",
        );
        assert_eq!((e.line, e.column), (3, 1));
        assert_eq!(e.key.as_deref(), Some("provider.metal.project"));
        assert_eq!(
            e.message,
            "missing required key `project` in [provider.metal]"
        );
    }

    #[test]
    fn a_token_in_the_file_is_refused_where_it_is() {
        let e = rejected(&format!("{METAL}token = \"s3cret\"\n"));
        assert_eq!((e.line, e.column), (7, 9));
        assert_eq!(e.key.as_deref(), Some("provider.metal.token"));
        assert_eq!(e.message, "the API token must not be written in a file");
        assert!(e.hint.unwrap().contains("METAL_AUTH_TOKEN"));
    }

    #[test]
    fn a_token_variable_not_named_like_a_secret_is_refused() {
        assert_eq!(
            loaded(&format!("{METAL}token_env = \"ACME_METAL_TOKEN\"\n"))
                .metal
                .unwrap()
                .token_env,
            "ACME_METAL_TOKEN"
        );
        let e = rejected(&format!("{METAL}token_env = \"METAL_AUTH\"\n"));
        assert_eq!((e.line, e.column), (7, 13));
        assert_eq!(e.key.as_deref(), Some("provider.metal.token_env"));
        assert!(
            e.message.contains("would inherit the token"),
            "{}",
            e.message
        );
        assert!(e.hint.unwrap().contains("METAL_AUTH_TOKEN"));
    }

    #[test]
    fn the_metal_provider_needs_its_table() {
        let e = rejected("[provider]\nkind = \"metal\"\n");
        assert_eq!(e.key.as_deref(), Some("provider.kind"));
        assert_eq!(
            e.message,
            "the metal provider needs a [provider.metal] table"
        );
    }

    #[test]
    fn a_misspelt_key_is_located_with_a_suggestion() {
        let e = rejected(&format!("{METAL}devics = 2\n"));
        assert_eq!((e.line, e.column), (7, 1));
        assert_eq!(e.key.as_deref(), Some("provider.metal.devics"));
        assert_eq!(e.hint.as_deref(), Some("did you mean `devices`?"));
    }
}
