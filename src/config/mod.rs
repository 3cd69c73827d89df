//! `metalab.toml`: the lab's description, typed and validated before anything starts.
//!
//! Every error names the file, line, column and key (see [`located`]). Paths in the file are
//! relative to the directory that holds it, the lab root. Each section of the file is an element
//! of its own (see `elements/`): its type, its defaults, its checks and their tests.

mod elements;
pub mod located;
#[cfg(test)]
mod testing;
pub mod values;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use elements::ec2::ec2;
use elements::history::RawHistory;
use elements::lab::RawLab;
use elements::metal::metal;
use elements::provider::RawProvider;
use elements::ssh_hosts::ssh_hosts;
use located::{LocatedError, ReadError, SourceFile};

pub use elements::{
    Accel, AddressKind, Bench, Capacity, DEFAULT_BOX_RECIPE, DEFAULT_MIN_EFFECT, Destination,
    Ec2Config, Market, MetalConfig, Outputs, Placement, ProviderKind, Retries, SshHostConfig,
    Timeouts, Untrusted, VmDefaults,
};

/// The file name metalab looks for in the current directory and its parents.
pub const FILE_NAME: &str = "metalab.toml";

/// A loaded and validated lab configuration, with every path made absolute.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The directory holding it: the lab root, synced to hosts as a whole.
    pub root: PathBuf,
    /// The Vagrantfile that defines the lab's VMs (`lab.vagrantfile`). Default `Vagrantfile`.
    pub vagrantfile: PathBuf,
    /// The directory of suite files (`lab.suites`). Default `suites`.
    pub suites_dir: PathBuf,
    /// Where runs write their reports and artifacts (`lab.artifacts`). Default `artifacts`.
    pub artifacts_dir: PathBuf,
    /// The recipe of the box metalab builds (`lab.box`, or `boxes/debian12` when that exists);
    /// `None`: the Vagrantfile's box is used as Vagrant finds it.
    pub box_recipe: Option<PathBuf>,
    /// The container image recipes, one directory each (`lab.images`). Default `images`.
    pub images_dir: PathBuf,
    /// Whether the Vagrantfile's provisioners run after `vagrant up` (`lab.provision`).
    pub provision: bool,
    /// Where the VMs run (`provider.kind`). Default `local`.
    pub provider: ProviderKind,
    /// The inventory of the `ssh` provider, paths resolved.
    pub ssh_hosts: Vec<SshHostConfig>,
    /// The settings of the `metal` provider.
    pub metal: Option<MetalConfig>,
    /// The settings of the `ec2` provider.
    pub ec2: Option<Ec2Config>,
    /// `[vm]`: the resources of each VM.
    pub vm: VmDefaults,
    /// `[timeouts]`: the deadline of each phase.
    pub timeouts: Timeouts,
    /// `[retries]`: how often failures are retried.
    pub retries: Retries,
    /// `[capacity]`: how much a host may run at once.
    pub capacity: Capacity,
    /// `[history]`: the benchmark history's file (made absolute) or server; `None` means the
    /// default file in the state directory (see [`crate::history::default_path`]).
    pub history: Option<crate::history::Location>,
    /// `[bench]`: the regression gate's defaults.
    pub bench: Bench,
    /// `[untrusted]`: what a run of an unreviewed change may take from the runner.
    pub untrusted: Untrusted,
    /// `[outputs]`: how much of the VMs' output a run keeps.
    pub outputs: Outputs,
}

/// The file as written, before paths are resolved and checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    lab: RawLab,
    #[serde(default)]
    provider: RawProvider,
    #[serde(default)]
    vm: VmDefaults,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    retries: Retries,
    #[serde(default)]
    capacity: Capacity,
    #[serde(default)]
    history: RawHistory,
    #[serde(default)]
    bench: Bench,
    #[serde(default)]
    untrusted: Untrusted,
    #[serde(default)]
    outputs: Outputs,
}

/// Why a configuration could not be loaded. Every variant means "bad input" (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no {FILE_NAME} and no Vagrantfile in {0} or any parent directory (pass --config PATH)"
    )]
    NotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: is a directory, not a file: metalab reads its settings from a file of this name",
        located::shown_path(.0).display()
    )]
    IsDirectory(PathBuf),
    #[error("{0}")]
    Located(#[from] LocatedError),
}

impl Config {
    /// Finds the lab from `start`: the nearest directory (itself or a parent) with a
    /// `metalab.toml`, or else with a `Vagrantfile` (a lab that is only a Vagrantfile and its
    /// suites runs with the defaults).
    pub fn discover(start: &Path) -> Result<Config, ConfigError> {
        for dir in start.ancestors() {
            let file = dir.join(FILE_NAME);
            // Anything by that name is the lab's file: a directory is refused, not skipped.
            if std::fs::symlink_metadata(&file).is_ok() {
                return Config::load(&file);
            }
            if dir.join("Vagrantfile").is_file() {
                return Config::defaults(dir);
            }
        }
        Err(ConfigError::NotFound(start.to_path_buf()))
    }

    /// The lab's configuration: the file given (`--config`), or else the one [`Config::discover`]
    /// finds from the current directory.
    pub fn find(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(path) => Config::load(path),
            None => Config::discover(&std::env::current_dir().unwrap_or_default()),
        }
    }

    /// [`Config::find`], with `None` when there is no lab here at all.
    pub fn find_optional(explicit: Option<&Path>) -> Result<Option<Config>, ConfigError> {
        match Config::find(explicit) {
            Err(ConfigError::NotFound(_)) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Every setting at its default, for the lab in `dir`.
    pub fn defaults(dir: &Path) -> Result<Config, ConfigError> {
        let file = SourceFile {
            path: dir.join(FILE_NAME),
            text: String::new(),
        };
        Config::parse(file)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if path.is_dir() {
            return Err(ConfigError::IsDirectory(path.to_path_buf()));
        }
        let file = SourceFile::read(path).map_err(|e| match e {
            ReadError::Io(source) => ConfigError::Read {
                path: path.to_path_buf(),
                source,
            },
            ReadError::Located(e) => ConfigError::Located(e),
        })?;
        Config::parse(file)
    }

    /// Parses and validates the text of `file`; the lab root is the directory holding it.
    fn parse(file: SourceFile) -> Result<Config, ConfigError> {
        let path = file.path.clone();
        let path = path.as_path();
        let raw: RawConfig = toml::from_str(&file.text).map_err(|e| file.toml_error(&e))?;
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .canonicalize()
            .map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let lab = raw.lab.resolve(&file, &root)?;
        let ssh_hosts = ssh_hosts(&file, &root, &raw.provider)?;
        let metal = metal(&file, &raw.provider)?;
        let ec2 = ec2(&file, &raw.provider)?;
        let history = raw.history.resolve(&file, &root)?;
        Ok(Config {
            path: path.to_path_buf(),
            root,
            vagrantfile: lab.vagrantfile,
            suites_dir: lab.suites_dir,
            artifacts_dir: lab.artifacts_dir,
            box_recipe: lab.box_recipe,
            images_dir: lab.images_dir,
            provision: lab.provision,
            provider: *raw.provider.kind.get_ref(),
            ssh_hosts,
            metal,
            ec2,
            vm: raw.vm,
            timeouts: raw.timeouts,
            retries: raw.retries,
            capacity: raw.capacity,
            history,
            bench: raw.bench,
            untrusted: raw.untrusted,
            outputs: raw.outputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_finds_the_nearest_file_from_a_subdirectory() {
        let lab = testing::lab("[vm]\ncpus = 2\n");
        let below = lab.path().join("suites");
        let c = Config::discover(&below).unwrap();
        assert_eq!(c.path, lab.path().join(FILE_NAME));
        assert_eq!(c.vm.cpus, 2);
    }

    #[test]
    fn a_lab_that_is_only_a_vagrantfile_runs_with_the_defaults() {
        let lab = testing::lab("");
        std::fs::remove_file(lab.path().join(FILE_NAME)).unwrap();
        let c = Config::discover(lab.path()).unwrap();
        assert_eq!(c.path, lab.path().join(FILE_NAME));
        assert_eq!(c.vm.memory, VmDefaults::default().memory);
    }

    #[test]
    fn an_unknown_table_is_named_as_written() {
        let e = testing::rejected("[lab]\nprovision = true\n\n[timout]\ntest = \"1s\"\n");
        assert_eq!((e.line, e.column), (4, 2));
        assert_eq!(e.key.as_deref(), Some("timout"));
        assert_eq!(e.hint.as_deref(), Some("did you mean `timeouts`?"));
    }

    #[test]
    fn a_header_that_does_not_close_names_no_key() {
        let e = testing::rejected("[lab]\nprovision = true\n[vm\ncpus = 2\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.key, None);
        assert!(!e.to_string().contains("key `"), "{e}");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_located_at_the_first() {
        let lab = testing::lab("");
        std::fs::write(
            lab.path().join(FILE_NAME),
            b"[vm]\ncpus = 2\n# caf\xc3\xa9\n[lab]\nsuites = \"s\xe9\xff\"\n",
        )
        .unwrap();
        let e = testing::located(testing::load(&lab));
        assert_eq!((e.line, e.column), (5, 12));
        assert_eq!(e.key.as_deref(), Some("lab.suites"));
        assert_eq!(
            e.message,
            "byte 0xe9 is not UTF-8: metalab.toml must be UTF-8 text"
        );
        assert!(e.hint.unwrap().starts_with("save the file as UTF-8"));
    }

    #[test]
    fn a_directory_by_the_name_is_refused_saying_so() {
        let lab = testing::lab("");
        let file = lab.path().join(FILE_NAME);
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        for result in [Config::load(&file), Config::discover(lab.path())] {
            match result {
                Err(e @ ConfigError::IsDirectory(_)) => {
                    let shown = e.to_string();
                    assert!(
                        shown.starts_with(&format!("{}: is a directory", file.display())),
                        "{shown}"
                    );
                }
                other => panic!("{:?}", other.map(|c| c.path)),
            }
        }
    }

    #[test]
    fn a_huge_line_is_shown_once_and_cut() {
        let huge = "a".repeat(5_000_000);
        let e = testing::rejected(&format!("[vm]\nmemory = \"{huge}\"\n"));
        assert_eq!((e.line, e.column), (2, 10));
        assert_eq!(e.key.as_deref(), Some("vm.memory"));
        let shown = e.to_string();
        assert!(shown.len() < 2_000, "{} bytes", shown.len());
        assert!(
            shown.contains("(line cut: it is 5000011 characters long)"),
            "{shown}"
        );
        assert!(shown.contains("characters cut) …"), "{shown}");
        assert!(shown.contains("expected u32"), "{shown}");
        assert!(shown.contains("\n  |          ^"), "{shown}");
    }

    #[test]
    fn an_unknown_table_is_located() {
        let e = testing::rejected("[labs]\nsuites = \"s\"\n");
        assert_eq!((e.line, e.column), (1, 2));
        assert!(
            e.message.starts_with("unknown field `labs`"),
            "{}",
            e.message
        );
    }
}
