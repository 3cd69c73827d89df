//! `metalab hosts`: the Metal project's metalab devices, or the EC2 region's metalab instances,
//! with age, state, run id and expiry.

use std::path::Path;

use chrono::Utc;

use super::Failure;
use crate::config::Config;
use crate::exit::Status;
use crate::provider::metal;

pub async fn hosts(config: Option<&Path>) -> Result<Status, Failure> {
    let bad = |m: String| Failure::new(Status::BadInput, m);
    let config = Config::find(config).map_err(|e| bad(e.to_string()))?;
    if let Some(e) = &config.ec2 {
        return ec2_instances(&config, e).await;
    }
    let Some(m) = &config.metal else {
        return Err(bad(format!(
            "{} has no [provider.metal] nor [provider.ec2]: `metalab hosts` lists Metal devices \
             and EC2 instances",
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

/// The region's instances that carry a run's tag.
async fn ec2_instances(config: &Config, e: &crate::config::Ec2Config) -> Result<Status, Failure> {
    use crate::ec2::{EXPIRES_TAG, RUN_TAG};
    let provider = crate::provider::ec2::Ec2Provider::new(
        e.clone(),
        None,
        &config.root,
        crate::state::StateDir::from_env(),
    );
    let instances = provider.instances().await.map_err(Failure::from_error)?;
    if instances.is_empty() {
        println!("no metalab instances in {}", e.region);
        return Ok(Status::Passed);
    }
    println!(
        "{:<36} {:<20} {:<14} {:<13} {:>7} {:<22} expires",
        "name", "id", "type", "state", "age", "run"
    );
    for i in instances {
        let age = i.launched.map_or("?".to_string(), |t| {
            crate::report::summary::human((Utc::now() - t).to_std().unwrap_or_default())
        });
        let tag = |k: &str| i.tags.get(k).cloned().unwrap_or_else(|| "-".into());
        println!(
            "{:<36} {:<20} {:<14} {:<13} {:>7} {:<22} {}",
            i.name,
            i.id,
            i.instance_type,
            i.state,
            age,
            tag(RUN_TAG),
            tag(EXPIRES_TAG)
        );
    }
    Ok(Status::Passed)
}
