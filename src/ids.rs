//! Run ids: the one name every resource of a run carries (VM and domain names, networks, the
//! Vagrant state directory, artifacts), so that cleanup can find them by name alone.

use std::fmt;

use chrono::Utc;
use rand::Rng;
use regex::Regex;
use std::sync::LazyLock;

/// A run id such as `20261122-200501-3fa2`: sortable by start time, unique per host.
/// Read back from a file it must have this shape too: it names directories (`artifacts/<id>`,
/// the state directory's runs), so a file must not be able to name another place.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct RunId(String);

/// A string read where a run id belongs that is not one.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a metalab run id (like 20261122-200501-3fa2)")]
pub struct NotARunId(String);

impl TryFrom<String> for RunId {
    type Error = NotARunId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        RunId::parse(&s).ok_or(NotARunId(s))
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

/// Matches a run id anywhere inside a resource name, e.g. `metalab-20261122-200501-3fa2-node1`.
static IN_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"metalab-(\d{8}-\d{6}-[0-9a-f]{4})-").expect("static regex"));

impl RunId {
    /// A fresh id: the UTC start time plus 16 random bits.
    pub fn generate() -> Self {
        let suffix: u16 = rand::rng().random();
        RunId(format!(
            "{}-{suffix:04x}",
            Utc::now().format("%Y%m%d-%H%M%S")
        ))
    }

    /// Parses an id the user typed, rejecting anything that is not shaped like one.
    pub fn parse(s: &str) -> Option<Self> {
        let probe = format!("metalab-{s}-");
        let caps = IN_NAME.captures(&probe)?;
        (caps.get(1)?.as_str() == s).then(|| RunId(s.to_string()))
    }

    /// The run id carried by a resource name (domain, network, volume), if any.
    pub fn from_resource_name(name: &str) -> Option<Self> {
        IN_NAME.captures(name).map(|c| RunId(c[1].to_string()))
    }

    /// When the run started, from the id itself.
    pub fn started(&self) -> Option<chrono::DateTime<Utc>> {
        let stamp = self.0.get(..15)?;
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d-%H%M%S")
            .ok()
            .map(|t| t.and_utc())
    }

    /// The prefix of every libvirt name of this run: `metalab-<id>-`.
    pub fn resource_prefix(&self) -> String {
        format!("metalab-{}-", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip_through_resource_names() {
        let id = RunId::generate();
        let domain = format!("{}node1", id.resource_prefix());
        assert_eq!(RunId::from_resource_name(&domain), Some(id.clone()));
        assert_eq!(RunId::parse(id.as_str()), Some(id.clone()));
        let age = Utc::now() - id.started().unwrap();
        assert!(age.num_seconds().abs() < 5, "{age}");
    }

    #[test]
    fn a_run_id_read_back_must_be_shaped_like_one() {
        let id: RunId = serde_json::from_str("\"20261122-200501-3fa2\"").unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"20261122-200501-3fa2\""
        );
        let e = serde_json::from_str::<RunId>("\"../../etc\"").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"../../etc\" is not a metalab run id"),
            "{e}"
        );
    }

    #[test]
    fn names_without_a_run_id_are_not_ours() {
        assert_eq!(RunId::from_resource_name("metalab-dev-node1"), None);
        assert_eq!(RunId::from_resource_name("vagrant-libvirt"), None);
        assert_eq!(RunId::parse("20261122-200501"), None);
        assert_eq!(RunId::parse("x20261122-200501-3fa2"), None);
    }
}
