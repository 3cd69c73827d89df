//! Machines of an SSH inventory (`[[provider.hosts]]` in metalab.toml): each run locks the hosts
//! it uses, so two runs never share one by accident, syncs the lab to them, and reaches their
//! VMs by jumping through the host's connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{Host, Provider, RunHooks};
use crate::config::SshHostConfig;
use crate::host::lock;
use crate::ids::RunId;
use crate::retry::Poll;
use crate::state::StateDir;
use crate::transport::reconnect::Reconnecting;
use crate::transport::ssh::{Held, HostKeyPolicy, SshSession, SshTarget};

/// How long to wait for a free host before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(600);

pub struct SshProvider {
    hosts: Vec<SshHostConfig>,
    /// The lab's directory name on each host (see [`StateDir::lab`]).
    lab_name: String,
    held: Mutex<Vec<(Held, Arc<SshSession>)>>,
}

impl SshProvider {
    pub fn new(hosts: Vec<SshHostConfig>, lab_root: &std::path::Path) -> SshProvider {
        SshProvider {
            hosts,
            lab_name: lab_name(lab_root),
            held: Mutex::new(Vec::new()),
        }
    }

    async fn try_host(&self, h: &SshHostConfig) -> anyhow::Result<Option<Host>> {
        let session =
            Arc::new(SshSession::connect(&target(h), &policy(h), Duration::from_secs(30)).await?);
        let state = StateDir::at(PathBuf::from(&h.home));
        let Some(held) = lock::try_lock(&session, &state).await? else {
            session.close().await;
            return Ok(None);
        };
        self.held.lock().await.push((held, session.clone()));
        Ok(Some(Host {
            name: h.display_name(),
            transport: Arc::new(Reconnecting::new(session.clone())),
            home: h.home.clone(),
            lab_dir: Some(state.lab(&self.lab_name).display().to_string()),
            jump: Some(session),
        }))
    }
}

#[async_trait]
impl Provider for SshProvider {
    fn describe(&self) -> String {
        let names: Vec<String> = self.hosts.iter().map(SshHostConfig::display_name).collect();
        format!("ssh: {}", names.join(", "))
    }

    /// Takes the first free hosts of the inventory, waiting while all are busy (looking again at
    /// [`Poll::INVENTORY_HOST`]'s pace, for up to `ACQUIRE_TIMEOUT`). A host that cannot be
    /// reached or whose key does not match is skipped, and said why.
    async fn acquire(
        &self,
        _run: &RunId,
        wanted: usize,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<Vec<Host>> {
        let mut polling = Poll::INVENTORY_HOST.until(tokio::time::Instant::now() + ACQUIRE_TIMEOUT);
        loop {
            let mut got = Vec::new();
            let mut problems = Vec::new();
            for h in &self.hosts {
                if got.len() == wanted {
                    break;
                }
                match self.try_host(h).await {
                    Ok(Some(host)) => got.push(host),
                    Ok(None) => {
                        problems.push(format!("{}: busy (another run holds it)", h.display_name()))
                    }
                    Err(e) => problems.push(format!("{}: {e:#}", h.display_name())),
                }
            }
            for p in &problems {
                hooks.progress(super::Stage::Acquire, p.clone());
            }
            if !got.is_empty() {
                return Ok(got);
            }
            let all_busy = problems.iter().all(|p| p.ends_with("holds it)"));
            if !all_busy || !polling.pause().await {
                anyhow::bail!("no inventory host is usable:\n  {}", problems.join("\n  "));
            }
        }
    }

    fn lanes(&self) -> usize {
        self.hosts.len()
    }

    async fn release(&self, _run: &RunId, _hooks: &dyn RunHooks) -> anyhow::Result<()> {
        let held: Vec<_> = self.held.lock().await.drain(..).collect();
        for (lock, session) in held {
            lock.release().await;
            session.close().await;
        }
        Ok(())
    }
}

pub fn target(h: &SshHostConfig) -> SshTarget {
    SshTarget {
        host: h.address.clone(),
        port: h.port,
        user: h.user.clone(),
        identity_files: vec![h.identity.clone()],
    }
}

pub fn policy(h: &SshHostConfig) -> HostKeyPolicy {
    let path = h.known_hosts.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(".ssh/known_hosts")
    });
    HostKeyPolicy::KnownHosts {
        path,
        trust_first_use: h.trust_first_use,
    }
}

/// `<dir name>-<hash>`: stable for a lab checkout, distinct for two checkouts of one repo.
pub fn lab_name(root: &std::path::Path) -> String {
    let base: String = root
        .file_name()
        .map_or("lab".into(), |n| n.to_string_lossy().into_owned())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let who = format!(
        "{}:{}",
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        root.display()
    );
    format!(
        "{base}-{}",
        &hex::encode(Sha256::digest(who.as_bytes()))[..8]
    )
}
