//! Where hosts come from. A provider hands out a [`Host`] to run the lab on and takes it back;
//! everything after that (prepare, Vagrant, suites) is the same pipeline for every provider.

pub mod local;

use std::sync::Arc;

use async_trait::async_trait;

use crate::ids::RunId;
use crate::transport::Transport;

/// A machine the lab runs on, reachable through its transport.
#[derive(Clone)]
pub struct Host {
    /// For messages and reports: "local", "lab3.example.net".
    pub name: String,
    pub transport: Arc<dyn Transport>,
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Gets a host for the run. Whatever it creates is released by [`Provider::release`], which
    /// the engine registers before calling this.
    async fn acquire(&self, run: &RunId) -> anyhow::Result<Host>;

    /// Gives the host back. Idempotent: releasing what is already gone succeeds.
    async fn release(&self, run: &RunId) -> anyhow::Result<()>;
}
