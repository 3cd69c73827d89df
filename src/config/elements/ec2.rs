//! `[provider.ec2]`: the `ec2` provider's hosts, AWS EC2 bare-metal instances (`c5.metal`,
//! `m7i.metal-24xl`, ...) launched per run and terminated after it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::provider::{ProviderKind, RawProvider};
use super::ssh_hosts::{default_remote_home, default_ssh_port, default_ssh_user};
use crate::config::located::{LocatedError, SourceFile, refuse};
use crate::config::values::positive_duration;

/// The default image: the public SSM parameter of Debian's newest Debian 12 AMI for amd64,
/// resolved by EC2 at each launch.
pub const DEBIAN_12: &str = "resolve:ssm:/aws/service/debian/release/12/latest/amd64";

/// Where the runner's own address is asked for when `ssh_from` is not set: AWS's service.
pub const DEFAULT_CHECKIP_URL: &str = "https://checkip.amazonaws.com";

/// The `ec2` provider: instances launched per run, terminated after it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Config {
    /// The AWS region, e.g. `us-east-1`. Required.
    pub region: String,
    /// Instance types, tried in order while AWS has none to give. Required.
    #[serde(deserialize_with = "some_types")]
    pub instance_types: Vec<String>,
    /// The image: an AMI id (`ami-...`), or a public SSM parameter that names one
    /// (`resolve:ssm:NAME`, which EC2 resolves at launch). Default: Debian 12's newest for
    /// amd64, [`DEBIAN_12`].
    #[serde(default = "default_image", deserialize_with = "an_image")]
    pub image: String,
    /// Subnets tried in order for each type; all in one VPC. Default: the region's default VPC.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Availability zones tried in order for each type (in the default VPC); not with `subnets`.
    #[serde(default)]
    pub zones: Vec<String>,
    /// How many instances to launch (the suites are spread over them). Default 1.
    #[serde(default = "one")]
    pub instances: usize,
    /// Each instance powers itself off, and so terminates, `ttl` after launch, and carries that
    /// time in its `metalab:expires` tag. Default 3h.
    #[serde(default = "default_ttl", deserialize_with = "positive_duration")]
    pub ttl: Duration,
    /// Extra tags on everything the run creates; `metalab`, `metalab:run` and `metalab:expires`
    /// are always set.
    #[serde(default, deserialize_with = "own_tags")]
    pub tags: BTreeMap<String, String>,
    /// `on-demand` (the default) or `spot`.
    #[serde(default)]
    pub market: Market,
    /// The addresses (CIDR) the run's security group admits SSH from. Default: the runner's own
    /// public address, as `checkip_url` sees it, alone.
    #[serde(default)]
    pub ssh_from: Vec<String>,
    /// Asked for the runner's public address when `ssh_from` is not set.
    #[serde(default = "default_checkip_url")]
    pub checkip_url: String,
    /// Which of an instance's addresses metalab connects to: `public` (the default) or
    /// `private`, for a runner inside the VPC.
    #[serde(default)]
    pub address: AddressKind,
    /// Another EC2 endpoint (a VPC endpoint, or a local server in tests). Default: the region's.
    pub endpoint_url: Option<String>,
    /// The AWS profile to take credentials from. Default: the standard chain (`AWS_PROFILE`,
    /// the environment, `~/.aws`, SSO, an instance role).
    pub profile: Option<String>,
    /// The instances' SSH port. Default 22.
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    /// The user to log in to the instances as. Default `root`: the instance's first boot lets
    /// the run's key in for root.
    #[serde(default = "default_ssh_user")]
    pub user: String,
    /// How long an instance may take to be running with its status checks passed. Default 20m.
    #[serde(
        default = "default_provision_timeout",
        deserialize_with = "positive_duration"
    )]
    pub provision_timeout: Duration,
    /// How often a starting instance is looked at. Default 10s.
    #[serde(default = "default_poll", deserialize_with = "positive_duration")]
    pub poll: Duration,
    /// How long a running instance may take to answer SSH. Default 10m.
    #[serde(default = "default_ssh_timeout", with = "humantime_serde")]
    pub ssh_timeout: Duration,
    /// metalab's state directory on the instances. Default `/var/lib/metalab`.
    #[serde(default = "default_remote_home")]
    pub home: String,
}

/// How the instances are paid for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    #[default]
    OnDemand,
    /// Cheaper, and AWS may take the instance back at two minutes' notice: the run then fails
    /// as an infrastructure failure (exit 3).
    Spot,
}

/// Which address of an instance metalab connects to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressKind {
    #[default]
    Public,
    Private,
}

impl Ec2Config {
    /// Where each instance may be placed, in order: subnets, zones, or wherever EC2 likes.
    pub fn placements(&self) -> Vec<Placement> {
        if !self.subnets.is_empty() {
            self.subnets
                .iter()
                .cloned()
                .map(Placement::Subnet)
                .collect()
        } else if !self.zones.is_empty() {
            self.zones.iter().cloned().map(Placement::Zone).collect()
        } else {
            vec![Placement::Anywhere]
        }
    }
}

/// One place an instance may be launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Subnet(String),
    Zone(String),
    Anywhere,
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Subnet(s) => write!(f, "subnet {s}"),
            Placement::Zone(z) => write!(f, "zone {z}"),
            Placement::Anywhere => f.write_str("the default VPC"),
        }
    }
}

fn some_types<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let types = Vec::<String>::deserialize(d)?;
    if types.is_empty() {
        return Err(refuse(
            "no instance type to launch",
            "name at least one, best several to fall back over, e.g. instance_types = [\"c5.metal\", \"m5.metal\"]",
        ));
    }
    Ok(types)
}
fn default_image() -> String {
    DEBIAN_12.into()
}
fn an_image<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let image = String::deserialize(d)?;
    let parameter = image.strip_prefix("resolve:ssm:");
    if !image.starts_with("ami-") && !parameter.is_some_and(|p| p.starts_with('/')) {
        return Err(refuse(
            format!("`{image}` is neither an AMI id nor an SSM parameter"),
            "give an AMI id of the region, e.g. image = \"ami-0abcdef1234567890\", or a public parameter that names one, e.g. \"resolve:ssm:/aws/service/debian/release/12/latest/arm64\" for arm64 types such as c6g.metal",
        ));
    }
    Ok(image)
}
/// metalab's own tags say which run owns a resource; a user's tag of the same name would lie.
fn own_tags<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let tags = BTreeMap::<String, String>::deserialize(d)?;
    if let Some(k) = tags
        .keys()
        .find(|k| k.as_str() == "metalab" || k.starts_with("metalab:") || k.starts_with("aws:"))
    {
        return Err(refuse(
            format!("the tag `{k}` is metalab's or AWS's own"),
            "name it otherwise, e.g. team = \"net\"",
        ));
    }
    Ok(tags)
}
fn one() -> usize {
    1
}
fn default_ttl() -> Duration {
    Duration::from_secs(3 * 3600)
}
fn default_checkip_url() -> String {
    DEFAULT_CHECKIP_URL.into()
}
fn default_provision_timeout() -> Duration {
    Duration::from_secs(20 * 60)
}
fn default_poll() -> Duration {
    Duration::from_secs(10)
}
fn default_ssh_timeout() -> Duration {
    Duration::from_secs(10 * 60)
}

/// `[provider.ec2]` as written: the keys whose place in the file an error names. A credential
/// here is refused with its location.
#[derive(Deserialize)]
pub(in crate::config) struct RawEc2 {
    access_key_id: Option<Spanned<toml::Value>>,
    secret_access_key: Option<Spanned<toml::Value>>,
    session_token: Option<Spanned<toml::Value>>,
    aws_access_key_id: Option<Spanned<toml::Value>>,
    aws_secret_access_key: Option<Spanned<toml::Value>>,
    aws_session_token: Option<Spanned<toml::Value>>,
    zones: Option<Spanned<toml::Value>>,
    ssh_from: Option<Spanned<toml::Value>>,
    #[serde(flatten)]
    _rest: toml::Table,
}

impl RawEc2 {
    /// The first credential written in the table, with its key.
    fn credential(&self) -> Option<(&'static str, &Spanned<toml::Value>)> {
        [
            ("access_key_id", &self.access_key_id),
            ("secret_access_key", &self.secret_access_key),
            ("session_token", &self.session_token),
            ("aws_access_key_id", &self.aws_access_key_id),
            ("aws_secret_access_key", &self.aws_secret_access_key),
            ("aws_session_token", &self.aws_session_token),
        ]
        .into_iter()
        .find_map(|(key, value)| Some((key, value.as_ref()?)))
    }
}

/// `[provider.ec2]`, required by the ec2 provider, and checked beyond its types: a credential in
/// the file (it would end up in version control, logs and archives), subnets with zones, and
/// addresses that are not CIDR blocks are refused where they are.
pub(in crate::config) fn ec2(
    file: &SourceFile,
    p: &RawProvider,
) -> Result<Option<Ec2Config>, LocatedError> {
    let Some(raw) = &p.ec2 else {
        if *p.kind.get_ref() == ProviderKind::Ec2 {
            return Err(file
                .error_at(
                    p.kind.span(),
                    "the ec2 provider needs a [provider.ec2] table",
                )
                .with_key("provider.kind")
                .with_hint("set region and instance_types"));
        }
        return Ok(None);
    };
    if let Some((key, value)) = raw.credential() {
        return Err(file
            .error_at(value.span(), "AWS credentials must not be written in a file")
            .with_key(format!("provider.ec2.{key}"))
            .with_hint("remove it: metalab takes credentials from the standard AWS chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or `profile`, SSO, an instance role)"));
    }
    // Deserialized again from the text, so that errors keep their place in the file.
    #[derive(Deserialize)]
    struct Outer {
        provider: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        ec2: Ec2Config,
    }
    let outer: Outer = toml::from_str(&file.text).map_err(|e| file.toml_error(&e))?;
    let config = outer.provider.ec2;
    let at = |value: &Option<Spanned<toml::Value>>| value.as_ref().map_or(0..0, Spanned::span);
    if !config.subnets.is_empty() && !config.zones.is_empty() {
        return Err(file
            .error_at(at(&raw.zones), "both subnets and zones are set")
            .with_key("provider.ec2.zones")
            .with_hint("keep one: a subnet already lies in a zone"));
    }
    if let Some(bad) = config.ssh_from.iter().find(|c| !is_cidr(c)) {
        return Err(file
            .error_at(at(&raw.ssh_from), format!("`{bad}` is not a CIDR block"))
            .with_key("provider.ec2.ssh_from")
            .with_hint("write an address with its prefix length, e.g. \"203.0.113.7/32\""));
    }
    Ok(Some(config))
}

/// `203.0.113.7/32`, `2001:db8::/64`.
pub fn is_cidr(text: &str) -> bool {
    let Some((address, bits)) = text.split_once('/') else {
        return false;
    };
    let max = match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    bits.parse::<u8>().is_ok_and(|b| b <= max)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    use super::*;

    const EC2: &str = "[provider]\nkind = \"ec2\"\n[provider.ec2]\nregion = \"us-east-1\"\ninstance_types = [\"c5.metal\"]\nimage = \"ami-0123456789abcdef0\"\n";

    #[test]
    fn defaults_of_the_optional_settings() {
        let c = loaded(EC2).ec2.expect("[provider.ec2] is read");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.instance_types, ["c5.metal"]);
        assert_eq!(c.placements(), [Placement::Anywhere]);
        assert_eq!(c.instances, 1);
        assert_eq!(c.ttl, Duration::from_secs(3 * 3600));
        assert_eq!(c.market, Market::OnDemand);
        assert!(c.ssh_from.is_empty());
        assert_eq!(c.checkip_url, DEFAULT_CHECKIP_URL);
        assert_eq!(c.address, AddressKind::Public);
        assert_eq!((c.ssh_port, c.user.as_str()), (22, "root"));
        assert_eq!(c.home, "/var/lib/metalab");
        assert!(c.endpoint_url.is_none() && c.profile.is_none());
    }

    #[test]
    fn placements_follow_the_subnets_or_the_zones_in_order() {
        let c = loaded(&format!("{EC2}subnets = [\"subnet-b\", \"subnet-a\"]\n"))
            .ec2
            .unwrap();
        assert_eq!(
            c.placements(),
            [
                Placement::Subnet("subnet-b".into()),
                Placement::Subnet("subnet-a".into())
            ]
        );
        let c = loaded(&format!(
            "{EC2}zones = [\"us-east-1f\"]\nmarket = \"spot\"\n"
        ))
        .ec2
        .unwrap();
        assert_eq!(c.placements(), [Placement::Zone("us-east-1f".into())]);
        assert_eq!(c.market, Market::Spot);
    }

    #[test]
    fn a_credential_in_the_file_is_refused_where_it_is() {
        let e = rejected(&format!("{EC2}secret_access_key = \"wJalr\"\n"));
        assert_eq!((e.line, e.column), (7, 21));
        assert_eq!(e.key.as_deref(), Some("provider.ec2.secret_access_key"));
        assert_eq!(e.message, "AWS credentials must not be written in a file");
        assert!(e.hint.unwrap().contains("AWS_PROFILE"));
    }

    #[test]
    fn subnets_and_zones_together_are_refused() {
        let e = rejected(&format!(
            "{EC2}subnets = [\"subnet-a\"]\nzones = [\"us-east-1a\"]\n"
        ));
        assert_eq!((e.line, e.column), (8, 9));
        assert_eq!(e.key.as_deref(), Some("provider.ec2.zones"));
    }

    #[test]
    fn values_that_cannot_work_are_located() {
        for (line, key, message) in [
            (
                "instance_types = []",
                "instance_types",
                "no instance type to launch",
            ),
            (
                "ssh_from = [\"10.0.0.1\"]",
                "ssh_from",
                "`10.0.0.1` is not a CIDR block",
            ),
            (
                "tags = { \"metalab:run\" = \"x\" }",
                "tags",
                "the tag `metalab:run` is metalab's or AWS's own",
            ),
            (
                "market = \"reserved\"",
                "market",
                "unknown variant `reserved`",
            ),
        ] {
            let base = match key {
                "instance_types" => EC2.replace("instance_types = [\"c5.metal\"]\n", ""),
                _ => EC2.to_string(),
            };
            let e = rejected(&format!("{base}{line}\n"));
            assert_eq!(e.key, Some(format!("provider.ec2.{key}")), "{line}");
            assert!(e.message.starts_with(message), "{line}: {}", e.message);
        }
        let e = rejected(&EC2.replace("ami-0123456789abcdef0", "debian-12"));
        assert_eq!(e.key.as_deref(), Some("provider.ec2.image"));
        assert!(
            e.hint
                .unwrap()
                .contains("resolve:ssm:/aws/service/debian/release/12")
        );
    }

    #[test]
    fn the_image_is_an_ami_or_an_ssm_parameter_and_debian_12_by_default() {
        let without = EC2.replace("image = \"ami-0123456789abcdef0\"\n", "");
        assert_eq!(loaded(&without).ec2.unwrap().image, DEBIAN_12);
        let arm = EC2.replace(
            "ami-0123456789abcdef0",
            "resolve:ssm:/aws/service/debian/release/12/latest/arm64",
        );
        assert!(loaded(&arm).ec2.unwrap().image.ends_with("arm64"));
        let e = rejected(&EC2.replace("ami-0123456789abcdef0", "resolve:ssm:debian"));
        assert_eq!(e.key.as_deref(), Some("provider.ec2.image"));
    }

    #[test]
    fn the_ec2_provider_needs_its_table() {
        let e = rejected("[provider]\nkind = \"ec2\"\n");
        assert_eq!(e.key.as_deref(), Some("provider.kind"));
        assert_eq!(e.message, "the ec2 provider needs a [provider.ec2] table");
    }

    /// The README's example loads, and means what its comments say.
    #[test]
    fn the_readmes_example_loads() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("### Bare-metal instances on AWS EC2").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let c = loaded(example).ec2.expect("[provider.ec2] is read");
        assert_eq!(c.instance_types, ["c5.metal", "m5.metal"]);
        assert_eq!(c.image, DEBIAN_12);
        assert_eq!(
            c.placements(),
            [
                Placement::Subnet("subnet-0a1b".into()),
                Placement::Subnet("subnet-0c2d".into())
            ]
        );
        assert_eq!((c.market, c.ttl), (Market::OnDemand, default_ttl()));
    }

    #[test]
    fn cidr_blocks() {
        assert!(is_cidr("203.0.113.7/32") && is_cidr("2001:db8::/64") && is_cidr("0.0.0.0/0"));
        assert!(!is_cidr("10.0.0.1") && !is_cidr("10.0.0.1/33") && !is_cidr("host/24"));
    }
}
