//! Loading a lab for a command: the config, the Vagrantfile's machines, the suites. Every
//! problem found here is bad input (exit 2) and nothing has been started yet.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Failure;
use crate::config::{Config, ConfigError};
use crate::exit::Status;
use crate::state::StateDir;
use crate::suite::{self, Suite, SuiteError};
use crate::transport::local::Local;
use crate::vagrant::Project;

/// A loaded, validated lab.
pub struct Lab {
    pub config: Config,
    pub state: StateDir,
    /// The machines the Vagrantfile defines, in its order.
    pub machines: Vec<String>,
    pub suites: Vec<Suite>,
}

pub async fn load(config: Option<&Path>) -> Result<Lab, Failure> {
    let path = match config {
        Some(p) => p.to_path_buf(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| Failure::new(Status::BadInput, e.to_string()))?;
            Config::discover(&cwd).map_err(config_failure)?
        }
    };
    let config = Config::load(&path).map_err(config_failure)?;
    let state = StateDir::from_env();
    let machines = machines(&config, &state).await?;
    let suites = suite::load_all(&config.suites_dir, &machines).map_err(|e| match e {
        SuiteError::Read { .. } => Failure::new(Status::BadInput, e.to_string()),
        other => Failure::new(Status::BadInput, other.to_string()),
    })?;
    Ok(Lab {
        config,
        state,
        machines,
        suites,
    })
}

fn config_failure(e: ConfigError) -> Failure {
    Failure::new(Status::BadInput, e.to_string())
}

/// The Vagrantfile's machines, from `vagrant status`; cached by the Vagrantfile's content because
/// Vagrant takes a few seconds to start.
async fn machines(config: &Config, state: &StateDir) -> Result<Vec<String>, Failure> {
    let text = std::fs::read(&config.vagrantfile).map_err(|e| {
        Failure::new(
            Status::BadInput,
            format!("cannot read {}: {e}", config.vagrantfile.display()),
        )
    })?;
    let hash = hex::encode(Sha256::digest(&text));
    let cache = state
        .root()
        .join("cache")
        .join("vagrantfile-machines")
        .join(format!("{}.json", &hash[..16]));
    if let Some(names) = std::fs::read(&cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
    {
        return Ok(names);
    }
    if which::which("vagrant").is_err() {
        return Err(Failure::new(
            Status::InfraError,
            "vagrant is not installed: run scripts/setup-host (or see `metalab doctor`)",
        ));
    }
    let scratch =
        tempfile::tempdir().map_err(|e| Failure::new(Status::InfraError, e.to_string()))?;
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
        dotfile_dir: scratch.path().display().to_string(),
        vagrant_home: state.vagrant_home().display().to_string(),
        vars: vec![("METALAB_HOME".into(), state.root().display().to_string())],
    };
    let names = tokio::time::timeout(Duration::from_secs(120), project.machine_names(&Local))
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
    if names.is_empty() {
        return Err(Failure::new(
            Status::BadInput,
            format!("{} defines no machines", config.vagrantfile.display()),
        ));
    }
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(&cache, serde_json::to_vec(&names).unwrap_or_default());
    }
    Ok(names)
}

/// `metalab list`.
pub async fn list(config: Option<&Path>) -> Result<Status, Failure> {
    let lab = load(config).await?;
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
