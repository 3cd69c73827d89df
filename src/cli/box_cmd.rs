//! `metalab box build` and `metalab box prune`.

use std::path::Path;

use clap::Subcommand;

use super::{Failure, lab_hosts};
use crate::boxes::Recipe;
use crate::budget::Budget;
use crate::config::Config;
use crate::exit::Status;
use crate::host::Host;
use crate::host::box_prune::{self as prune, Verdict};
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
    /// Remove old versions of the box from this machine and the ssh provider's hosts: the box file,
    /// Vagrant's registration and the base volume in the `metalab` storage pool (together about
    /// 1 GB per version); and this machine's builds of container images whose recipe changed or
    /// is gone.
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
    let config = Config::find(config).map_err(|e| Failure::new(Status::BadInput, e.to_string()))?;
    let Some(recipe) = config.box_recipe.as_deref().map(Recipe::new) else {
        return Err(Failure::new(
            Status::BadInput,
            format!(
                "the lab in {} has no box recipe (`lab.box`): its Vagrantfile's box is used as Vagrant finds it",
                config.root.display()
            ),
        ));
    };
    let state = StateDir::from_env();
    let result = match cmd {
        BoxCommand::Build => build(&recipe, &state, &Budget::new(config.outputs)).await,
        BoxCommand::Prune { keep, dry_run } => prune(&config, &recipe, &state, keep, dry_run).await,
    };
    result.map_err(|e| Failure::new(Status::InfraError, format!("{e:#}")))
}

async fn build(recipe: &Recipe, state: &StateDir, budget: &Budget) -> anyhow::Result<Status> {
    let log = state.box_build_log();
    let mut sink = LogSink::append(&log, budget).on_line(|l| eprintln!("{l}"));
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
    config: &Config,
    recipe: &Recipe,
    state: &StateDir,
    keep: usize,
    dry_run: bool,
) -> anyhow::Result<Status> {
    // A build holds this lock while it writes a version; none starts while versions go.
    let _lock = FileLock::acquire(state.lock("box-build")).await?;
    let name = recipe.box_name();
    let current = recipe.cached(state)?.map(|b| b.info.version);
    let mut status = Status::Passed;
    for host in lab_hosts::all(Some(config), state).await {
        let pruned = match host {
            Ok(host) => prune_host(&host, &name, current.as_deref(), keep, dry_run).await,
            Err(e) => Err(e),
        };
        if let Err(e) = pruned {
            eprintln!("metalab: error: {e:#}");
            status = Status::InfraError;
        }
    }
    if let Err(e) = prune_images(config, state, keep, dry_run).await {
        eprintln!("metalab: error: {e:#}");
        status = Status::InfraError;
    }
    Ok(status)
}

/// Removes the image builds no current recipe makes, each checked gone afterwards.
async fn prune_images(
    config: &Config,
    state: &StateDir,
    keep: usize,
    dry_run: bool,
) -> anyhow::Result<()> {
    let stale = crate::images::stale_builds(state, &config.images_dir, keep);
    if stale.is_empty() {
        return Ok(());
    }
    println!(
        "container images built here ({}):",
        state.images().display()
    );
    let mut failed = Vec::new();
    for dir in stale {
        let size = crate::files::disk_usage(&dir);
        let shown = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if dry_run {
            println!("  {shown}  would remove ({})", megabytes(size));
            continue;
        }
        // Said removed only when it is gone.
        let _ = std::fs::remove_dir_all(&dir);
        match dir.exists() {
            false => println!("  {shown}  removed ({})", megabytes(size)),
            true => {
                println!("  {shown}  NOT removed: still there");
                failed.push(shown);
            }
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => anyhow::bail!("image builds not removed: {}", failed.join(", ")),
    }
}

async fn prune_host(
    host: &Host,
    name: &str,
    current: Option<&str>,
    keep: usize,
    dry_run: bool,
) -> anyhow::Result<()> {
    let versions = prune::inventory(host, name).await?;
    let users = crate::libvirt::definitions(host.transport.as_ref()).await?;
    let verdicts = prune::plan(name, &versions, current, &users, keep);
    if versions.is_empty() {
        println!("{}: no versions of {name}", host.name);
        return Ok(());
    }
    println!("{}:", host.name);
    let mut freed = 0;
    for (v, verdict) in versions.iter().zip(&verdicts) {
        let line = match verdict {
            Verdict::Keep(why) => format!("kept ({why})"),
            Verdict::Remove => {
                let size = prune::disk_usage(host, v).await?;
                if !dry_run {
                    prune::remove(host, name, v).await?;
                    freed += size;
                }
                let done = if dry_run { "would remove" } else { "removed" };
                format!("{done} ({}; {})", prune::places(v), megabytes(size))
            }
        };
        println!("  {name} {}  {line}", v.version);
    }
    let removed = verdicts.contains(&Verdict::Remove);
    if !removed {
        println!("  nothing to remove");
    } else if !dry_run {
        println!("  freed {}", megabytes(freed));
    }
    Ok(())
}

fn megabytes(n: u64) -> String {
    format!("{} MB", n / 1_000_000)
}
