//! Suites: `suites/<name>/suite.toml` plus the scripts it runs inside the VMs.
//!
//! A suite names the VMs it needs, setup steps, tests (each with expectations), benchmarks,
//! teardown steps and artifacts to collect. Files are validated up front, against the VMs the
//! Vagrantfile defines, with errors that point at file, line, column and key.

mod env;
mod file;
mod select;

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use crate::config::located::LocatedError;
pub use crate::model::record::{Direction, MetricSpec};

pub use env::lab_variables;
pub use file::{Known, load_all};
pub use select::select;

/// The manifest every suite directory holds.
pub const MANIFEST: &str = "suite.toml";

/// A validated suite.
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub description: Option<String>,
    /// The suite's directory on the machine running metalab.
    pub dir: PathBuf,
    /// The VMs it needs, as named in the Vagrantfile.
    pub vms: Vec<String>,
    pub setup: Vec<Step>,
    pub tests: Vec<Test>,
    pub benchmarks: Vec<Benchmark>,
    pub teardown: Vec<Step>,
    pub artifacts: Vec<Artifact>,
    /// Start from VMs put back to their state right after boot (the default), rather than as
    /// the previous suite left them.
    pub pristine: bool,
    /// Container images loaded into each of its VMs before its setup (`images/<name>/`).
    pub images: Vec<String>,
    /// Setup and teardown steps of different VMs run side by side, each VM's in their order
    /// (`side_by_side = true`); by default every step waits for the one before.
    pub side_by_side: bool,
}

/// A command run in one VM, from the suite's directory, as root.
#[derive(Debug, Clone)]
pub struct Step {
    pub vm: String,
    pub run: String,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Test {
    pub name: String,
    /// The 1-based line of its `name` in the suite file, for annotations that point at it.
    pub line: usize,
    pub step: Step,
    pub expect: Expect,
    /// Runs again after a failure this many times; a later pass is reported as flaky.
    pub retries: u32,
}

/// What a test's command must do to pass.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The exit status. Default 0.
    pub exit: i32,
    /// A regex the output (stdout and stderr) must match.
    pub output: Option<Regex>,
    /// A regex the output must not match.
    pub no_output: Option<Regex>,
}

#[derive(Debug, Clone)]
pub struct Benchmark {
    pub name: String,
    /// The 1-based line of its `name` in the suite file.
    pub line: usize,
    pub step: Step,
    /// Runs whose samples are thrown away (caches, ARP, TCP slow start).
    pub warmup: u32,
    /// Runs whose samples count.
    pub repeats: u32,
    pub metrics: Vec<Metric>,
}

/// One number read from a benchmark's output, and how.
#[derive(Debug, Clone)]
pub struct Metric {
    pub spec: MetricSpec,
    pub source: MetricSource,
    /// Multiplies the number read, e.g. 1e-9 to turn bits/s into Gbit/s.
    pub scale: f64,
}

#[derive(Debug, Clone)]
pub enum MetricSource {
    /// The first capture group of a regex over stdout.
    Regex(Regex),
    /// A JSON pointer (RFC 6901) into stdout parsed as JSON, e.g. `/end/sum_received/bits_per_second`.
    JsonPointer(String),
}

#[derive(Debug, Clone)]
pub struct Artifact {
    pub vm: String,
    /// An absolute path inside the VM; a directory is collected whole.
    pub path: String,
}

impl Metric {
    /// Reads the metric from a command's stdout.
    pub fn read(&self, stdout: &str) -> Result<f64, String> {
        let raw = match &self.source {
            MetricSource::Regex(re) => {
                let caps = re
                    .captures(stdout)
                    .ok_or_else(|| format!("regex `{re}` did not match the output"))?;
                let text = caps.get(1).map_or("", |m| m.as_str());
                text.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("regex `{re}` captured `{text}`, which is not a number"))?
            }
            MetricSource::JsonPointer(ptr) => {
                let json: serde_json::Value = serde_json::from_str(stdout)
                    .map_err(|e| format!("output is not JSON ({e})"))?;
                json.pointer(ptr)
                    .and_then(serde_json::Value::as_f64)
                    .ok_or_else(|| format!("no number at JSON pointer `{ptr}`"))?
            }
        };
        Ok(raw * self.scale)
    }
}

/// Why suites could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Located(#[from] LocatedError),
    #[error("no suites in {0} (each suite is a directory holding a {MANIFEST})")]
    Empty(PathBuf),
    #[error(
        "{}: `{name}` is not a valid suite name: use letters, digits, '-', '_' and '.' \
         (suite names become file names and shell words); rename the directory",
        crate::config::located::shown_path(dir).display()
    )]
    BadName { dir: PathBuf, name: String },
}

impl SuiteError {
    pub fn read(path: &Path, source: std::io::Error) -> SuiteError {
        SuiteError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}
