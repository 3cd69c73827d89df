//! Where hosts come from. A provider hands out [`Host`]s to run the lab on and takes them back;
//! everything after that (prepare, Vagrant, suites) is the same pipeline for every provider.

pub mod local;
pub mod ssh;

use async_trait::async_trait;

pub use crate::host::Host;
use crate::ids::RunId;

#[async_trait]
pub trait Provider: Send + Sync {
    /// What the run is going to run on, for the first line of its output.
    fn describe(&self) -> String;

    /// Gets up to `wanted` hosts for the run (at least one, or an error). Whatever it creates is
    /// released by [`Provider::release`], which the engine calls whatever happens.
    async fn acquire(&self, run: &RunId, wanted: usize) -> anyhow::Result<Vec<Host>>;

    /// Gives the hosts back. Idempotent: releasing what is already gone succeeds.
    async fn release(&self, run: &RunId) -> anyhow::Result<()>;
}

/// The provider the config names.
pub fn from_config(
    config: &crate::config::Config,
    state: &crate::state::StateDir,
) -> Box<dyn Provider> {
    match config.provider {
        crate::config::ProviderKind::Local => Box::new(local::LocalProvider {
            state: state.clone(),
        }),
        crate::config::ProviderKind::Ssh => Box::new(ssh::SshProvider::new(
            config.ssh_hosts.clone(),
            &config.root,
        )),
    }
}
