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

    /// The remote command line. Its first act reports the login shell's pid on stderr: sshd makes
    /// that shell a session and process-group leader, so a timeout can kill the whole group
    /// through a second channel. No extra process is spawned for a plain command, which matters
    /// when every spawn inside a TCG guest costs tens of milliseconds.
    fn command_line(&self, cmd: &Command) -> String {
        let report = format!("printf '{PID_TAG}%s\\n' $$ >&2; ");
        let plain = cmd.cwd.is_none() && cmd.env.is_empty();
        match (self_sudo(cmd, &self.target), plain) {
            (false, true) => format!("{report}{}", cmd.script),
            (false, false) => format!("{report}exec bash -c {}", sh_quote(&cmd.wrapped_script())),
            (true, _) => format!(
                "{report}exec sudo -n bash -c {}",
                sh_quote(&cmd.wrapped_script())
            ),
        }
    }

    /// Sends `signal` to the process group led by `pid`, through a channel of its own.
    async fn signal_group(&self, pid: u32, signal: &str, sudo: bool) {
        let kill = format!("kill -s {signal} -- -{pid} 2>/dev/null");
        let line = if sudo {
            format!("sudo -n {kill} || {kill}")
        } else {
            kill
        };
        if let Ok(ch) = self.handle.channel_open_session().await {
            let _ = ch.exec(true, line).await;
            let mut ch = ch;
            while ch.wait().await.is_some() {}
        }
    }
}

/// Whether to go through sudo: only when root is wanted and the login user is not root.
fn self_sudo(cmd: &Command, target: &SshTarget) -> bool {
    cmd.sudo && target.user != "root"
}

/// Marks the line on stderr that reports the remote shell's pid; removed from the output.
const PID_TAG: &str = "metalab-pid:";

/// Takes the pid report off the front of stderr, passing everything else through.
#[derive(Default)]
struct PidReport {
    pid: Option<u32>,
    head: Vec<u8>,
    done: bool,
}

impl PidReport {
    /// Returns the stderr bytes that belong to the command.
    fn feed<'a>(&mut self, data: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if self.done {
            return std::borrow::Cow::Borrowed(data);
        }
        self.head.extend_from_slice(data);
        let Some(nl) = self.head.iter().position(|&b| b == b'\n') else {
            return std::borrow::Cow::Borrowed(&[]);
        };
        self.done = true;
        let line = String::from_utf8_lossy(&self.head[..nl]).into_owned();
        match line.strip_prefix(PID_TAG) {
            Some(pid) => {
                self.pid = pid.trim().parse().ok();
                std::borrow::Cow::Owned(self.head[nl + 1..].to_vec())
            }
            None => std::borrow::Cow::Owned(std::mem::take(&mut self.head)),
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
            .exec(true, self.command_line(cmd))
            .await
            .map_err(|e| self.dropped(format!("cannot start the command: {e}")))?;
        if let Some(data) = &cmd.stdin {
            channel
                .data(&data[..])
                .await
                .map_err(|e| self.dropped(format!("cannot send stdin: {e}")))?;
        }
        let _ = channel.eof().await;
        let mut exit = None;
        let mut pid = PidReport::default();
        let mut timed_out = false;
        let deadline = tokio::time::sleep(cmd.timeout);
        tokio::pin!(deadline);
        let kill_at = tokio::time::sleep(Duration::MAX);
        tokio::pin!(kill_at);
        let give_up = tokio::time::sleep(cmd.timeout + KILL_GRACE + NO_ANSWER_GRACE);
        tokio::pin!(give_up);
        loop {
            tokio::select! {
                msg = channel.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => sink.output(Stream::Stdout, &data),
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        let rest = pid.feed(&data);
                        if !rest.is_empty() {
                            sink.output(Stream::Stderr, &rest);
                        }
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => exit = Some(Exit::Code(exit_status as i32)),
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => exit = Some(Exit::Signal(signal_text(&signal_name))),
                    Some(_) => {}
                    None => break,
                },
                _ = &mut deadline, if !timed_out => {
                    timed_out = true;
                    if let Some(p) = pid.pid {
                        self.signal_group(p, "TERM", self_sudo(cmd, &self.target)).await;
                    }
                    kill_at.as_mut().reset(tokio::time::Instant::now() + KILL_GRACE);
                }
                _ = &mut kill_at => {
                    if let Some(p) = pid.pid {
                        self.signal_group(p, "KILL", self_sudo(cmd, &self.target)).await;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_report_is_taken_off_stderr_even_when_split() {
        let mut r = PidReport::default();
        assert!(r.feed(b"metalab-pi").is_empty());
        assert_eq!(&*r.feed(b"d:4242\nfirst error\n"), b"first error\n");
        assert_eq!(r.pid, Some(4242));
        assert_eq!(&*r.feed(b"more"), b"more");
    }

    #[test]
    fn stderr_without_a_pid_report_passes_through() {
        let mut r = PidReport::default();
        assert_eq!(&*r.feed(b"bash: warning\n"), b"bash: warning\n");
        assert_eq!(r.pid, None);
    }
}
