//! For the elements' tests: scratch labs loaded through the real loader, [`Config::load`].

use tempfile::TempDir;

use super::located::LocatedError;
use super::{Config, ConfigError, FILE_NAME};

/// A scratch lab that loads: a Vagrantfile, an empty `suites/` and a `metalab.toml` holding
/// `toml`.
pub fn lab(toml: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Vagrantfile"), "").unwrap();
    std::fs::create_dir(dir.path().join("suites")).unwrap();
    std::fs::write(dir.path().join(FILE_NAME), toml).unwrap();
    dir
}

/// Loads the `metalab.toml` of a scratch lab.
pub fn load(lab: &TempDir) -> Result<Config, ConfigError> {
    Config::load(&lab.path().join(FILE_NAME))
}

/// `toml` in a scratch lab, loaded; panics if it is refused.
pub fn loaded(toml: &str) -> Config {
    load(&lab(toml)).unwrap_or_else(|e| panic!("refused:\n{e}"))
}

/// `toml` in a scratch lab, refused with an error located in the file; panics otherwise.
pub fn rejected(toml: &str) -> LocatedError {
    located(load(&lab(toml)))
}

/// The located error of a refused load; panics if it loaded or failed another way.
pub fn located(result: Result<Config, ConfigError>) -> LocatedError {
    match result {
        Err(ConfigError::Located(e)) => e,
        Err(other) => panic!("not a located error: {other}"),
        Ok(config) => panic!("loaded: {config:?}"),
    }
}
