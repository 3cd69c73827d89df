//! Where hosts come from. A provider hands out [`Host`]s to run the lab on and takes them back;
//! everything after that (prepare, Vagrant, suites) is the same pipeline for every provider.

pub mod ec2;
pub mod found;
pub mod local;
pub mod metal;
pub mod ssh;

use async_trait::async_trait;

pub use crate::host::Host;
use crate::ids::RunId;
use crate::journal::{EntryId, Resource};

/// What a provider may do to the run while it works: journal what it creates, before it does,
/// and report progress.
pub trait RunHooks: Send + Sync {
    /// Records a resource in the run journal before it is created, durably.
    fn journal(&self, resource: Resource) -> anyhow::Result<EntryId>;
    /// Marks a journaled resource as removed.
    fn journal_done(&self, entry: EntryId);
    /// Reports progress of the provider's `stage`: the line is labelled with that phase.
    fn progress(&self, stage: Stage, message: String);
}

/// Which of its two phases a provider reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// [`Provider::acquire`].
    Acquire,
    /// [`Provider::release`].
    Release,
}

/// A problem with what the user gave (config, credentials): exit code 2, not 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

#[async_trait]
pub trait Provider: Send + Sync {
    /// What the run is going to run on, for the first line of its output.
    fn describe(&self) -> String;

    /// Gets up to `wanted` hosts for the run (at least one, or an error). Whatever it creates is
    /// journaled first, and released by [`Provider::release`], which the engine calls whatever
    /// happens, also after a failed or interrupted acquire.
    async fn acquire(
        &self,
        run: &RunId,
        wanted: usize,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<Vec<Host>>;

    /// Gives the hosts back. Idempotent: releasing what is already gone succeeds.
    async fn release(&self, run: &RunId, hooks: &dyn RunHooks) -> anyhow::Result<()>;

    /// How many hosts the provider would like to spread the suites over.
    fn lanes(&self) -> usize {
        1
    }
}

/// Removes a run's private key file and its public half: nothing may log in with it after the
/// run. What cannot be removed is added to `left`.
pub(crate) fn remove_key_files(private: &std::path::Path, left: &mut Vec<String>) {
    for path in [private.with_extension("pub"), private.to_path_buf()] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => left.push(format!("the run's key file {}: {e}", path.display())),
        }
    }
}

/// "10m", "1h 30m 5s": a setting or an age, to the second.
pub(crate) fn whole_seconds(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}

/// The provider the config names.
pub fn from_config(
    config: &crate::config::Config,
    state: &crate::state::StateDir,
) -> anyhow::Result<Box<dyn Provider>> {
    use crate::config::ProviderKind;
    Ok(match config.provider {
        ProviderKind::Local => Box::new(local::LocalProvider {
            state: state.clone(),
        }),
        ProviderKind::Ssh => Box::new(ssh::SshProvider::new(
            config.ssh_hosts.clone(),
            &config.root,
        )),
        ProviderKind::Metal => {
            let metal = config
                .metal
                .clone()
                .ok_or_else(|| InputError("the metal provider needs [provider.metal]".into()))?;
            let token = metal::token(&metal)?;
            Box::new(metal::MetalProvider::new(
                metal,
                token,
                &config.root,
                state.clone(),
            )?)
        }
        ProviderKind::Ec2 => {
            let ec2 = config
                .ec2
                .clone()
                .ok_or_else(|| InputError("the ec2 provider needs [provider.ec2]".into()))?;
            Box::new(ec2::Ec2Provider::new(
                ec2,
                None,
                &config.root,
                state.clone(),
            ))
        }
    })
}
