//! `metalab doctor`.

use std::path::Path;

use console::style;

use super::Failure;
use crate::config::Config;
use crate::doctor::{self, Verdict};
use crate::exit::Status;
use crate::provider::local::LocalProvider;
use crate::state::StateDir;

pub async fn doctor(config_path: Option<&Path>) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    // Doctor must work even when the lab's config is broken or absent: it then skips the box.
    let config = Config::find(config_path).ok();
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
    if status != Status::Passed {
        println!(
            "\nSomething is missing: `scripts/setup-host` installs and starts what metalab needs."
        );
    }
    Ok(status)
}
