//! A native SSH session (russh): one connection per machine for all of its commands, instead of
//! an `ssh` or `vagrant ssh -c` process per command.
//!
//! Every command carries a tag (a variable in its command line and environment). A timeout finds
//! the command's processes by that tag and kills their process groups, so it really stops the
//! remote command. The server's host key is checked against a pin file: the first connection
//! records it and every later one (including `metalab exec` from another process) must see the
//! same key.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};

use super::{
    Command, Exit, KILL_GRACE, Outcome, OutputSink, Stream, Transport, TransportError, sh_quote,
};
use crate::retry::Poll;

/// Where to connect, as `vagrant ssh-config` or an inventory describes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
}

impl SshTarget {
    pub fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// How the server's host key is checked.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKeyPolicy {
    /// Trust the key seen first and record it in this file; refuse any other key afterwards.
    /// Right for fresh VMs, whose keys are generated at their first boot.
    PinFile(PathBuf),
    /// The key must be in this OpenSSH `known_hosts` file. With `trust_first_use`, a host not in
    /// the file yet is added to it on first contact; a changed key is always refused.
    KnownHosts {
        path: PathBuf,
        trust_first_use: bool,
    },
}

/// Everything needed to open a session again later (e.g. `metalab exec` jumping through a
/// remote host).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SshAccess {
    pub target: SshTarget,
    pub policy: HostKeyPolicy,
}

/// An open SSH connection; cheap to share between tasks.
pub struct SshSession {
    target: SshTarget,
    policy: HostKeyPolicy,
    handle: Handle<HostKeyCheck>,
}

/// A remote command kept running by [`SshSession::hold`].
pub struct Held {
    channel: russh::Channel<client::Msg>,
}

impl Held {
    /// Closes the command's stdin, which ends it, and waits briefly for it to go.
    pub async fn release(mut self) {
        let _ = self.channel.eof().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while self.channel.wait().await.is_some() {}
        })
        .await;
    }
}

/// How long a remote command may stay silent past its own timeout before the connection is
/// declared dead.
const NO_ANSWER_GRACE: Duration = Duration::from_secs(30);

/// The most one try of [`SshSession::connect_until`] may take (connection and handshake), so
/// that a try that hangs on a half-booted machine leaves time for the next.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

impl SshSession {
    /// Connects and authenticates with the first identity file the server accepts.
    pub async fn connect(
        target: &SshTarget,
        policy: &HostKeyPolicy,
        timeout: Duration,
    ) -> Result<SshSession, TransportError> {
        let fail = |reason: String| connect_error(target, reason);
        let addr = (target.host.as_str(), target.port);
        let socket = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| fail(format!("no TCP connection within {}s", timeout.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        let _ = socket.set_nodelay(true);
        Self::handshake(target, policy, timeout, socket).await
    }

    /// Connects to `target` through this session's server (a `direct-tcpip` channel), as
    /// `ssh -J` does: for VMs whose addresses only their host can reach.
    pub async fn connect_via(
        &self,
        target: &SshTarget,
        policy: &HostKeyPolicy,
        timeout: Duration,
    ) -> Result<SshSession, TransportError> {
        let channel = tokio::time::timeout(
            timeout,
            self.handle.channel_open_direct_tcpip(
                target.host.clone(),
                u32::from(target.port),
                "127.0.0.1",
                0,
            ),
        )
        .await
        .map_err(|_| {
            connect_error(
                target,
                format!(
                    "no tunnel through {} within {}s",
                    self.target.describe(),
                    timeout.as_secs()
                ),
            )
        })?
        .map_err(|e| {
            connect_error(
                target,
                format!("no tunnel through {}: {e}", self.target.describe()),
            )
        })?;
        Self::handshake(target, policy, timeout, channel.into_stream()).await
    }

    /// The SSH handshake, host-key check and authentication over an established stream.
    async fn handshake<S>(
        target: &SshTarget,
        policy: &HostKeyPolicy,
        timeout: Duration,
        stream: S,
    ) -> Result<SshSession, TransportError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let fail = |reason: String| connect_error(target, reason);
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        });
        let refusal = Arc::new(std::sync::Mutex::new(None));
        let check = HostKeyCheck {
            policy: policy.clone(),
            host: target.host.clone(),
            port: target.port,
            refusal: refusal.clone(),
        };
        let mut handle =
            tokio::time::timeout(timeout, client::connect_stream(config, stream, check))
                .await
                .map_err(|_| fail(format!("no SSH handshake within {}s", timeout.as_secs())))?
                .map_err(|e| {
                    let why = refusal.lock().expect("not poisoned").take();
                    fail(why.unwrap_or_else(|| e.to_string()))
                })?;
        authenticate(&mut handle, target).await.map_err(fail)?;
        Ok(SshSession {
            target: target.clone(),
            policy: policy.clone(),
            handle,
        })
    }

    /// Connects (directly, or through `via`), retrying at [`Poll::SSH_BOOT`]'s pace until
    /// `deadline` while the server is not up yet (a booting VM). A refused host key or user key
    /// ends it at once.
    pub async fn connect_until(
        target: &SshTarget,
        policy: &HostKeyPolicy,
        deadline: Instant,
        via: Option<&SshSession>,
    ) -> Result<SshSession, TransportError> {
        let mut polling = Poll::SSH_BOOT.until(tokio::time::Instant::from_std(deadline));
        loop {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(CONNECT_ATTEMPT_TIMEOUT);
            let attempt = match via {
                Some(jump) => jump.connect_via(target, policy, left).await,
                None => Self::connect(target, policy, left).await,
            };
            match attempt {
                Ok(s) => return Ok(s),
                Err(e) if is_permanent(&e) => return Err(e),
                Err(e) => {
                    if !polling.pause_before_deadline().await {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Forwards every connection accepted on `listener` to `host:port` as seen from the server
    /// (`ssh -L`), until the listener fails or the session ends.
    pub async fn forward(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        host: String,
        port: u16,
    ) -> Result<(), TransportError> {
        loop {
            let (mut local, peer) = listener
                .accept()
                .await
                .map_err(|e| self.dropped(format!("cannot accept on the forwarded port: {e}")))?;
            let channel = self
                .handle
                .channel_open_direct_tcpip(
                    host.clone(),
                    u32::from(port),
                    peer.ip().to_string(),
                    u32::from(peer.port()),
                )
                .await
                .map_err(|e| self.dropped(format!("cannot open a tunnel to {host}:{port}: {e}")))?;
            tokio::spawn(async move {
                let mut remote = channel.into_stream();
                let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
            });
        }
    }

    /// True once the connection has ended (dropped, or closed).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// How to open this session again.
    pub fn access(&self) -> SshAccess {
        SshAccess {
            target: self.target.clone(),
            policy: self.policy.clone(),
        }
    }

    /// Starts `script` and waits until it prints `ready` on stdout, leaving it running until
    /// [`Held::release`] or until the connection ends (which ends it too). Returns `None` when
    /// the script ends before it is ready, e.g. a lock that is taken.
    pub async fn hold(
        &self,
        script: &str,
        ready: &str,
        timeout: Duration,
    ) -> Result<Option<Held>, TransportError> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.dropped(format!("cannot open a channel: {e}")))?;
        channel
            .exec(true, script)
            .await
            .map_err(|e| self.dropped(format!("cannot start the command: {e}")))?;
        let mut seen = Vec::new();
        let wait = async {
            while let Some(msg) = channel.wait().await {
                if let ChannelMsg::Data { data } = msg {
                    seen.extend_from_slice(&data);
                    if String::from_utf8_lossy(&seen).contains(ready) {
                        return true;
                    }
                }
            }
            false
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(true) => Ok(Some(Held { channel })),
            Ok(false) => Ok(None),
            Err(_) => Err(self.dropped(format!(
                "`{script}` was not ready within {}s",
                timeout.as_secs()
            ))),
        }
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }

    fn dropped(&self, reason: impl Into<String>) -> TransportError {
        TransportError::Dropped {
            target: self.target.describe(),
            reason: reason.into(),
        }
    }

    /// The remote command line: the command, with its tag exported first. sshd runs it in a new
    /// session whose leader is the login shell, so the tag marks every process group the command
    /// starts. Nothing extra is spawned or written, which matters when every spawn inside a TCG
    /// guest costs tens of milliseconds and every extra packet from its sshd a few.
    fn command_line(&self, cmd: &Command, tag: &str) -> String {
        let export = format!("export {COMMAND_TAG}={tag}\n");
        let plain = cmd.cwd.is_none() && cmd.env.is_empty();
        match (self_sudo(cmd, &self.target), plain) {
            (false, true) => format!("{export}{}", cmd.script),
            (false, false) => format!("{export}exec bash -c {}", sh_quote(&cmd.wrapped_script())),
            (true, _) => format!(
                "exec sudo -n bash -c {}",
                sh_quote(&format!("{export}{}", cmd.wrapped_script()))
            ),
        }
    }

    /// Sends `signal` to every process group of the command tagged `tag`, through a channel of
    /// its own, as root when the command ran as root.
    async fn signal_command(&self, tag: &str, signal: &str, sudo: bool) {
        let line = if sudo {
            let find = sh_quote(&signal_tagged_script(tag, signal));
            format!("sudo -n sh -c {find} || sh -c {find}")
        } else {
            signal_tagged_script(tag, signal)
        };
        if let Ok(ch) = self.handle.channel_open_session().await {
            let _ = ch.exec(true, line).await;
            let mut ch = ch;
            while ch.wait().await.is_some() {}
        }
    }
}

/// The variable that tags a command's processes.
const COMMAND_TAG: &str = "METALAB_COMMAND_ID";

/// A tag no other command shares, on this host or any other metalab process.
fn new_command_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A shell script that signals the process groups of every process whose arguments (the shell
/// running the command line) or environment (what that shell started, even in a new session)
/// hold `tag`. The bracket in the pattern keeps the search from finding its own arguments.
fn signal_tagged_script(tag: &str, signal: &str) -> String {
    let (head, last) = COMMAND_TAG.split_at(COMMAND_TAG.len() - 1);
    format!(
        "grep -lsaz '{head}[{last}]={tag}' /proc/[0-9]*/cmdline /proc/[0-9]*/environ | \
         while IFS=/ read -r _ _ pid _; do \
           s=$(cat /proc/$pid/stat 2>/dev/null) || continue; s=${{s##*) }}; set -- $s; echo $3; \
         done | sort -u | while read -r group; do \
           [ \"$group\" -gt 1 ] && kill -s {signal} -- -$group 2>/dev/null; \
         done; true"
    )
}

/// Whether to go through sudo: only when root is wanted and the login user is not root.
fn self_sudo(cmd: &Command, target: &SshTarget) -> bool {
    cmd.sudo && target.user != "root"
}

#[async_trait]
impl Transport for SshSession {
    async fn exec(
        &self,
        cmd: &Command,
        sink: &mut dyn OutputSink,
    ) -> Result<Outcome, TransportError> {
        let started = Instant::now();
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.dropped(format!("cannot open a channel: {e}")))?;
        let tag = new_command_tag();
        channel
            .exec(true, self.command_line(cmd, &tag))
            .await
            .map_err(|e| self.dropped(format!("cannot start the command: {e}")))?;
        if let Some(source) = &cmd.stdin {
            let data = source
                .reader()
                .await
                .map_err(|e| self.dropped(format!("cannot read stdin: {e}")))?;
            channel
                .data(data)
                .await
                .map_err(|e| self.dropped(format!("cannot send stdin: {e}")))?;
        }
        let _ = channel.eof().await;
        let mut exit = None;
        let mut timed_out = false;
        // The sink had enough and the command was killed.
        let mut stopped = false;
        let sudo = self_sudo(cmd, &self.target);
        // A signal goes on its own channel while this one is still read: a session stops
        // delivering to every channel while one of them is not read, the signal's included.
        let mut signal: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
        let deadline = tokio::time::sleep(cmd.timeout);
        tokio::pin!(deadline);
        let kill_at = tokio::time::sleep(Duration::MAX);
        tokio::pin!(kill_at);
        let give_up = tokio::time::sleep(cmd.timeout + KILL_GRACE + NO_ANSWER_GRACE);
        tokio::pin!(give_up);
        loop {
            tokio::select! {
                msg = channel.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        sink.output(Stream::Stdout, &data);
                        if sink.enough() && !stopped {
                            stopped = true;
                            signal = Some(Box::pin(self.signal_command(&tag, "KILL", sudo)));
                        }
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => sink.output(Stream::Stderr, &data),
                    Some(ChannelMsg::ExitStatus { exit_status }) => exit = Some(Exit::Code(exit_status as i32)),
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => exit = Some(Exit::Signal(signal_text(&signal_name))),
                    Some(_) => {}
                    None => break,
                },
                _ = async { if let Some(s) = signal.as_mut() { s.await } }, if signal.is_some() => {
                    signal = None;
                }
                _ = &mut deadline, if !timed_out => {
                    timed_out = true;
                    signal = Some(Box::pin(self.signal_command(&tag, "TERM", sudo)));
                    kill_at.as_mut().reset(tokio::time::Instant::now() + KILL_GRACE);
                }
                _ = &mut kill_at => {
                    signal = Some(Box::pin(self.signal_command(&tag, "KILL", sudo)));
                    kill_at.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
                _ = &mut give_up => {
                    return Err(self.dropped(format!("no answer {}s after the command's timeout", NO_ANSWER_GRACE.as_secs())));
                }
            }
        }
        let exit = exit.ok_or_else(|| self.dropped("the channel closed without an exit status"))?;
        Ok(Outcome {
            exit,
            timed_out,
            duration: started.elapsed(),
        })
    }

    fn target(&self) -> String {
        self.target.describe()
    }
}

async fn authenticate(handle: &mut Handle<HostKeyCheck>, target: &SshTarget) -> Result<(), String> {
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| e.to_string())?
        .flatten();
    let mut tried = Vec::new();
    for path in &target.identity_files {
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(k) => k,
            Err(e) => {
                tried.push(format!("{} ({e})", path.display()));
                continue;
            }
        };
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
        match handle.authenticate_publickey(&target.user, key).await {
            Ok(r) if r.success() => return Ok(()),
            Ok(_) => tried.push(format!("{} (refused)", path.display())),
            Err(e) => return Err(format!("authentication failed: {e}")),
        }
    }
    Err(format!(
        "no key was accepted for user {}: tried {}",
        target.user,
        tried.join(", ")
    ))
}

/// A host-key problem or a refused key will not fix itself by retrying.
fn is_permanent(e: &TransportError) -> bool {
    let text = e.to_string();
    text.contains("host key") || text.contains("HOST KEY") || text.contains("no key was accepted")
}

fn connect_error(target: &SshTarget, reason: String) -> TransportError {
    TransportError::Connect {
        target: target.describe(),
        reason,
    }
}

fn signal_text(sig: &russh::Sig) -> String {
    match sig {
        russh::Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// The client side's host-key check, run by russh during the handshake. A refusal's reason is
/// left in `refusal`, because russh itself only reports "unknown key".
struct HostKeyCheck {
    policy: HostKeyPolicy,
    host: String,
    port: u16,
    refusal: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.refusal.lock().expect("not poisoned") =
                Some("host certificates are not supported".into());
            return Ok(false);
        };
        let verdict = match &self.policy {
            HostKeyPolicy::PinFile(path) => check_pin(path, key),
            HostKeyPolicy::KnownHosts {
                path,
                trust_first_use,
            } => check_known_hosts(path, *trust_first_use, &self.host, self.port, key),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(why) => {
                *self.refusal.lock().expect("not poisoned") = Some(why);
                Ok(false)
            }
        }
    }
}

fn check_known_hosts(
    path: &Path,
    trust_first_use: bool,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), String> {
    let fingerprint = key.fingerprint(HashAlg::Sha256);
    match russh::keys::check_known_hosts_path(host, port, key, path) {
        Ok(true) => Ok(()),
        Ok(false) if trust_first_use => {
            russh::keys::known_hosts::learn_known_hosts_path(host, port, key, path)
                .map_err(|e| format!("cannot record the host key in {}: {e}", path.display()))
        }
        Ok(false) => Err(format!(
            "host key {fingerprint} is not in {}; add it (ssh-keyscan -p {port} {host} >> {}) or set `known_hosts = \"trust-first-use\"` for this host",
            path.display(),
            path.display()
        )),
        Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
            "HOST KEY CHANGED: {host} now presents {fingerprint}, which differs from {}:{line}; refusing to connect",
            path.display()
        )),
        Err(e) => Err(format!("cannot check {}: {e}", path.display())),
    }
}

/// Accepts the pinned key, or pins `key` when nothing was pinned yet.
fn check_pin(path: &Path, key: &PublicKey) -> Result<(), String> {
    let line = key.to_openssh().map_err(|e| e.to_string())?;
    match std::fs::read_to_string(path) {
        Ok(pinned) if pinned.trim() == line.trim() => Ok(()),
        Ok(_) => Err(format!(
            "the server's host key differs from the one pinned in {} (a different machine answers at this address)",
            path.display()
        )),
        Err(_) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            tracing::debug!(
                "pinned host key {} in {}",
                key.fingerprint(HashAlg::Sha256),
                path.display()
            );
            std::fs::write(path, format!("{line}\n"))
                .map_err(|e| format!("cannot pin the host key in {}: {e}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signal_script_does_not_match_its_own_arguments() {
        let script = signal_tagged_script("00ff", "TERM");
        assert!(script.contains("METALAB_COMMAND_I[D]=00ff"), "{script}");
        assert!(!script.contains("METALAB_COMMAND_ID=00ff"), "{script}");
    }
}
