//! Bare-metal devices made for the run through the Packet / Equinix Metal API v1, and deleted
//! after it, leaking nothing even when the API misbehaves.
//!
//! A run registers an SSH key of its own and passes it explicitly (so no other key is injected),
//! creates each device with the tags `metalab` and `run:<run-id>` and a `termination_time`, so
//! the platform deletes it even if metalab dies, waits until it is active, and hands it to the
//! same host pipeline as an SSH inventory host. Release deletes every device (retrying while the
//! API refuses to delete a provisioning one), checks each is gone, then deletes the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Host, InputError, Provider, RunHooks};
use crate::config::MetalConfig;
use crate::ids::RunId;
use crate::journal::{EntryId, Resource};
use crate::metal::{ApiToken, ClientConfig, Device, DeviceCreateInput, MetalClient, MetalError};
use crate::retry::Poll;
use crate::state::StateDir;
use crate::transport::reconnect::Reconnecting;
use crate::transport::ssh::{HostKeyPolicy, SshSession, SshTarget};

/// Tag on everything metalab creates; reap and `metalab hosts` look for it.
pub const TAG: &str = "metalab";
/// How long deleting a device may take, provisioning included.
const DELETE_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// How long a new device may take to answer SSH once active.
const SSH_DEADLINE: Duration = Duration::from_secs(5 * 60);

pub struct MetalProvider {
    config: MetalConfig,
    client: MetalClient,
    state: StateDir,
    lab_name: String,
    made: Mutex<Made>,
}

/// What this run created, with the journal entry of each.
#[derive(Default)]
struct Made {
    key: Option<(String, EntryId)>,
    devices: Vec<(Device, EntryId)>,
    /// Hostnames journaled but whose create did not answer: found by run tag at release.
    pending: Vec<(String, EntryId)>,
}

/// The run's tag on its devices.
pub fn run_tag(run: &RunId) -> String {
    format!("run:{run}")
}

/// The API token from the environment: the variable the config names, else `METAL_AUTH_TOKEN`
/// or `PACKET_AUTH_TOKEN`.
pub fn token(config: &MetalConfig) -> Result<ApiToken, InputError> {
    [
        config.token_env.as_str(),
        "METAL_AUTH_TOKEN",
        "PACKET_AUTH_TOKEN",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok().filter(|t| !t.is_empty()))
    .map(ApiToken::new)
    .ok_or_else(|| {
        InputError(format!(
            "no Metal API token: set {} in the environment",
            config.token_env
        ))
    })
}

/// A client for the configured API.
pub fn client(config: &MetalConfig, token: ApiToken) -> anyhow::Result<MetalClient> {
    let mut c = ClientConfig::new(token, config.project.clone());
    c.base_url = config.api_url.clone();
    c.poll = Poll::metal_provider(config.poll);
    Ok(MetalClient::new(c)?)
}

impl MetalProvider {
    pub fn new(
        config: MetalConfig,
        token: ApiToken,
        lab_root: &Path,
        state: StateDir,
    ) -> anyhow::Result<MetalProvider> {
        Ok(MetalProvider {
            client: client(&config, token)?,
            lab_name: super::ssh::lab_name(lab_root),
            config,
            state,
            made: Mutex::new(Made::default()),
        })
    }

    /// A key pair of the run's own, registered with the project.
    async fn register_key(
        &self,
        run: &RunId,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<(String, std::path::PathBuf)> {
        let private = self.state.run(run).metal_key();
        if let Some(dir) = private.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let label = format!("metalab-{run}");
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", &label, "-f"])
            .arg(&private)
            .status()
            .context("cannot run ssh-keygen")?
            .success();
        if !ok {
            bail!("ssh-keygen failed");
        }
        let public = std::fs::read_to_string(private.with_extension("pub"))?;
        let entry = hooks.journal(Resource::MetalKey {
            api_url: self.config.api_url.clone(),
            project: self.config.project.clone(),
            label: label.clone(),
        })?;
        let key = self
            .client
            .create_ssh_key(&label, public.trim())
            .await
            .map_err(api_error)?;
        self.made.lock().await.key = Some((key.id.clone(), entry));
        Ok((key.id, private))
    }

    /// Creates one device, trying the metros in order while they have no capacity.
    async fn create(
        &self,
        run: &RunId,
        hostname: &str,
        key_id: &str,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<Device> {
        let entry = hooks.journal(Resource::MetalDevice {
            api_url: self.config.api_url.clone(),
            project: self.config.project.clone(),
            hostname: hostname.to_string(),
        })?;
        self.made
            .lock()
            .await
            .pending
            .push((hostname.to_string(), entry));
        let mut tags = vec![TAG.to_string(), run_tag(run)];
        tags.extend(self.config.tags.iter().cloned());
        let ttl = chrono::Duration::from_std(self.config.ttl).unwrap_or(chrono::Duration::hours(3));
        let mut refused = Vec::new();
        for metro in &self.config.metros {
            if metro != "any"
                && !self
                    .client
                    .has_capacity(metro, &self.config.plan, 1)
                    .await
                    .unwrap_or(true)
            {
                refused.push(format!("{metro}: no capacity"));
                continue;
            }
            let input = DeviceCreateInput {
                plan: self.config.plan.clone(),
                operating_system: self.config.operating_system.clone(),
                metro: metro.clone(),
                hostname: Some(hostname.to_string()),
                billing_cycle: Some("hourly".into()),
                tags: tags.clone(),
                project_ssh_keys: vec![key_id.to_string()],
                termination_time: Some(Utc::now() + ttl),
                ..DeviceCreateInput::default()
            };
            match self
                .client
                .create_device_safely(&input, &run_tag(run))
                .await
            {
                Ok(device) => {
                    hooks.progress(format!("{hostname}: created in {metro} ({})", device.id));
                    let mut made = self.made.lock().await;
                    made.pending.retain(|(h, _)| h != hostname);
                    made.devices.push((device.clone(), entry));
                    return Ok(device);
                }
                Err(e) if e.is_no_capacity() => {
                    hooks.progress(format!(
                        "{hostname}: no capacity in {metro}, trying the next metro"
                    ));
                    refused.push(format!("{metro}: {e}"));
                }
                Err(e) => return Err(api_error(e)),
            }
        }
        bail!("no metro could take {hostname}: {}", refused.join("; "))
    }

    /// Waits until the device is active and answers SSH; a device that fails or takes too long
    /// is deleted, not forgotten (release deletes everything the run made).
    async fn ready(
        &self,
        device: &Device,
        identity: &Path,
        run: &RunId,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<Host> {
        let deadline = Instant::now() + self.config.provision_timeout;
        let mut last = None;
        let device = self
            .client
            .wait_active(&device.id, deadline, |d| {
                let line = format!(
                    "{}: {} {}",
                    d.hostname,
                    d.state,
                    d.provisioning_percentage
                        .map(|p| format!("{p:.0}%"))
                        .unwrap_or_default()
                );
                if last.as_ref() != Some(&line) {
                    hooks.progress(line.clone());
                    last = Some(line);
                }
            })
            .await
            .map_err(api_error)?;
        let address = device.public_ipv4_management().ok_or_else(|| {
            anyhow::anyhow!(
                "{} is active but has no public management IPv4 address",
                device.hostname
            )
        })?;
        let target = SshTarget {
            host: address.address.clone(),
            port: self.config.ssh_port,
            user: self.config.user.clone(),
            identity_files: vec![identity.to_path_buf()],
        };
        let policy = HostKeyPolicy::PinFile(
            self.state
                .run(run)
                .host_key(&format!("device-{}", device.hostname)),
        );
        hooks.progress(format!(
            "{}: active at {}, waiting for SSH",
            device.hostname, address.address
        ));
        let ssh_deadline = std::time::Instant::now() + SSH_DEADLINE;
        let session =
            Arc::new(SshSession::connect_until(&target, &policy, ssh_deadline, None).await?);
        Ok(Host {
            name: device.hostname.clone(),
            transport: Arc::new(Reconnecting::new(session.clone())),
            home: self.config.home.clone(),
            lab_dir: Some(
                StateDir::at(PathBuf::from(&self.config.home))
                    .lab(&self.lab_name)
                    .display()
                    .to_string(),
            ),
            jump: Some(session),
        })
    }
}

#[async_trait]
impl Provider for MetalProvider {
    fn describe(&self) -> String {
        format!(
            "metal: {} x {} in {}",
            self.config.devices,
            self.config.plan,
            self.config.metros.join("/")
        )
    }

    fn lanes(&self) -> usize {
        self.config.devices
    }

    async fn acquire(
        &self,
        run: &RunId,
        wanted: usize,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<Vec<Host>> {
        let (key_id, identity) = self.register_key(run, hooks).await?;
        let count = wanted.clamp(1, self.config.devices.max(1));
        let mut devices = Vec::new();
        for n in 1..=count {
            let hostname = format!("metalab-{run}-{n}");
            devices.push(self.create(run, &hostname, &key_id, hooks).await?);
        }
        let hosts =
            futures::future::join_all(devices.iter().map(|d| self.ready(d, &identity, run, hooks)))
                .await;
        hosts.into_iter().collect()
    }

    async fn release(&self, run: &RunId, hooks: &dyn RunHooks) -> anyhow::Result<()> {
        let mut made = self.made.lock().await;
        let deadline = Instant::now() + DELETE_DEADLINE;
        // Creates that never answered may still have made a device: find them by the run tag.
        if !made.pending.is_empty() {
            let tagged = self
                .client
                .list_devices(Some(&run_tag(run)))
                .await
                .map_err(api_error)?;
            for (hostname, entry) in std::mem::take(&mut made.pending) {
                match tagged.iter().find(|d| d.hostname == hostname) {
                    Some(d) => made.devices.push((d.clone(), entry)),
                    None => hooks.journal_done(entry),
                }
            }
        }
        let mut problems = Vec::new();
        for (device, entry) in std::mem::take(&mut made.devices) {
            match self
                .client
                .delete_device_until_gone(&device.id, deadline)
                .await
            {
                Ok(()) => {
                    hooks.progress(format!("{}: deleted", device.hostname));
                    hooks.journal_done(entry);
                }
                Err(e) => problems.push(format!(
                    "{} ({}): {}",
                    device.hostname,
                    device.id,
                    api_error(e)
                )),
            }
        }
        if let Some((key, entry)) = made.key.take() {
            match self.client.delete_ssh_key(&key).await {
                Ok(()) => hooks.journal_done(entry),
                Err(e) if e.means_gone() => hooks.journal_done(entry),
                Err(e) => problems.push(format!("SSH key {key}: {}", api_error(e))),
            }
        }
        if !problems.is_empty() {
            bail!("could not delete: {}", problems.join("; "));
        }
        Ok(())
    }
}

/// API errors as the run reports them: credentials refused are the user's input to fix.
fn api_error(e: MetalError) -> anyhow::Error {
    match e {
        MetalError::Unauthorized { status, .. } => InputError(format!(
            "the Metal API refused the token ({status}): check the token in the environment and the project id"
        ))
        .into(),
        other => other.into(),
    }
}

/// One metalab device or key in the project, and what reap makes of it.
pub struct Found {
    pub what: String,
    pub run: Option<RunId>,
    pub verdict: crate::journal::Verdict,
    pub removed: bool,
}

/// Lists the project's metalab devices: hostname, state, age, run id.
pub async fn devices(client: &MetalClient) -> anyhow::Result<Vec<Device>> {
    client.list_devices(Some(TAG)).await.map_err(api_error)
}

fn run_of_device(d: &Device) -> Option<RunId> {
    d.tags
        .iter()
        .find_map(|t| t.strip_prefix("run:"))
        .and_then(RunId::parse)
}

/// Deletes metalab devices and keys whose run is over or whose TTL has passed; never a locked
/// device, nor a live run's, nor kept VMs' before their expiry.
pub async fn reap(
    client: &MetalClient,
    state: &StateDir,
    ttl: Duration,
    dry_run: bool,
) -> anyhow::Result<Vec<Found>> {
    use crate::journal::{Verdict, judge};
    let now = Utc::now();
    let verdict = |run: &Option<RunId>, age: chrono::TimeDelta| match run {
        Some(r) => match judge(state, r, now) {
            // Unknown here, but past the TTL: the platform should have deleted it already.
            Verdict::Recent if age > chrono::Duration::from_std(ttl).unwrap_or_default() => {
                Verdict::Reap {
                    why: "older than the TTL".into(),
                }
            }
            v => v,
        },
        None => Verdict::Recent,
    };
    let mut found = Vec::new();
    for d in devices(client).await? {
        let run = run_of_device(&d);
        let mut v = verdict(&run, now - d.created_at);
        if d.locked {
            v = Verdict::Recent;
        }
        let what = format!(
            "device {} ({}, {}{})",
            d.hostname,
            d.id,
            d.state,
            if d.locked { ", locked" } else { "" }
        );
        let reap = matches!(v, Verdict::Reap { .. }) && !dry_run;
        if reap {
            client
                .delete_device_until_gone(&d.id, Instant::now() + DELETE_DEADLINE)
                .await
                .map_err(api_error)?;
        }
        found.push(Found {
            what,
            run,
            verdict: v,
            removed: reap,
        });
    }
    for k in client.list_ssh_keys().await.map_err(api_error)? {
        let Some(run) = k.label.strip_prefix("metalab-").and_then(RunId::parse) else {
            continue;
        };
        let run = Some(run);
        let v = verdict(&run, now - k.created_at);
        let reap = matches!(v, Verdict::Reap { .. }) && !dry_run;
        if reap {
            match client.delete_ssh_key(&k.id).await {
                Ok(()) => {}
                Err(e) if e.means_gone() => {}
                Err(e) => return Err(api_error(e)),
            }
        }
        found.push(Found {
            what: format!("SSH key {} ({})", k.label, k.id),
            run,
            verdict: v,
            removed: reap,
        });
    }
    Ok(found)
}
