//! `metalab box build`.

use std::path::Path;

use clap::Subcommand;

use super::Failure;
use crate::boxes::Recipe;
use crate::config::Config;
use crate::exit::Status;
use crate::run::log::LogSink;
use crate::state::StateDir;
use crate::transport::local::Local;

#[derive(Subcommand, Debug)]
pub enum BoxCommand {
    /// Build the base box from its recipe (boxes/<name>/build.sh) and register it with Vagrant.
    ///
    /// Offline, from Debian packages with debootstrap. Cached by the recipe's hash: when the
    /// recipe did not change, this returns at once. Needs root.
    Build,
}

pub async fn run(config: Option<&Path>, cmd: BoxCommand) -> Result<Status, Failure> {
    let BoxCommand::Build = cmd;
    let path = match config {
        Some(p) => p.to_path_buf(),
        None => Config::discover(&std::env::current_dir().unwrap_or_default())
            .map_err(|e| Failure::new(Status::BadInput, e.to_string()))?,
    };
    let config = Config::load(&path).map_err(|e| Failure::new(Status::BadInput, e.to_string()))?;
    let state = StateDir::from_env();
    let recipe = Recipe::new(&config.box_recipe);
    let infra = |e: anyhow::Error| Failure::new(Status::InfraError, format!("{e:#}"));
    let log = state.boxes().join("build.log");
    let mut sink = LogSink::append(&log).on_line(|l| eprintln!("{l}"));
    let built = recipe
        .ensure_built(&state, &mut sink)
        .await
        .map_err(infra)?;
    built
        .register(&Local, &state.vagrant_home(), &mut sink)
        .await
        .map_err(infra)?;
    println!(
        "{} {} (sha256 {})",
        built.info.name, built.info.version, built.info.sha256
    );
    println!("file: {}", built.path.display());
    Ok(Status::Passed)
}
