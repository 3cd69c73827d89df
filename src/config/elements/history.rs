//! `[history]`: where the benchmark history is kept.

use std::path::PathBuf;

use serde::Deserialize;

/// `[history]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawHistory {
    /// The history database, relative to the lab root. Default: in the state directory (see
    /// [`crate::history::default_path`]).
    pub path: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use crate::config::testing::loaded;

    #[test]
    fn unset_means_the_state_directory() {
        assert_eq!(loaded("").history_path, None);
    }

    #[test]
    fn a_path_is_under_the_lab_root() {
        let c = loaded("[history]\npath = \"bench/history.db\"\n");
        assert_eq!(c.history_path, Some(c.root.join("bench/history.db")));
    }
}
