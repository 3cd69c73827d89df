//! Which runs a metric is compared with.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::history::MetricRun;

/// The baseline of a comparison, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaselineSpec {
    /// `last:N`: the N newest runs before this one, under the same conditions.
    Last(usize),
    /// `run:<id>`: one run (a unique prefix of its id will do).
    Run(String),
    /// `commit:<sha>`: every run of the lab at that commit (a prefix; dirty trees excluded).
    Commit(String),
}

/// The default baseline: `last:5`.
pub const DEFAULT_LAST: usize = 5;

impl Default for BaselineSpec {
    fn default() -> Self {
        BaselineSpec::Last(DEFAULT_LAST)
    }
}

impl FromStr for BaselineSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected last:N, run:<run-id> or commit:<sha>");
        let (kind, value) = s.split_once(':').ok_or_else(bad)?;
        if value.is_empty() {
            return Err(bad());
        }
        match kind {
            "last" => match value.parse::<usize>() {
                Ok(n) if n > 0 => Ok(BaselineSpec::Last(n)),
                _ => Err(format!(
                    "`{s}`: N must be a whole number of runs, at least 1"
                )),
            },
            "run" => Ok(BaselineSpec::Run(value.to_string())),
            "commit" => Ok(BaselineSpec::Commit(value.to_string())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for BaselineSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaselineSpec::Last(n) => write!(f, "last:{n}"),
            BaselineSpec::Run(id) => write!(f, "run:{id}"),
            BaselineSpec::Commit(sha) => write!(f, "commit:{sha}"),
        }
    }
}

impl BaselineSpec {
    /// In words, for headings; `any_conditions` when runs under other conditions count too.
    pub fn describe(&self, any_conditions: bool) -> String {
        let under = if any_conditions {
            "under any conditions"
        } else {
            "under the same conditions"
        };
        match self {
            BaselineSpec::Last(1) => format!("the previous run {under}"),
            BaselineSpec::Last(n) => format!("the last {n} runs {under}"),
            BaselineSpec::Run(id) => format!("run {id}"),
            BaselineSpec::Commit(sha) => format!("the runs of commit {sha}"),
        }
    }

    /// The runs of one metric's history (without the current run) that this spec names, oldest
    /// first, before conditions are checked. `last:N` considers runs that started before
    /// `current_started`; the count is applied after the conditions filter, by [`Self::limit`].
    pub fn candidates<'a>(
        &self,
        past: &'a [MetricRun],
        current_started: DateTime<Utc>,
    ) -> Vec<&'a MetricRun> {
        past.iter()
            .filter(|r| match self {
                BaselineSpec::Last(_) => r.started < current_started,
                BaselineSpec::Run(id) => r.run_id.as_str() == id,
                BaselineSpec::Commit(sha) => r
                    .conditions
                    .as_ref()
                    .and_then(|c| c.lab_commit.as_deref())
                    .is_some_and(|c| c.starts_with(sha.as_str()) && !c.ends_with("-dirty")),
            })
            .collect()
    }

    /// Keeps the newest runs a `last:N` baseline allows.
    pub fn limit<'a>(&self, mut runs: Vec<&'a MetricRun>) -> Vec<&'a MetricRun> {
        if let BaselineSpec::Last(n) = self {
            let excess = runs.len().saturating_sub(*n);
            runs.drain(..excess);
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!("last:3".parse(), Ok(BaselineSpec::Last(3)));
        assert_eq!(
            "run:20261122-203928-86bc".parse(),
            Ok(BaselineSpec::Run("20261122-203928-86bc".into()))
        );
        assert_eq!(
            "commit:16dbf78".parse(),
            Ok(BaselineSpec::Commit("16dbf78".into()))
        );
        for bad in ["last:0", "last:x", "latest", "run:", "branch:main"] {
            assert!(bad.parse::<BaselineSpec>().is_err(), "{bad}");
        }
    }
}
