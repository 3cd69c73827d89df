//! Loading a lab for a command: the config, the Vagrantfile's machines, the suites. Every
//! problem found here is bad input (exit 2) and nothing has been started yet.

use std::path::Path;
use std::time::Duration;

use super::Failure;
use crate::config::{Config, ConfigError};
use crate::exit::Status;
use crate::history::Location;
use crate::host::subnet;
use crate::state::StateDir;
use crate::suite::{self, Suite, SuiteError};
use crate::transport::local::Local;
use crate::untrusted::{self, TrustedLab};
use crate::vagrant::Project;
use crate::vagrant::describe::LabDescription;

/// A loaded, validated lab.
pub struct Lab {
    pub config: Config,
    pub state: StateDir,
    /// The machines the Vagrantfile defines, in its order.
    pub machines: Vec<String>,
    /// What Vagrant makes of each of them: box, networks, provisioners.
    pub description: LabDescription,
    pub suites: Vec<Suite>,
    /// For an untrusted run: where the lab definition came from, and what of the change's
    /// suites was left out.
    pub untrusted: Option<UntrustedLab>,
    /// The benchmark history: `METALAB_HISTORY`, else `[history]`, else the default file.
    pub history: Location,
}

/// The lab of an untrusted run, beyond what every lab has.
pub struct UntrustedLab {
    /// The trusted lab definition (its scratch space lives as long as this).
    pub trusted: TrustedLab,
    /// Entries of the change's suites that were not copied: links, devices and the like.
    pub skipped: Vec<String>,
}

pub async fn load(config: Option<&Path>) -> Result<Lab, Failure> {
    let config = Config::find(config).map_err(config_failure)?;
    loaded(config, None).await
}

/// The lab of an untrusted run of the change in the current directory: the lab definition from
/// `lab_from` (a directory or a git ref, see [`TrustedLab::fetch`]); the change's suites, copied
/// inert; the artifacts written under the change's directory (a CI workspace), refused when a
/// link of the change's is on their way. The change's own `metalab.toml`, Vagrantfile and box
/// recipe are never read.
pub async fn load_untrusted(lab_from: &str) -> Result<Lab, Failure> {
    let bad = |e: crate::untrusted::UntrustedError| Failure::new(Status::BadInput, e.to_string());
    let change = std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .map_err(|e| Failure::new(Status::InfraError, e.to_string()))?;
    let state = StateDir::from_env();
    let trusted = TrustedLab::fetch(lab_from, &change, state.root()).map_err(bad)?;
    let mut config = Config::discover(&trusted.dir).map_err(config_failure)?;
    let rebase = |p: &Path| match p.strip_prefix(&config.root) {
        Ok(within) => change.join(within),
        Err(_) => p.to_path_buf(),
    };
    let change_suites = rebase(&config.suites_dir);
    let artifacts = rebase(&config.artifacts_dir);
    // A history file named inside the lab is the change's copy; a server stays as it is.
    let history = match config.history.take() {
        Some(Location::File(p)) => Some(Location::File(rebase(&p))),
        server => server,
    };
    let history_file = history
        .as_ref()
        .and_then(Location::file)
        .map(Path::to_path_buf);
    for written in [Some(&artifacts), history_file.as_ref()]
        .into_iter()
        .flatten()
    {
        untrusted::refuse_links(&change, written).map_err(bad)?;
    }
    let suites = trusted.copy_suites(&change_suites).map_err(bad)?;
    config.suites_dir = suites.dir;
    config.artifacts_dir = artifacts;
    config.history = history;
    loaded(
        config,
        Some(UntrustedLab {
            trusted,
            skipped: suites.skipped,
        }),
    )
    .await
}

async fn loaded(config: Config, untrusted: Option<UntrustedLab>) -> Result<Lab, Failure> {
    let state = StateDir::from_env();
    let history = crate::history::location(config.history.as_ref(), &state)
        .map_err(|e| Failure::new(Status::BadInput, e))?;
    let description = describe(&config, &state).await?;
    let machines = description.names();
    let images = crate::images::available(&config.images_dir);
    let known = suite::Known {
        vms: &machines,
        images: &images,
    };
    let suites = suite::load_all(&config.suites_dir, &known).map_err(|e| match e {
        SuiteError::Read { .. } => Failure::new(Status::BadInput, e.to_string()),
        other => Failure::new(Status::BadInput, other.to_string()),
    })?;
    Ok(Lab {
        config,
        state,
        machines,
        description,
        suites,
        untrusted,
        history,
    })
}

fn config_failure(e: ConfigError) -> Failure {
    Failure::new(Status::BadInput, e.to_string())
}

/// What the Vagrantfile defines, as Vagrant resolves it (see [`crate::vagrant::describe`]).
/// Described with `METALAB_SUBNET` set to [`subnet::PROBE`], so that a network which follows
/// it is told apart from one the lab pins.
async fn describe(config: &Config, state: &StateDir) -> Result<LabDescription, Failure> {
    if !config.vagrantfile.is_file() {
        return Err(Failure::new(
            Status::BadInput,
            format!("{}: no such Vagrantfile", config.vagrantfile.display()),
        ));
    }
    if which::which("vagrant").is_err() {
        return Err(Failure::new(
            Status::InfraError,
            "vagrant is not installed: run scripts/setup-host (or see `metalab doctor`)",
        ));
    }
    let scratch =
        tempfile::tempdir().map_err(|e| Failure::new(Status::InfraError, e.to_string()))?;
    // Loading a lab leaves the state directory as it was (bad input found after this starts
    // nothing): with no Vagrant home there yet, `vagrant status` would make one, so it gets a
    // scratch one, which has the same boxes registered in it: none.
    let vagrant_home = match state.vagrant_home() {
        home if home.is_dir() => home,
        _ => scratch.path().join("vagrant.d"),
    };
    let project = Project {
        dir: config
            .vagrantfile
            .parent()
            .unwrap_or(Path::new("/"))
            .display()
            .to_string(),
        vagrantfile: config
            .vagrantfile
            .file_name()
            .map_or("Vagrantfile".into(), |n| n.to_string_lossy().into_owned()),
        wrapper: scratch.path().join("Vagrantfile").display().to_string(),
        dotfile_dir: scratch.path().display().to_string(),
        vagrant_home: vagrant_home.display().to_string(),
        vars: vec![
            ("METALAB_HOME".into(), state.root().display().to_string()),
            ("METALAB_SUBNET".into(), subnet::PROBE.into()),
        ],
    };
    project
        .install_wrapper(&Local)
        .await
        .map_err(|e| Failure::new(Status::InfraError, format!("{e:#}")))?;
    let described = tokio::time::timeout(Duration::from_secs(120), project.describe(&Local))
        .await
        .map_err(|_| {
            Failure::new(
                Status::InfraError,
                "`vagrant status` did not answer within 120 s",
            )
        })?
        .map_err(|e| {
            Failure::new(
                Status::BadInput,
                format!("{}: {e}", config.vagrantfile.display()),
            )
        })?;
    if described.machines.is_empty() {
        return Err(Failure::new(
            Status::BadInput,
            format!("{} defines no machines", config.vagrantfile.display()),
        ));
    }
    Ok(described)
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print the suites as JSON: each with its VMs, tests and benchmarks (and their metrics).
    #[arg(long)]
    json: bool,
}

/// A suite as `list --json` prints it.
#[derive(serde::Serialize)]
struct ListedSuite<'a> {
    name: &'a str,
    description: Option<&'a str>,
    vms: &'a [String],
    tests: Vec<ListedEntry<'a>>,
    benchmarks: Vec<ListedEntry<'a>>,
}

#[derive(serde::Serialize)]
struct ListedEntry<'a> {
    name: &'a str,
    vm: &'a str,
    /// Its line in the suite's file.
    line: usize,
    /// A benchmark's metrics: name, unit, direction.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    metrics: Vec<&'a crate::model::record::MetricSpec>,
}

/// `metalab list`.
pub async fn list(config: Option<&Path>, args: ListArgs) -> Result<Status, Failure> {
    let lab = load(config).await?;
    if args.json {
        let suites: Vec<ListedSuite> = lab
            .suites
            .iter()
            .map(|s| ListedSuite {
                name: &s.name,
                description: s.description.as_deref(),
                vms: &s.vms,
                tests: s
                    .tests
                    .iter()
                    .map(|t| ListedEntry {
                        name: &t.name,
                        vm: &t.step.vm,
                        line: t.line,
                        metrics: Vec::new(),
                    })
                    .collect(),
                benchmarks: s
                    .benchmarks
                    .iter()
                    .map(|b| ListedEntry {
                        name: &b.name,
                        vm: &b.step.vm,
                        line: b.line,
                        metrics: b.metrics.iter().map(|m| &m.spec).collect(),
                    })
                    .collect(),
            })
            .collect();
        let json = serde_json::json!({ "machines": lab.machines, "suites": suites });
        super::print(&(serde_json::to_string_pretty(&json).expect("serializes") + "\n"));
        return Ok(Status::Passed);
    }
    println!(
        "Vagrantfile {} defines: {}",
        lab.config.vagrantfile.display(),
        lab.machines.join(", ")
    );
    for s in &lab.suites {
        println!("\n{}  (VMs: {})", s.name, s.vms.join(", "));
        if let Some(d) = &s.description {
            println!("  {d}");
        }
        for t in &s.tests {
            println!("  test       {:<28} on {}", t.name, t.step.vm);
        }
        for b in &s.benchmarks {
            let metrics: Vec<String> = b
                .metrics
                .iter()
                .map(|m| format!("{} [{}]", m.spec.name, m.spec.unit))
                .collect();
            println!(
                "  benchmark  {:<28} on {}: {} x{}",
                b.name,
                b.step.vm,
                metrics.join(", "),
                b.repeats
            );
        }
    }
    Ok(Status::Passed)
}
