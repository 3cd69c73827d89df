//! `metalab box build` and `metalab box prune`.

use std::path::Path;

use clap::Subcommand;

use super::Failure;
use crate::boxes::Recipe;
use crate::boxes::prune::{self, Verdict};
use crate::config::Config;
use crate::exit::Status;
use crate::run::log::LogSink;
use crate::state::{FileLock, StateDir};
use crate::transport::local::Local;

#[derive(Subcommand, Debug)]
pub enum BoxCommand {
    /// Build the base box from its recipe (boxes/<name>/build.sh) and register it with Vagrant.
    ///
    /// Offline, from Debian packages with debootstrap. Cached by the recipe's hash: when the
    /// recipe did not change, this returns at once. Needs root.
    Build,
    /// Remove old versions of the box from this machine: the build cache, Vagrant's registration
    /// and the base volume in the `metalab` storage pool (together about 1 GB per version).
    ///
    /// Every change to the box recipe builds a new version and leaves the old one behind. Kept:
    /// the version the current recipe built, any version a libvirt domain or volume still uses
    /// (a lab that is up, or one left for `metalab reap`), and the --keep newest others. A CI
    /// machine that builds several branches with different recipes can keep a few with --keep,
    /// so that switching branches does not rebuild.
    Prune {
        /// Also keep this many of the newest other versions.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep: usize,
        /// List what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(config: Option<&Path>, cmd: BoxCommand) -> Result<Status, Failure> {
    let path = match config {
        Some(p) => p.to_path_buf(),
        None => Config::discover(&std::env::current_dir().unwrap_or_default())
            .map_err(|e| Failure::new(Status::BadInput, e.to_string()))?,
    };
    let config = Config::load(&path).map_err(|e| Failure::new(Status::BadInput, e.to_string()))?;
    let recipe = Recipe::new(&config.box_recipe);
    let state = StateDir::from_env();
    let result = match cmd {
        BoxCommand::Build => build(&recipe, &state).await,
        BoxCommand::Prune { keep, dry_run } => prune(&recipe, &state, keep, dry_run).await,
    };
    result.map_err(|e| Failure::new(Status::InfraError, format!("{e:#}")))
}

async fn build(recipe: &Recipe, state: &StateDir) -> anyhow::Result<Status> {
    let log = state.boxes().join("build.log");
    let mut sink = LogSink::append(&log).on_line(|l| eprintln!("{l}"));
    let built = recipe.ensure_built(state, &mut sink).await?;
    built
        .register(&Local, &state.vagrant_home(), &mut sink)
        .await?;
    println!(
        "{} {} (sha256 {})",
        built.info.name, built.info.version, built.info.sha256
    );
    println!("file: {}", built.path.display());
    Ok(Status::Passed)
}

async fn prune(
    recipe: &Recipe,
    state: &StateDir,
    keep: usize,
    dry_run: bool,
) -> anyhow::Result<Status> {
    // A build holds this lock while it writes a version; none starts while versions go.
    let _lock = FileLock::acquire(state.lock("box-build")).await?;
    let name = recipe.box_name();
    let current = recipe.cached(state)?.map(|b| b.info.version);
    let versions = prune::inventory(&Local, state, &name).await?;
    let users = crate::libvirt::definitions(&Local).await?;
    let verdicts = prune::plan(&versions, current.as_deref(), &users, keep);
    let mut freed = 0;
    for (v, verdict) in versions.iter().zip(&verdicts) {
        let line = match verdict {
            Verdict::Keep(why) => format!("kept ({why})"),
            Verdict::Remove if dry_run => format!(
                "would remove ({}; {})",
                prune::places(v),
                megabytes(prune::disk_usage(v))
            ),
            Verdict::Remove => {
                let size = prune::disk_usage(v);
                prune::remove(&Local, state, &name, v).await?;
                freed += size;
                format!("removed ({}; {})", prune::places(v), megabytes(size))
            }
        };
        println!("{name} {}  {line}", v.version);
    }
    if versions.is_empty() {
        println!("{name}: no versions on this machine");
    } else if !dry_run {
        println!("freed {}", megabytes(freed));
    }
    Ok(Status::Passed)
}

fn megabytes(n: u64) -> String {
    format!("{} MB", n / 1_000_000)
}
