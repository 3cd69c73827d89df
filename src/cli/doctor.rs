//! `metalab doctor`.

use std::path::Path;

use console::style;

use super::Failure;
use crate::config::{Config, ConfigError};
use crate::doctor::{self, Verdict};
use crate::exit::Status;
use crate::provider::local::LocalProvider;
use crate::state::StateDir;

pub async fn doctor(config_path: Option<&Path>) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    // Doctor must work even when the lab's config is broken or absent: it then skips the box,
    // and says what is wrong with the file.
    let (config, broken) = match Config::find(config_path) {
        Ok(c) => (Some(c), None),
        Err(ConfigError::NotFound(_)) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let host = LocalProvider {
        state: state.clone(),
    }
    .host();
    let checks = doctor::run(&host, &state, config.as_ref()).await;
    let mut status = Status::Passed;
    for c in &checks {
        let mark = match c.verdict {
            Verdict::Ok => style("ok  ").green().bold(),
            Verdict::Warn => style("warn").yellow().bold(),
            Verdict::Missing => style("MISS").red().bold(),
        };
        println!("{mark} {:<20} {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("     {:<20} fix: {fix}", "");
        }
        if c.verdict == Verdict::Missing {
            status = Status::InfraError;
        }
    }
    if let Some(e) = &broken {
        println!("{} {:<20} {e}", style("BAD ").red().bold(), "metalab.toml");
        status = status.worst(Status::BadInput);
    }
    if checks.iter().any(|c| c.verdict == Verdict::Missing) {
        println!(
            "\nSomething is missing: `scripts/setup-host` installs and starts what metalab needs."
        );
    }
    Ok(status)
}
