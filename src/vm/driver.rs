//! The driver interface of a lab's VMs, in the manner of lima's `Driver` and kubetest2's
//! `Deployer`: the lifecycle (up, provision, destroy), snapshots (take, revert), how to reach a
//! machine, and what the host can tell of one that no longer answers.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;

use crate::libvirt::Leftovers;
use crate::transport::OutputSink;
use crate::transport::ssh::SshTarget;

/// A future that resolves when teardown must hurry (a second signal).
pub type Hurry = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a destroy went.
pub struct Destroyed {
    /// What the driver's own destroy left and the sweep by name removed.
    pub swept: Leftovers,
    /// Set when the driver's own destroy failed or was cut short.
    pub problem: Option<String>,
}

#[async_trait]
pub trait Driver: Send + Sync {
    /// Creates and boots the machines, and returns once each answers SSH. An error says why, in
    /// the driver's own last words.
    async fn up(
        &self,
        vms: &[String],
        timeout: Duration,
        sink: &mut dyn OutputSink,
    ) -> anyhow::Result<()>;

    /// Runs the lab's provisioners on one machine. `Ok(Err(why))`: they ran and failed, which
    /// is the lab's own failure; `Err`: the host could not be reached.
    async fn provision(
        &self,
        vm: &str,
        timeout: Duration,
        sink: &mut dyn OutputSink,
    ) -> anyhow::Result<Result<(), String>>;

    /// How to reach each machine over SSH from the host, in the order asked for.
    async fn ssh_targets(&self, vms: &[String]) -> anyhow::Result<Vec<(String, SshTarget)>>;

    /// Takes a snapshot of a running machine, memory included.
    async fn snapshot(&self, vm: &str, name: &str) -> anyhow::Result<()>;

    /// Puts a running machine back to a snapshot; its SSH connections die.
    async fn revert(&self, vm: &str, name: &str) -> anyhow::Result<()>;

    /// Everything the lab made on the host, by name.
    async fn resources(&self) -> anyhow::Result<Leftovers>;

    /// What the host can tell of a machine, whether or not it still answers: its state and the
    /// end of its console.
    async fn diagnostics(&self, vm: &str) -> String;

    /// Destroys the machines and whatever else the lab made (cut short when `hurry` resolves),
    /// then proves nothing is left. Fails only if something is.
    async fn destroy(
        &self,
        timeout: Duration,
        sink: &mut dyn OutputSink,
        hurry: Hurry,
    ) -> anyhow::Result<Destroyed>;
}
