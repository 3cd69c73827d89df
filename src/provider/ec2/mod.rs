//! Bare-metal AWS EC2 instances (`c5.metal`, `m7i.metal-24xl`, ...) launched for the run and
//! terminated after it, leaking nothing when AWS has no capacity, throttles, or loses an answer.
//!
//! A run imports a key pair of its own and creates a security group that admits SSH from the
//! runner's address only. Each instance is launched with the run's tags, a host key it is told
//! at first boot (so its identity is known before the first connection), and user data that
//! powers it off at the expiry; powered off, it terminates. Types and places are tried in order
//! while AWS has none to give, naming each skip. Release terminates every instance carrying the
//! run's tag, waits until each is gone, then deletes the group, the key pair and the private
//! key. Whatever it could not delete, it names, and fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Host, InputError, Provider, RunHooks, Stage, whole_seconds};
use crate::config::Ec2Config;
use crate::config::{AddressKind, Market};
use crate::ec2::boot::{self, HostKey};
use crate::ec2::{EXPIRES_TAG, Ec2, Ec2Error, Instance, Launch, RUN_TAG, TAG};
use crate::ids::RunId;
use crate::journal::{Ec2Kind, EntryId, Resource};
use crate::state::StateDir;
use crate::transport::keys::KeyPair;
use crate::transport::reconnect::Reconnecting;
use crate::transport::ssh::{HostKeyPolicy, SshSession, SshTarget};

/// How long a create dropped in flight is given to land before release lists what the run made.
const IN_FLIGHT_SETTLE: Duration = Duration::from_secs(5);
/// How long terminating the run's instances, and then deleting its group, may take.
const RELEASE_DEADLINE: Duration = Duration::from_secs(15 * 60);

mod reap;

pub struct Ec2Provider {
    config: Ec2Config,
    /// Made at first use: loading the credential chain is asynchronous.
    ec2: tokio::sync::OnceCell<Ec2>,
    state: StateDir,
    lab_name: String,
    made: Mutex<Made>,
}

/// What this run created, or may have, with the journal entry of each.
#[derive(Default)]
struct Made {
    key_pair: Option<EntryId>,
    /// The group's id once its create answered.
    group: Option<(Option<String>, EntryId)>,
    /// Instances by name, with their id once a launch answered.
    instances: Vec<(String, Option<String>, EntryId)>,
    /// A create was sent and its answer never came: the run stopped while it was in flight.
    unanswered: bool,
}

/// The name of the run's key pair and security group; its instances add `-<n>`.
pub fn run_name(run: &RunId) -> String {
    format!("metalab-{run}")
}

impl Ec2Provider {
    /// The provider, calling EC2 with credentials from the standard AWS chain, or, when `sdk`
    /// is given, with that SDK configuration (its credentials, retries and endpoint).
    pub fn new(
        config: Ec2Config,
        sdk: Option<&aws_config::SdkConfig>,
        lab_root: &Path,
        state: StateDir,
    ) -> Ec2Provider {
        Ec2Provider {
            ec2: tokio::sync::OnceCell::new_with(sdk.map(Ec2::new)),
            lab_name: super::ssh::lab_name(lab_root),
            config,
            state,
            made: Mutex::new(Made::default()),
        }
    }

    async fn ec2(&self) -> &Ec2 {
        self.ec2
            .get_or_init(|| async { Ec2::new(&crate::ec2::sdk_config(&self.config).await) })
            .await
    }

    fn journal(&self, hooks: &dyn RunHooks, kind: Ec2Kind, name: &str) -> anyhow::Result<EntryId> {
        hooks.journal(Resource::Ec2 {
            region: self.config.region.clone(),
            endpoint_url: self.config.endpoint_url.clone(),
            what: kind,
            name: name.to_owned(),
        })
    }

    /// Awaits a create, marking it unanswered until it answers: a run stopped meanwhile drops
    /// it in flight, and EC2 may still carry it out.
    async fn answered<T>(&self, create: impl Future<Output = T>) -> T {
        self.made.lock().await.unanswered = true;
        let answer = create.await;
        self.made.lock().await.unanswered = false;
        answer
    }

    /// A create EC2 refused made nothing: its journal entry is done, and release does not look
    /// for it. One that may have acted stays, for release to find by its tags.
    async fn forget_unmade(
        &self,
        e: &Ec2Error,
        hooks: &dyn RunHooks,
        take: impl FnOnce(&mut Made) -> Option<EntryId>,
    ) {
        if !e.may_have_acted()
            && let Some(entry) = take(&mut *self.made.lock().await)
        {
            hooks.journal_done(entry);
        }
    }

    /// The tags of everything the run creates.
    fn tags(&self, run: &RunId, name: &str, expires: DateTime<Utc>) -> BTreeMap<String, String> {
        let mut tags = self.config.tags.clone();
        tags.insert(TAG.into(), self.lab_name.clone());
        tags.insert(RUN_TAG.into(), run.to_string());
        tags.insert(
            EXPIRES_TAG.into(),
            expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        tags.insert("Name".into(), name.into());
        tags
    }

    /// The addresses SSH is admitted from: `ssh_from`, else the runner's own public address.
    async fn ssh_from(&self) -> anyhow::Result<Vec<String>> {
        if !self.config.ssh_from.is_empty() {
            return Ok(self.config.ssh_from.clone());
        }
        let url = &self.config.checkip_url;
        let asked = async {
            let text = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            anyhow::Ok(text.trim().parse::<std::net::IpAddr>()?)
        };
        match asked.await {
            Ok(ip) if ip.is_ipv4() => Ok(vec![format!("{ip}/32")]),
            Ok(ip) => Ok(vec![format!("{ip}/128")]),
            Err(e) => Err(InputError(format!(
                "cannot learn this runner's public address from {url} ({e:#}), which the run's \
                 security group admits SSH from: set `ssh_from` in [provider.ec2]"
            ))
            .into()),
        }
    }

    /// A key pair of the run's own: its private half in the run's state directory, its public
    /// half imported, journaled before it is asked for.
    async fn import_key(
        &self,
        run: &RunId,
        hooks: &dyn RunHooks,
        tags: &BTreeMap<String, String>,
    ) -> anyhow::Result<PathBuf> {
        let private = self.state.run(run).ec2_key();
        let name = run_name(run);
        let pair = KeyPair::ed25519(&name)?;
        pair.write_private(&private)?;
        let entry = self.journal(hooks, Ec2Kind::KeyPair, &name)?;
        self.made.lock().await.key_pair = Some(entry);
        let imported = self
            .answered(self.ec2().await.import_key_pair(&name, &pair.public, tags))
            .await;
        if let Err(e) = imported {
            self.forget_unmade(&e, hooks, |made| made.key_pair.take())
                .await;
            return Err(api_error(e));
        }
        hooks.progress(Stage::Acquire, format!("key pair {name}: imported"));
        Ok(private)
    }

    /// The run's security group: SSH on `ssh_port` from `cidrs`, nothing else in.
    async fn create_group(
        &self,
        run: &RunId,
        hooks: &dyn RunHooks,
        tags: &BTreeMap<String, String>,
        cidrs: &[String],
    ) -> anyhow::Result<String> {
        let vpc = self
            .ec2()
            .await
            .vpc_for(&self.config.placements())
            .await
            .map_err(api_error)?
            .map_err(|why| InputError(format!("[provider.ec2] subnets: {why}")))?;
        let name = run_name(run);
        let entry = self.journal(hooks, Ec2Kind::SecurityGroup, &name)?;
        self.made.lock().await.group = Some((None, entry));
        let created = self
            .answered(self.ec2().await.create_security_group(&name, &vpc, tags))
            .await;
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                self.forget_unmade(&e, hooks, |made| made.group.take().map(|(_, entry)| entry))
                    .await;
                return Err(api_error(e));
            }
        };
        if let Some((known, _)) = self.made.lock().await.group.as_mut() {
            *known = Some(id.clone());
        }
        self.ec2()
            .await
            .admit_ssh(&id, self.config.ssh_port, cidrs)
            .await
            .map_err(api_error)?;
        hooks.progress(
            Stage::Acquire,
            format!(
                "security group {name} ({id}) in {vpc}: SSH on port {} from {} only",
                self.config.ssh_port,
                cidrs.join(", ")
            ),
        );
        Ok(id)
    }

    /// Launches one instance, trying each type in each place in order while AWS has none to
    /// give, and saying which it skips and why.
    async fn launch(
        &self,
        run: &RunId,
        name: &str,
        group: &str,
        host_key: &HostKey,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<Instance> {
        let say = |m: String| hooks.progress(Stage::Acquire, m);
        let expires = Utc::now()
            + chrono::Duration::from_std(self.config.ttl).unwrap_or(chrono::Duration::hours(3));
        let tags = self.tags(run, name, expires);
        let user_data = boot::user_data(&run.to_string(), host_key, expires);
        let entry = self.journal(hooks, Ec2Kind::Instance, name)?;
        self.made
            .lock()
            .await
            .instances
            .push((name.to_owned(), None, entry));
        let mut skipped = Vec::new();
        let placements = self.config.placements();
        let mut tries: Vec<(&String, &crate::config::Placement)> = Vec::new();
        for t in &self.config.instance_types {
            tries.extend(placements.iter().map(|p| (t, p)));
        }
        for (attempt, (instance_type, placement)) in tries.into_iter().enumerate() {
            let launch = Launch {
                name,
                image: &self.config.image,
                instance_type,
                placement,
                key_name: &run_name(run),
                security_group: group,
                user_data: &user_data,
                spot: self.config.market == Market::Spot,
                client_token: &format!("{name}-{attempt}"),
                tags: &tags,
            };
            match self.answered(self.ec2().await.run_instance(&launch)).await {
                Ok(instance) => {
                    say(format!(
                        "{name}: launched {} ({instance_type} in {placement}), expires {}",
                        instance.id,
                        expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ));
                    let mut made = self.made.lock().await;
                    if let Some(m) = made.instances.iter_mut().find(|m| m.0 == name) {
                        m.1 = Some(instance.id.clone());
                    }
                    return Ok(instance);
                }
                Err(Ec2Error::NoCapacity { code, message }) => {
                    say(format!(
                        "{name}: skipping {instance_type} in {placement}: {code} ({message})"
                    ));
                    skipped.push(format!("{instance_type} in {placement}: {code}"));
                }
                Err(e) => return Err(api_error(e).context(format!("launching {name}"))),
            }
        }
        bail!(
            "no instance type in any place could take {name}: {}",
            skipped.join("; ")
        )
    }

    /// Waits until the instance runs and passes its status checks, then until SSH lets the
    /// run's key in, presenting the host key the instance was told.
    async fn ready(
        &self,
        run: &RunId,
        launched: &Instance,
        host_key: &HostKey,
        identity: &Path,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<Host> {
        let instance = self.running(launched, hooks).await?;
        let name = &instance.name;
        let address = match self.config.address {
            AddressKind::Public => instance.public_ip.clone(),
            AddressKind::Private => instance.private_ip.clone(),
        }
        .ok_or_else(|| {
            anyhow!(
                "{name} ({}) has no {:?} address: for a runner inside the VPC set \
                 address = \"private\"; else use a subnet that gives public addresses",
                instance.id,
                self.config.address
            )
        })?;
        let pin = self.state.run(run).host_key(&format!("instance-{name}"));
        if let Some(dir) = pin.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&pin, format!("{}\n", host_key.public))?;
        let target = SshTarget {
            host: address.clone(),
            port: self.config.ssh_port,
            user: self.config.user.clone(),
            identity_files: vec![identity.to_path_buf()],
        };
        hooks.progress(
            Stage::Acquire,
            format!(
                "{name}: running at {address}, status checks passed; waiting for SSH \
                 (ssh_timeout {})",
                whole_seconds(self.config.ssh_timeout)
            ),
        );
        let deadline = std::time::Instant::now() + self.config.ssh_timeout;
        let session =
            SshSession::connect_until(&target, &HostKeyPolicy::PinFile(pin), deadline, None)
                .await
                .map_err(|e| {
                    anyhow!(
                        "{name}: SSH at {address}:{} did not let metalab in within {} \
                     (`ssh_timeout` in [provider.ec2]): {e}",
                        self.config.ssh_port,
                        whole_seconds(self.config.ssh_timeout)
                    )
                })?;
        let session = Arc::new(session);
        Ok(Host {
            name: name.clone(),
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

    /// Polls the instance until it is running with both status checks passed; one that ends
    /// on the way (AWS took it back, it failed to boot) or takes longer than
    /// `provision_timeout` fails the run, and release terminates it.
    async fn running(&self, launched: &Instance, hooks: &dyn RunHooks) -> anyhow::Result<Instance> {
        let name = &launched.name;
        let deadline = Instant::now() + self.config.provision_timeout;
        let mut last = String::new();
        loop {
            // EC2 may not list an instance it has just launched: that is not an answer yet.
            if let Some(i) = self
                .ec2()
                .await
                .instance(&launched.id)
                .await
                .map_err(api_error)?
            {
                if i.is_ending() {
                    let why = interruption(i.state_reason.as_deref())
                        .or(i.state_reason.clone())
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    bail!("{name} ({}) is {} before it was ready{why}", i.id, i.state);
                }
                let checks = i.state == "running"
                    && self
                        .ec2()
                        .await
                        .status_checks_pass(&i.id)
                        .await
                        .map_err(api_error)?;
                if checks {
                    return Ok(i);
                }
                let line = format!(
                    "{name}: {}{}",
                    i.state,
                    if i.state == "running" {
                        ", status checks pending"
                    } else {
                        ""
                    }
                );
                if line != last {
                    hooks.progress(Stage::Acquire, line.clone());
                    last = line;
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "{name} ({}) was not running with its status checks passed within {} \
                     (`provision_timeout` in [provider.ec2])",
                    launched.id,
                    whole_seconds(self.config.provision_timeout)
                );
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }

    /// Terminates every instance of the run (those it launched, and any carrying its tag) and
    /// waits until each is gone. What is not, is added to `left`.
    async fn release_instances(
        &self,
        run: &RunId,
        made: &mut Made,
        hooks: &dyn RunHooks,
        left: &mut Vec<String>,
    ) {
        let say = |m: String| hooks.progress(Stage::Release, m);
        let mut ids: Vec<(String, String)> = made
            .instances
            .iter()
            .filter_map(|(name, id, _)| Some((id.clone()?, name.clone())))
            .collect();
        let mut swept = true;
        match self
            .ec2()
            .await
            .instances_tagged(RUN_TAG, Some(&run.to_string()))
            .await
        {
            Ok(tagged) => {
                for i in tagged {
                    if !ids.iter().any(|(id, _)| *id == i.id) {
                        ids.push((i.id, i.name));
                    }
                }
            }
            Err(e) => {
                swept = false;
                left.push(format!(
                    "the instances tagged {RUN_TAG}={run} could not be listed: {}",
                    api_error(e)
                ));
            }
        }
        if !ids.is_empty() {
            let all: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
            if let Err(e) = self.ec2().await.terminate(&all).await
                && !e.means_gone()
            {
                say(format!("terminating {}: {}", all.join(", "), api_error(e)));
            }
        }
        let deadline = Instant::now() + RELEASE_DEADLINE;
        for (id, name) in &ids {
            match self.until_terminated(id, deadline).await {
                Ok(reason) => match interruption(reason.as_deref()) {
                    Some(taken) => say(format!("{name} ({id}): terminated: {taken}")),
                    None => say(format!("{name} ({id}): terminated")),
                },
                Err(e) => {
                    swept = false;
                    left.push(format!("instance {name} ({id}): {e:#}"));
                }
            }
        }
        if swept {
            for (_, _, entry) in made.instances.drain(..) {
                hooks.journal_done(entry);
            }
        }
    }

    /// Asks again until the instance is terminated or unknown to EC2; answers why it ended, when
    /// EC2 says.
    async fn until_terminated(
        &self,
        id: &str,
        deadline: Instant,
    ) -> anyhow::Result<Option<String>> {
        loop {
            match self.ec2().await.instance(id).await {
                Ok(None) => return Ok(None),
                Ok(Some(i)) if i.state == "terminated" => return Ok(i.state_reason),
                Ok(Some(i)) if Instant::now() >= deadline => {
                    bail!(
                        "still {} after {}",
                        i.state,
                        whole_seconds(RELEASE_DEADLINE)
                    )
                }
                Ok(Some(i)) if i.state != "shutting-down" => {
                    // Stopped, or a terminate that did not take: ask again.
                    self.ec2()
                        .await
                        .terminate(&[id.to_owned()])
                        .await
                        .map_err(api_error)?;
                }
                Ok(Some(_)) => {}
                Err(e) if Instant::now() >= deadline => return Err(api_error(e)),
                Err(_) => {}
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }

    /// Deletes the run's security group (by its id, and any group carrying the run's tag),
    /// retrying while the network interfaces of its terminated instances still hold it.
    async fn release_group(
        &self,
        run: &RunId,
        made: &mut Made,
        hooks: &dyn RunHooks,
        left: &mut Vec<String>,
    ) {
        let Some((known, entry)) = made.group.take() else {
            return;
        };
        let mut ids: Vec<String> = known.into_iter().collect();
        match self
            .ec2()
            .await
            .security_groups_tagged(RUN_TAG, Some(&run.to_string()))
            .await
        {
            Ok(groups) => {
                for g in groups {
                    if !ids.contains(&g.id) {
                        ids.push(g.id);
                    }
                }
            }
            Err(e) => {
                left.push(format!(
                    "security group {}: the groups tagged {RUN_TAG}={run} could not be listed: {}",
                    run_name(run),
                    api_error(e)
                ));
                return;
            }
        }
        let deadline = Instant::now() + RELEASE_DEADLINE;
        let mut all_gone = true;
        for id in ids {
            match self.delete_group_until_gone(&id, deadline).await {
                Ok(()) => hooks.progress(Stage::Release, format!("security group {id}: deleted")),
                Err(e) => {
                    all_gone = false;
                    left.push(format!("security group {id}: {e:#}"));
                }
            }
        }
        if all_gone {
            hooks.journal_done(entry);
        }
    }

    /// Deletes a security group, retrying while the network interfaces of terminated
    /// instances still hold it; one already gone is deleted.
    async fn delete_group_until_gone(&self, id: &str, deadline: Instant) -> anyhow::Result<()> {
        loop {
            match self.ec2().await.delete_security_group(id).await {
                Ok(()) => return Ok(()),
                Err(e) if e.means_gone() => return Ok(()),
                Err(Ec2Error::InUse { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(self.config.poll).await;
                }
                Err(e) => return Err(api_error(e)),
            }
        }
    }

    async fn release_key_pair(
        &self,
        run: &RunId,
        made: &mut Made,
        hooks: &dyn RunHooks,
        left: &mut Vec<String>,
    ) {
        let Some(entry) = made.key_pair.take() else {
            return;
        };
        let name = run_name(run);
        match self.ec2().await.delete_key_pair(&name).await {
            Ok(()) => {
                hooks.progress(Stage::Release, format!("key pair {name}: deleted"));
                hooks.journal_done(entry);
            }
            Err(e) if e.means_gone() => hooks.journal_done(entry),
            Err(e) => left.push(format!("key pair {name}: {}", api_error(e))),
        }
    }

    /// Removes the run's private key: nothing may log in with it after the run.
    fn remove_private_key(&self, run: &RunId, left: &mut Vec<String>) {
        super::remove_key_files(&self.state.run(run).ec2_key(), left);
    }
}

#[async_trait]
impl Provider for Ec2Provider {
    fn describe(&self) -> String {
        format!(
            "ec2: {} x {} in {}",
            self.config.instances,
            self.config.instance_types.join("/"),
            self.config.region
        )
    }

    fn lanes(&self) -> usize {
        self.config.instances
    }

    async fn acquire(
        &self,
        run: &RunId,
        wanted: usize,
        hooks: &dyn RunHooks,
    ) -> anyhow::Result<Vec<Host>> {
        let cidrs = self.ssh_from().await?;
        let expires = Utc::now()
            + chrono::Duration::from_std(self.config.ttl).unwrap_or(chrono::Duration::hours(3));
        let tags = self.tags(run, &run_name(run), expires);
        let identity = self.import_key(run, hooks, &tags).await?;
        let group = self.create_group(run, hooks, &tags, &cidrs).await?;
        let count = wanted.clamp(1, self.config.instances.max(1));
        let mut launched = Vec::new();
        for n in 1..=count {
            let name = format!("{}-{n}", run_name(run));
            let host_key = HostKey::generate()?;
            let instance = self.launch(run, &name, &group, &host_key, hooks).await?;
            launched.push((instance, host_key));
        }
        let hosts = futures::future::join_all(
            launched
                .iter()
                .map(|(i, key)| self.ready(run, i, key, &identity, hooks)),
        )
        .await;
        hosts.into_iter().collect()
    }

    /// Terminates what the run launched, or may have, deletes its group, key pair and private
    /// key; fails naming everything of the run that is left.
    async fn release(&self, run: &RunId, hooks: &dyn RunHooks) -> anyhow::Result<()> {
        let mut made = self.made.lock().await;
        let mut left = Vec::new();
        if made.unanswered {
            // What it made shows in the lists only once EC2 has carried it out.
            hooks.progress(
                Stage::Release,
                format!(
                    "a create was in flight when the run stopped: giving EC2 {} to carry it out \
                     before looking for what the run made",
                    whole_seconds(IN_FLIGHT_SETTLE)
                ),
            );
            tokio::time::sleep(IN_FLIGHT_SETTLE).await;
        }
        if !made.instances.is_empty() || made.group.is_some() {
            self.release_instances(run, &mut made, hooks, &mut left)
                .await;
        }
        self.release_group(run, &mut made, hooks, &mut left).await;
        self.release_key_pair(run, &mut made, hooks, &mut left)
            .await;
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

/// AWS's reason for ending an instance, in words, when it took the instance back: a spot
/// interruption. The run's failure is then AWS's, not the lab's.
fn interruption(reason: Option<&str>) -> Option<String> {
    let reason = reason?;
    reason
        .contains("SpotInstanceTermination")
        .then(|| format!("AWS took the spot instance back ({reason})"))
}

/// EC2 errors as the run reports them: refused credentials are the user's input to fix.
fn api_error(e: Ec2Error) -> anyhow::Error {
    match e {
        none @ Ec2Error::NoCredentials { .. } => InputError(format!(
            "{none}: give metalab credentials the standard AWS way (AWS_PROFILE or `profile` in \
             [provider.ec2], AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, SSO, an instance role)"
        ))
        .into(),
        credentials @ Ec2Error::Credentials { .. } => InputError(format!(
            "{credentials}: check the AWS credentials metalab finds (AWS_PROFILE or `profile`, \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, SSO, an instance role) and that they \
             may manage EC2 instances, key pairs and security groups"
        ))
        .into(),
        other => other.into(),
    }
}
