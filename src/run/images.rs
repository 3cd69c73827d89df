//! The images phase: the container images the run's suites name, built on this machine once per
//! recipe (or found in the cache) before any host is acquired, so that a broken recipe costs no
//! host. Loading them into the VMs is each suite's business ([`super::suites`]).

use std::path::Path;

use super::log::LogSink;
use super::run_phase;
use crate::budget::Budget;
use crate::config::Config;
use crate::images::{BuiltImage, ImageRecipe};
use crate::model::event::{EventKind, Events, Phase};
use crate::state::StateDir;
use crate::suite::Suite;

/// What building the images needs of its run.
pub(super) struct ImagesEnv<'a> {
    pub events: &'a Events,
    pub artifacts: &'a Path,
    pub config: &'a Config,
    pub state: &'a StateDir,
    pub budget: &'a Budget,
}

/// Every image the suites name, each once, built or found in the cache. No phase at all when
/// no suite names one.
pub(super) async fn build(
    env: &ImagesEnv<'_>,
    suites: &[Suite],
) -> anyhow::Result<Vec<BuiltImage>> {
    let mut names: Vec<&str> = suites
        .iter()
        .flat_map(|s| s.images.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let detail = names.join(", ");
    run_phase(
        env.events,
        env.artifacts,
        Phase::Images,
        "",
        &detail,
        |log| async move {
            let mut sink = LogSink::append(&log, env.budget);
            let mut built = Vec::new();
            for name in names {
                let recipe = ImageRecipe::new(&env.config.images_dir, name);
                built.push(recipe.ensure_built(env.state, &mut sink).await?);
            }
            let infos = built.iter().map(BuiltImage::info).collect();
            env.events.emit(EventKind::ImagesReady(infos));
            Ok(built)
        },
    )
    .await
}
