//! A native SSH session (russh): one connection per machine for all of its commands, instead of
//! an `ssh` or `vagrant ssh -c` process per command.
//!
//! Commands run under `timeout --kill-after`, which puts them in a process group of their own and
//! kills that group when the time is up, so a timeout really stops the remote command. The
//! server's host key is checked against a pin file: the first connection records it and every
//! later one (including `metalab exec` from another process) must see the same key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};

use super::{
    Command, Exit, KILL_GRACE, Outcome, OutputSink, Stream, Transport, TransportError, sh_quote,
};

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
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// Trust the key seen first and record it in this file; refuse any other key afterwards.
    /// Right for fresh VMs, whose keys are generated at their first boot.
    PinFile(PathBuf),
}

/// An open SSH connection; cheap to share between tasks.
pub struct SshSession {
    target: SshTarget,
    handle: Handle<HostKeyCheck>,
}

/// How long a remote command may stay silent past its own timeout before the connection is
/// declared dead.
const NO_ANSWER_GRACE: Duration = Duration::from_secs(30);

impl SshSession {
    /// Connects and authenticates with the first identity file the server accepts.
    pub async fn connect(
        target: &SshTarget,
        policy: &HostKeyPolicy,
        timeout: Duration,
    ) -> Result<SshSession, TransportError> {
        let fail = |reason: String| TransportError::Connect {
            target: target.describe(),
            reason,
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        });
        let check = HostKeyCheck {
            policy: policy.clone(),
        };
        let addr = (target.host.as_str(), target.port);
        let mut handle = tokio::time::timeout(timeout, client::connect(config, addr, check))
            .await
            .map_err(|_| fail(format!("no SSH handshake within {}s", timeout.as_secs())))?
            .map_err(|e| fail(connect_reason(&e, policy)))?;
        authenticate(&mut handle, target).await.map_err(fail)?;
        Ok(SshSession {
            target: target.clone(),
            handle,
        })
    }

    /// Connects, retrying until `deadline` while the server is not up yet (a booting VM).
    pub async fn connect_until(
        target: &SshTarget,
        policy: &HostKeyPolicy,
        deadline: Instant,
    ) -> Result<SshSession, TransportError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match Self::connect(target, policy, left.min(Duration::from_secs(20))).await {
                Ok(s) => return Ok(s),
                Err(e)
                    if Instant::now() + Duration::from_secs(1) >= deadline || is_permanent(&e) =>
                {
                    return Err(e);
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
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

    /// The remote command line: the script under `timeout`, as root if asked.
    fn command_line(cmd: &Command) -> String {
        let secs = cmd.timeout.as_secs().max(1);
        let line = format!(
            "timeout --kill-after={}s {secs}s bash -c {}",
            KILL_GRACE.as_secs(),
            sh_quote(&cmd.wrapped_script())
        );
        if cmd.sudo {
            format!("sudo -n {line}")
        } else {
            line
        }
    }
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
        channel
            .exec(true, Self::command_line(cmd))
            .await
            .map_err(|e| self.dropped(format!("cannot start the command: {e}")))?;
        if let Some(data) = &cmd.stdin {
            channel
                .data(&data[..])
                .await
                .map_err(|e| self.dropped(format!("cannot send stdin: {e}")))?;
        }
        let _ = channel.eof().await;
        let limit = cmd.timeout + KILL_GRACE + NO_ANSWER_GRACE;
        let mut exit = None;
        let read = async {
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => sink.output(Stream::Stdout, &data),
                    ChannelMsg::ExtendedData { data, .. } => sink.output(Stream::Stderr, &data),
                    ChannelMsg::ExitStatus { exit_status } => {
                        exit = Some(Exit::Code(exit_status as i32))
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        exit = Some(Exit::Signal(signal_text(&signal_name)))
                    }
                    _ => {}
                }
            }
        };
        if tokio::time::timeout(limit, read).await.is_err() {
            return Err(self.dropped(format!(
                "no answer {}s after the command's timeout",
                NO_ANSWER_GRACE.as_secs()
            )));
        }
        let exit = exit.ok_or_else(|| self.dropped("the channel closed without an exit status"))?;
        let duration = started.elapsed();
        // `timeout` exits 124 after SIGTERM and 137 after SIGKILL; a command exiting 124 on its own
        // before its deadline is not a timeout.
        let timed_out =
            matches!(exit, Exit::Code(124) | Exit::Code(137)) && duration >= cmd.timeout;
        Ok(Outcome {
            exit,
            timed_out,
            duration,
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

/// A host-key mismatch or a refused key will not fix itself by retrying.
fn is_permanent(e: &TransportError) -> bool {
    let text = e.to_string();
    text.contains("host key") || text.contains("no key was accepted")
}

fn connect_reason(e: &russh::Error, policy: &HostKeyPolicy) -> String {
    match (e, policy) {
        (russh::Error::UnknownKey, HostKeyPolicy::PinFile(path)) => format!(
            "the server's host key differs from the one pinned in {} (a different machine answers at this address)",
            path.display()
        ),
        _ => e.to_string(),
    }
}

fn signal_text(sig: &russh::Sig) -> String {
    match sig {
        russh::Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// The client side's host-key check, run by russh during the handshake.
struct HostKeyCheck {
    policy: HostKeyPolicy,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        match &self.policy {
            HostKeyPolicy::PinFile(path) => Ok(check_pin(path, key)),
        }
    }
}

/// True when `key` is the pinned key, or when nothing was pinned yet (and pins it now).
fn check_pin(path: &Path, key: &PublicKey) -> bool {
    let Ok(line) = key.to_openssh() else {
        return false;
    };
    match std::fs::read_to_string(path) {
        Ok(pinned) => pinned.trim() == line.trim(),
        Err(_) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            tracing::debug!(
                "pinned host key {} in {}",
                key.fingerprint(HashAlg::Sha256),
                path.display()
            );
            std::fs::write(path, format!("{line}\n")).is_ok()
        }
    }
}
