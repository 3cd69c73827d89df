//! Bare-metal devices made for the run through the Packet / Equinix Metal API v1, and deleted
//! after it, leaking nothing even when the API misbehaves.
//!
//! A run registers an SSH key of its own and passes it explicitly (so no other key is injected),
//! creates each device with the tags `metalab` and `run:<run-id>` and a `termination_time`, so
//! the platform deletes it even if metalab dies, waits until it is active, and hands it to the
//! same host pipeline as an SSH inventory host. Release deletes every device the run made or
//! that carries its tag (retrying while the API refuses to delete a provisioning one), checks
//! each is gone, then deletes the key (looked for by its label when its create did not answer
//! readably) and the run's private key file. Whatever it could not delete, it names, and fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Host, InputError, Provider, RunHooks, Stage, whole_seconds};
use crate::config::MetalConfig;
use crate::ids::RunId;
use crate::journal::{EntryId, Resource};
use crate::metal::api::{Listed, Unreadable};
use crate::metal::{ApiToken, ClientConfig, Device, DeviceCreateInput, MetalClient, MetalError};
use crate::retry::Poll;
use crate::state::StateDir;
use crate::transport::keys::KeyPair;
use crate::transport::reconnect::Reconnecting;
use crate::transport::ssh::{HostKeyPolicy, SshSession, SshTarget};

/// Tag on everything metalab creates; reap and `metalab hosts` look for it.
pub const TAG: &str = "metalab";
/// How long deleting a device may take, provisioning included.
const DELETE_DEADLINE: Duration = Duration::from_secs(15 * 60);

pub struct MetalProvider {
    config: MetalConfig,
    client: MetalClient,
    state: StateDir,
    lab_name: String,
    made: Mutex<Made>,
}

/// What this run created, or may have, with the journal entry of each.
#[derive(Default)]
struct Made {
    key: Option<RunKey>,
    devices: Vec<(Device, EntryId)>,
    /// Hostnames journaled but whose create did not answer: found by run tag at release.
    pending: Vec<(String, EntryId)>,
}

/// The run's project SSH key, journaled before it is asked for.
struct RunKey {
    label: String,
    entry: EntryId,
    /// Known once the create answered readably; until then, release looks for the label.
    id: Option<String>,
}

/// A device release deletes.
struct Doomed {
    id: String,
    name: String,
    entry: Option<EntryId>,
}

/// The run's tag on its devices.
pub fn run_tag(run: &RunId) -> String {
    format!("run:{run}")
}

/// The label of the run's SSH key.
pub fn key_label(run: &RunId) -> String {
    format!("metalab-{run}")
}

/// The API token from the environment: the variable the config names, else `METAL_AUTH_TOKEN`
/// or `PACKET_AUTH_TOKEN`. Read once, when a command makes its client; the variable is named like
/// a secret, so no process metalab starts inherits it ([`crate::child_env`]).
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
    ///
    /// The key is journaled, and remembered for release, before it is asked for: a create that
    /// fails in a way that may have made it (a 5xx, a lost connection, an answer that does not
    /// read) leaves release to find it by its label.
    async fn register_key(
        &self,
        run: &RunId,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<(String, PathBuf)> {
        let private = self.state.run(run).metal_key();
        let label = key_label(run);
        let pair = KeyPair::ed25519(&label)?;
        pair.write_private(&private)?;
        let entry = hooks.journal(Resource::MetalKey {
            api_url: self.config.api_url.clone(),
            project: self.config.project.clone(),
            label: label.clone(),
        })?;
        self.made.lock().await.key = Some(RunKey {
            label: label.clone(),
            entry,
            id: None,
        });
        match self.client.create_ssh_key(&label, &pair.public).await {
            Ok(key) => {
                if let Some(k) = self.made.lock().await.key.as_mut() {
                    k.id = Some(key.id.clone());
                }
                Ok((key.id, private))
            }
            Err(e) if e.may_have_acted() => Err(api_error(e)),
            Err(e) => {
                // The API refused it: there is no key to delete.
                if let Some(k) = self.made.lock().await.key.take() {
                    hooks.journal_done(k.entry);
                }
                Err(api_error(e))
            }
        }
    }

    /// Creates one device, trying the metros in order while they have no capacity, and saying
    /// which it skips and why.
    async fn create(
        &self,
        run: &RunId,
        hostname: &str,
        key_id: &str,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<Device> {
        let say = |m: String| hooks.progress(Stage::Acquire, m);
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
        let plan = &self.config.plan;
        let mut refused = Vec::new();
        for metro in &self.config.metros {
            if metro != "any" {
                match self.client.has_capacity(metro, plan, 1).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let why = format!("the capacity check says it has no {plan} free");
                        say(format!("{hostname}: skipping metro {metro}: {why}"));
                        refused.push(format!("{metro}: {why}"));
                        continue;
                    }
                    Err(e) => say(format!(
                        "{hostname}: the capacity check for metro {metro} failed ({}); \
                         trying the create there all the same",
                        api_error(e)
                    )),
                }
            }
            let input = DeviceCreateInput {
                plan: plan.clone(),
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
                    say(format!("{hostname}: created in {metro} ({})", device.id));
                    let mut made = self.made.lock().await;
                    made.pending.retain(|(h, _)| h != hostname);
                    made.devices.push((device.clone(), entry));
                    return Ok(device);
                }
                Err(e) if e.is_no_capacity() => {
                    let why = format!("the create was refused for want of capacity ({e})");
                    say(format!("{hostname}: skipping metro {metro}: {why}"));
                    refused.push(format!("{metro}: {why}"));
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
                    hooks.progress(Stage::Acquire, line.trim_end().to_string());
                    last = Some(line);
                }
            })
            .await
            .map_err(|e| api_error(e).context(device.hostname.clone()))?;
        let address = device.public_ipv4_management().ok_or_else(|| {
            anyhow!(
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
        hooks.progress(
            Stage::Acquire,
            format!(
                "{}: active at {}, waiting for SSH (ssh_timeout {})",
                device.hostname,
                address.address,
                whole_seconds(self.config.ssh_timeout)
            ),
        );
        let ssh_deadline = std::time::Instant::now() + self.config.ssh_timeout;
        let session = SshSession::connect_until(&target, &policy, ssh_deadline, None)
            .await
            .map_err(|e| {
                anyhow!(
                    "{}: SSH at {}:{} did not let metalab in within {} \
                     (`ssh_timeout` in [provider.metal]): {e}",
                    device.hostname,
                    address.address,
                    self.config.ssh_port,
                    whole_seconds(self.config.ssh_timeout)
                )
            })?;
        let session = Arc::new(session);
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

    /// Deletes the run's devices: those it made, and every device carrying its tag (a create
    /// that did not answer, a duplicate of an adopted one, one that cannot be read but has an
    /// id). What cannot be deleted is added to `left`.
    async fn release_devices(
        &self,
        run: &RunId,
        made: &mut Made,
        hooks: &dyn RunHooks,
        left: &mut Vec<String>,
    ) {
        let say = |m: String| hooks.progress(Stage::Release, m);
        let deadline = Instant::now() + DELETE_DEADLINE;
        let mut doomed: Vec<Doomed> = std::mem::take(&mut made.devices)
            .into_iter()
            .map(|(d, entry)| Doomed {
                id: d.id,
                name: d.hostname,
                entry: Some(entry),
            })
            .collect();
        let pending = std::mem::take(&mut made.pending);
        let mut swept = true;
        match self.client.list_devices(Some(&run_tag(run))).await {
            Ok(Listed { items, unreadable }) => {
                let strays = items.into_iter().map(|d| (d.id, d.hostname));
                let odd = unreadable.iter().filter_map(|u| {
                    let id = u.id()?.to_owned();
                    say(format!("{u}: deleting it by its id"));
                    Some((id, u.text("hostname").unwrap_or("unreadable device").into()))
                });
                for (id, name) in strays.chain(odd).collect::<Vec<_>>() {
                    if !doomed.iter().any(|d| d.id == id) {
                        doomed.push(Doomed {
                            id,
                            name,
                            entry: None,
                        });
                    }
                }
                for u in unreadable.iter().filter(|u| u.id().is_none()) {
                    swept = false;
                    left.push(format!("a device tagged {}: {u}", run_tag(run)));
                }
            }
            Err(e) => {
                swept = false;
                say(format!(
                    "could not list the devices tagged {}: {}",
                    run_tag(run),
                    api_error(e)
                ));
                let names: Vec<&str> = pending.iter().map(|(h, _)| h.as_str()).collect();
                if !names.is_empty() {
                    left.push(format!(
                        "devices whose create did not answer ({}): the run's devices could \
                         not be listed to find them",
                        names.join(", ")
                    ));
                }
            }
        }
        let outcomes = futures::future::join_all(
            doomed
                .iter()
                .map(|d| self.client.delete_device_until_gone(&d.id, deadline)),
        )
        .await;
        for (d, outcome) in doomed.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    say(format!("{}: deleted", d.name));
                    if let Some(entry) = d.entry {
                        hooks.journal_done(entry);
                    }
                }
                Err(e) => {
                    swept = false;
                    left.push(format!("device {} ({}): {}", d.name, d.id, api_error(e)));
                }
            }
        }
        // A create that did not answer made nothing, or a device carrying the run's tag, now
        // deleted: its entry is done once every such device is gone.
        for (_, entry) in pending {
            if swept {
                hooks.journal_done(entry);
            }
        }
    }

    /// Deletes the run's SSH key: by its id, or, when its create did not answer readably, every
    /// key carrying its label. What cannot be deleted is added to `left`.
    async fn release_key(&self, key: RunKey, hooks: &dyn RunHooks, left: &mut Vec<String>) {
        let label = &key.label;
        let ids = match &key.id {
            Some(id) => vec![id.clone()],
            None => match self.client.list_ssh_keys().await {
                Ok(listed) => {
                    let (ids, unknown) = keys_labelled(&listed, label);
                    if ids.is_empty() && !unknown.is_empty() {
                        left.push(format!(
                            "SSH key {label}: not among the keys that read, and {} cannot be \
                             read ({})",
                            unknown.len(),
                            unknown
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; ")
                        ));
                        return;
                    }
                    ids
                }
                Err(e) => {
                    left.push(format!(
                        "SSH key {label}: its create did not answer, and the keys could not be \
                         listed to find it: {}",
                        api_error(e)
                    ));
                    return;
                }
            },
        };
        let mut all_gone = true;
        for id in ids {
            match self.client.delete_ssh_key(&id).await {
                Ok(()) => hooks.progress(Stage::Release, format!("SSH key {label}: deleted")),
                Err(e) if e.means_gone() => {}
                Err(e) => {
                    all_gone = false;
                    left.push(format!("SSH key {label} ({id}): {}", api_error(e)));
                }
            }
        }
        if all_gone {
            hooks.journal_done(key.entry);
        }
    }

    /// Removes the run's private key (and its public half): nothing may log in with it after
    /// the run.
    fn remove_private_key(&self, run: &RunId, left: &mut Vec<String>) {
        super::remove_key_files(&self.state.run(run).metal_key(), left);
    }
}

/// The ids of the keys labelled `label` (readable ones, and unreadable ones whose label and id
/// still read), and the unreadable keys whose label cannot be read.
fn keys_labelled<'a>(
    listed: &'a Listed<crate::metal::api::SshKey>,
    label: &str,
) -> (Vec<String>, Vec<&'a Unreadable>) {
    let mut ids: Vec<String> = listed
        .items
        .iter()
        .filter(|k| k.label == label)
        .map(|k| k.id.clone())
        .collect();
    let mut unknown = Vec::new();
    for odd in &listed.unreadable {
        match (odd.text("label"), odd.id()) {
            (Some(l), Some(id)) if l == label => ids.push(id.to_owned()),
            (Some(_), _) => {}
            (None, _) => unknown.push(odd),
        }
    }
    (ids, unknown)
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

    /// Deletes what the run made, or may have made, and the run's private key; fails naming
    /// everything of the run that is left.
    async fn release(&self, run: &RunId, hooks: &dyn RunHooks) -> anyhow::Result<()> {
        let mut made = self.made.lock().await;
        let mut left = Vec::new();
        if !made.devices.is_empty() || !made.pending.is_empty() {
            self.release_devices(run, &mut made, hooks, &mut left).await;
        }
        if let Some(key) = made.key.take() {
            self.release_key(key, hooks, &mut left).await;
        }
        self.remove_private_key(run, &mut left);
        if !left.is_empty() {
            bail!(
                "left behind (`metalab reap` tries again): {}",
                left.join("; ")
            );
        }
        Ok(())
    }
}

/// API errors as the run reports them: credentials refused, and an `api_url` that redirects, are
/// the user's input to fix.
fn api_error(e: MetalError) -> anyhow::Error {
    match e {
        MetalError::Unauthorized { status, message } => InputError(format!(
            "the Metal API refused the token ({status}: {message}): check the token in the \
             environment and the project id"
        ))
        .into(),
        // The API's own address is the user's to fix, like the token.
        redirected @ MetalError::Redirected { .. } => InputError(redirected.to_string()).into(),
        other => other.into(),
    }
}

pub use super::found::{Found, Outcome};

/// Lists the project's metalab devices: hostname, state, age, run id; those that cannot be read
/// apart.
pub async fn devices(client: &MetalClient) -> anyhow::Result<Listed<Device>> {
    client.list_devices(Some(TAG)).await.map_err(api_error)
}

fn run_of_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<RunId> {
    tags.into_iter()
        .find_map(|t| t.strip_prefix("run:"))
        .and_then(RunId::parse)
}

/// A device or key as reap judges it, read in full or made out of an unreadable entry.
struct Candidate {
    id: String,
    what: String,
    run: Option<RunId>,
    locked: bool,
    created_at: Option<DateTime<Utc>>,
    termination_time: Option<DateTime<Utc>>,
    device: bool,
}

impl Candidate {
    fn device(d: &Device) -> Candidate {
        Candidate {
            id: d.id.clone(),
            what: format!(
                "device {} ({}, {}{})",
                d.hostname,
                d.id,
                d.state,
                if d.locked { ", locked" } else { "" }
            ),
            run: run_of_tags(d.tags.iter().map(String::as_str)),
            locked: d.locked,
            created_at: d.created_at,
            termination_time: d.termination_time,
            device: true,
        }
    }

    /// What can be made of a device entry that does not read: its id, tags, `locked` (taken
    /// as true unless it reads as false, or is absent) and times.
    fn odd_device(odd: &Unreadable) -> Option<Candidate> {
        let locked = match odd.raw.get("locked") {
            None | Some(serde_json::Value::Null) => false,
            Some(value) => value.as_bool() != Some(false),
        };
        Some(Candidate {
            id: odd.id()?.to_owned(),
            what: format!(
                "device {} ({}, cannot be read: {}{})",
                odd.text("hostname").unwrap_or("?"),
                odd.id()?,
                odd.error,
                if locked { ", locked" } else { "" }
            ),
            run: run_of_tags(odd.tags()),
            locked,
            created_at: time_of(odd, "created_at"),
            termination_time: time_of(odd, "termination_time"),
            device: true,
        })
    }

    fn key(id: &str, label: &str, created_at: Option<DateTime<Utc>>) -> Option<Candidate> {
        let run = label.strip_prefix("metalab-").and_then(RunId::parse)?;
        Some(Candidate {
            id: id.to_owned(),
            what: format!("SSH key {label} ({id})"),
            run: Some(run),
            locked: false,
            created_at,
            termination_time: None,
            device: false,
        })
    }
}

fn time_of(odd: &Unreadable, field: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(odd.text(field)?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a candidate is due for removal (`Ok(why)`), or why it is kept (`Err(why)`).
///
/// Never a locked device, nor a live run's, nor kept VMs' before their expiry. A run this state
/// directory does not know is judged by its age, past the TTL, or, when the API gives no
/// `created_at`, by its `termination_time` having passed: its age is then unknown.
fn due(
    c: &Candidate,
    state: &StateDir,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<String, String> {
    use crate::journal::{Verdict, judge};
    if c.locked {
        return Err("locked".into());
    }
    let Some(run) = &c.run else {
        return Err("it has no run:<id> tag, so no run of metalab's owns it".into());
    };
    let ttl_delta = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX);
    match judge(state, run, now) {
        Verdict::Reap { why } => Ok(why),
        Verdict::Live { pid } => Err(format!("its run is still going (pid {pid})")),
        Verdict::Kept { until } => Err(format!("its run is kept until {until}")),
        Verdict::Recent => {
            let age = c.created_at.map(|t| now - t);
            match (age, c.termination_time) {
                (Some(age), _) if age > ttl_delta => Ok(format!(
                    "its run is not known here and it is older than the TTL ({})",
                    whole_seconds(ttl)
                )),
                (_, Some(end)) if end <= now => {
                    Ok("its run is not known here and its termination_time has passed".into())
                }
                (Some(age), _) => Err(format!(
                    "its run is not known here and began under an hour ago; {} old, under the \
                     TTL ({})",
                    whole_seconds(age.to_std().unwrap_or_default()),
                    whole_seconds(ttl)
                )),
                (None, _) => Err(
                    "its run is not known here and began under an hour ago; its age is unknown \
                     (no created_at) and its termination_time has not passed"
                        .into(),
                ),
            }
        }
    }
}

/// Deletes metalab devices and keys whose run is over or whose TTL has passed; never a locked
/// device, nor a live run's, nor kept VMs' before their expiry. An entry of a list that cannot
/// be read is judged by what can be made of it (its id, tags, label); the others are judged as
/// usual. A delete that fails is reported, and the others go on.
pub async fn reap(
    client: &MetalClient,
    state: &StateDir,
    ttl: Duration,
    dry_run: bool,
) -> anyhow::Result<Vec<Found>> {
    let now = Utc::now();
    let listed = devices(client).await?;
    let mut candidates: Vec<Candidate> = listed.items.iter().map(Candidate::device).collect();
    let mut found = Vec::new();
    for odd in &listed.unreadable {
        match Candidate::odd_device(odd) {
            Some(c) => candidates.push(c),
            None => found.push(Found {
                what: "a device tagged metalab".into(),
                run: run_of_tags(odd.tags()),
                outcome: Outcome::Unreadable {
                    problem: odd.to_string(),
                    ours: true,
                },
            }),
        }
    }
    let keys = client.list_ssh_keys().await.map_err(api_error)?;
    candidates.extend(
        keys.items
            .iter()
            .filter_map(|k| Candidate::key(&k.id, &k.label, k.created_at)),
    );
    for odd in &keys.unreadable {
        match (odd.text("label"), odd.id()) {
            (Some(label), Some(id)) => candidates.extend(Candidate::key(id, label, None)),
            (Some(label), None) if label.starts_with("metalab-") => found.push(Found {
                what: format!("SSH key {label}"),
                run: label.strip_prefix("metalab-").and_then(RunId::parse),
                outcome: Outcome::Unreadable {
                    problem: odd.to_string(),
                    ours: true,
                },
            }),
            (Some(_), None) => {}
            (None, _) => found.push(Found {
                what: "an SSH key of the project".into(),
                run: None,
                outcome: Outcome::Unreadable {
                    problem: format!("{odd}; it may not be metalab's, so it is left alone"),
                    ours: false,
                },
            }),
        }
    }
    for c in candidates {
        let outcome = match due(&c, state, ttl, now) {
            Err(why) => Outcome::Kept { why },
            Ok(why) if dry_run => Outcome::WouldRemove { why },
            Ok(why) => match remove(client, &c).await {
                Ok(()) => Outcome::Removed { why },
                Err(e) => Outcome::NotRemoved {
                    why,
                    problem: format!("{:#}", api_error(e)),
                },
            },
        };
        found.push(Found {
            what: c.what,
            run: c.run,
            outcome,
        });
    }
    Ok(found)
}

async fn remove(client: &MetalClient, c: &Candidate) -> Result<(), MetalError> {
    if c.device {
        return client
            .delete_device_until_gone(&c.id, Instant::now() + DELETE_DEADLINE)
            .await;
    }
    match client.delete_ssh_key(&c.id).await {
        Err(e) if !e.means_gone() => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(run: &RunId) -> Candidate {
        Candidate {
            id: "d1".into(),
            what: "device d1".into(),
            run: Some(run.clone()),
            locked: false,
            created_at: None,
            termination_time: None,
            device: true,
        }
    }

    #[test]
    fn without_created_at_an_unknown_run_goes_by_its_termination_time() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().to_path_buf());
        let ttl = Duration::from_secs(600);
        let now = Utc::now();
        // A run begun just now, that this state directory does not know.
        let run = RunId::generate();
        let mut c = candidate(&run);
        let kept = due(&c, &state, ttl, now).expect_err("age unknown, not yet terminated");
        assert!(kept.contains("age is unknown"), "{kept}");
        c.termination_time = Some(now - TimeDelta::seconds(1));
        let why = due(&c, &state, ttl, now).expect("past its termination_time");
        assert!(why.contains("termination_time has passed"), "{why}");
        c.locked = true;
        assert_eq!(due(&c, &state, ttl, now), Err("locked".to_string()));
    }

    #[test]
    fn with_created_at_an_unknown_run_goes_by_its_age() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().to_path_buf());
        let ttl = Duration::from_secs(600);
        let now = Utc::now();
        let mut c = candidate(&RunId::generate());
        c.created_at = Some(now - TimeDelta::seconds(60));
        let kept = due(&c, &state, ttl, now).expect_err("young");
        assert!(kept.contains("under the TTL"), "{kept}");
        c.created_at = Some(now - TimeDelta::seconds(700));
        assert!(
            due(&c, &state, ttl, now)
                .expect("old")
                .contains("older than the TTL")
        );
        c.run = None;
        let kept = due(&c, &state, ttl, now).expect_err("no run tag");
        assert!(kept.contains("no run:<id> tag"), "{kept}");
    }
}
