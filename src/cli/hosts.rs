//! `metalab hosts`: the Metal project's metalab devices, with age, state and run id.

use std::path::Path;

use chrono::Utc;

use super::Failure;
use crate::config::Config;
use crate::exit::Status;
use crate::provider::metal;

pub async fn hosts(config: Option<&Path>) -> Result<Status, Failure> {
    let bad = |m: String| Failure::new(Status::BadInput, m);
    let config = Config::find(config).map_err(|e| bad(e.to_string()))?;
    let Some(m) = &config.metal else {
        return Err(bad(format!(
            "{} has no [provider.metal]: `metalab hosts` lists Metal devices",
            config.path.display()
        )));
    };
    let token = metal::token(m).map_err(|e| bad(e.to_string()))?;
    let client =
        metal::client(m, token).map_err(|e| Failure::new(Status::InfraError, format!("{e:#}")))?;
    let listed = metal::devices(&client).await.map_err(Failure::from_error)?;
    let devices = listed.items;
    if devices.is_empty() && listed.unreadable.is_empty() {
        println!("no metalab devices in project {}", m.project);
        return Ok(Status::Passed);
    }
    println!(
        "{:<36} {:<14} {:>7} {:<22} {:<6} terminates",
        "hostname", "state", "age", "run", "locked"
    );
    for d in devices {
        // Without `created_at` the age is unknown.
        let age = d.created_at.map_or("?".to_string(), |t| {
            crate::report::summary::human((Utc::now() - t).to_std().unwrap_or_default())
        });
        let run = d
            .tags
            .iter()
            .find_map(|t| t.strip_prefix("run:"))
            .unwrap_or("-")
            .to_string();
        let ends = d.termination_time.map_or("-".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M UTC").to_string()
        });
        println!(
            "{:<36} {:<14} {:>7} {:<22} {:<6} {ends}",
            d.hostname,
            d.state.to_string(),
            age,
            run,
            if d.locked { "yes" } else { "no" }
        );
    }
    for odd in &listed.unreadable {
        println!("{:<36} {odd}", odd.text("hostname").unwrap_or("?"));
    }
    Ok(Status::Passed)
}
