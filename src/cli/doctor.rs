//! `metalab doctor`.

use std::path::Path;

use console::style;

use super::Failure;
use crate::config::Config;
use crate::doctor::{self, Verdict};
use crate::exit::Status;
use crate::state::StateDir;
use crate::transport::local::Local;

pub async fn doctor(config_path: Option<&Path>) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    // Doctor must work even when the lab's config is broken or absent: it then skips the box.
    let config = match config_path {
        Some(p) => Some(p.to_path_buf()),
        None => std::env::current_dir()
            .ok()
            .and_then(|d| Config::discover(&d).ok()),
    }
    .and_then(|p| Config::load(&p).ok());
    if let Some(c) = &config {
        refresh_accel(&state, c).await;
    }
    let checks = doctor::run(&Local, &state, config.as_ref()).await;
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
    if status != Status::Passed {
        println!(
            "\nSomething is missing: `scripts/setup-host` installs and starts what metalab needs."
        );
    }
    Ok(status)
}

/// Doctor re-probes the accelerator, so a host whose KVM got fixed is noticed.
async fn refresh_accel(state: &StateDir, config: &Config) {
    let recipe = crate::boxes::Recipe::new(&config.box_recipe);
    if let Ok(Some(b)) = recipe.cached(state) {
        let kernel = b.registered_dir(&state.vagrant_home()).join("vmlinuz");
        if kernel.is_file() {
            crate::accel::probe_and_cache(state, &kernel).await;
        }
    }
}
