//! Commands on this machine: `bash -c` in a process group of its own, so a timeout or a teardown
//! can stop everything the command started, and a Ctrl-C on the terminal reaches only metalab,
//! which decides how to stop its children.

use std::process::Stdio;
use std::time::Instant;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::{Command, Exit, KILL_GRACE, Outcome, OutputSink, Stream, Transport, TransportError};

/// Runs commands as local processes.
pub struct Local;

/// Kills a process group when dropped: an exec future dropped by a cancelled run leaves nothing.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

#[async_trait]
impl Transport for Local {
    async fn exec(
        &self,
        cmd: &Command,
        sink: &mut dyn OutputSink,
    ) -> Result<Outcome, TransportError> {
        let started = Instant::now();
        let mut child = spawn(cmd)?;
        let mut guard = GroupGuard(child.id().map(|id| Pid::from_raw(id as i32)));
        if let (Some(mut stdin), Some(source)) = (child.stdin.take(), cmd.stdin.clone()) {
            tokio::spawn(async move {
                if let Ok(mut reader) = source.reader().await {
                    let _ = tokio::io::copy(&mut reader, &mut stdin).await;
                }
            });
        }
        let (tx, mut rx) = mpsc::channel(64);
        pump(child.stdout.take(), Stream::Stdout, tx.clone());
        pump(child.stderr.take(), Stream::Stderr, tx);
        let deadline = tokio::time::sleep(cmd.timeout);
        tokio::pin!(deadline);
        let mut timed_out = false;
        let mut status = None;
        let mut output_open = true;
        // The sink had enough and the group was killed.
        let mut stopped = false;
        // A daemon the command started may keep the pipes open after the command exits:
        // stop reading a moment after the exit instead of waiting for it.
        let linger = tokio::time::sleep(std::time::Duration::MAX);
        tokio::pin!(linger);
        let kill_at = tokio::time::sleep(std::time::Duration::MAX);
        tokio::pin!(kill_at);
        while output_open || status.is_none() {
            tokio::select! {
                chunk = rx.recv(), if output_open => match chunk {
                    Some((stream, data)) => {
                        sink.output(stream, &data);
                        if sink.enough() && !stopped {
                            stopped = true;
                            if let Some(pgid) = guard.0 {
                                let _ = killpg(pgid, Signal::SIGKILL);
                            }
                        }
                    }
                    None => output_open = false,
                },
                st = child.wait(), if status.is_none() => {
                    status = Some(st.map_err(|e| spawn_error(cmd, e))?);
                    linger.as_mut().reset(tokio::time::Instant::now() + std::time::Duration::from_secs(2));
                }
                _ = &mut linger => output_open = false,
                _ = &mut deadline, if !timed_out => {
                    timed_out = true;
                    if let Some(pgid) = guard.0 {
                        let _ = killpg(pgid, Signal::SIGTERM);
                    }
                    kill_at.as_mut().reset(tokio::time::Instant::now() + KILL_GRACE);
                }
                // A leader that ignores SIGTERM would never be reaped.
                _ = &mut kill_at, if timed_out && status.is_none() => {
                    if let Some(pgid) = guard.0 {
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                }
            }
        }
        if timed_out {
            // The leader is reaped now, so the group is empty once every member has exited.
            finish_group(guard.0).await;
        }
        guard.0 = None;
        let status = status.expect("loop ends after the exit");
        Ok(Outcome {
            exit: exit_of(status),
            timed_out,
            duration: started.elapsed(),
        })
    }

    fn target(&self) -> String {
        "local".to_string()
    }
}

fn spawn(cmd: &Command) -> Result<tokio::process::Child, TransportError> {
    let mut script = cmd.script.clone();
    if cmd.sudo && !nix::unistd::geteuid().is_root() {
        script = format!("exec sudo -n bash -c {}", super::sh_quote(&script));
    }
    let mut c = crate::child_env::async_command("bash");
    c.arg("-c")
        .arg(script)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &cmd.cwd {
        c.current_dir(dir);
    }
    c.spawn().map_err(|e| spawn_error(cmd, e))
}

fn spawn_error(cmd: &Command, e: std::io::Error) -> TransportError {
    TransportError::Spawn {
        program: cmd.script.lines().next().unwrap_or("").to_string(),
        target: "local".to_string(),
        reason: e.to_string(),
    }
}

/// Waits up to the grace period for a signalled group to empty, then SIGKILLs what is left.
async fn finish_group(pgid: Option<Pid>) {
    let Some(pgid) = pgid else { return };
    let gone = async {
        while killpg(pgid, None).is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(KILL_GRACE, gone).await.is_err() {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

fn pump<R: AsyncRead + Unpin + Send + 'static>(
    reader: Option<R>,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) {
    let Some(mut reader) = reader else { return };
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 || tx.send((stream, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    });
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(sig)) => Exit::Signal(Signal::try_from(sig).map_or_else(
            |_| sig.to_string(),
            |s| s.as_str().trim_start_matches("SIG").to_string(),
        )),
        (None, None) => Exit::Code(-1),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::Collect;

    #[tokio::test]
    async fn streams_output_and_returns_the_exit_code() {
        let mut out = Collect::default();
        let cmd = Command::new("echo out; echo err >&2; exit 7", Duration::from_secs(10));
        let o = Local.exec(&cmd, &mut out).await.unwrap();
        assert_eq!(o.exit, Exit::Code(7));
        assert!(!o.timed_out);
        assert_eq!(out.stdout_text(), "out\n");
        assert_eq!(out.stderr_text(), "err\n");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // A grandchild in the background would outlive a kill of the shell alone.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let cmd = Command::new(script, Duration::from_millis(300));
        let o = Local.exec(&cmd, &mut Collect::default()).await.unwrap();
        assert!(o.timed_out);
        assert!(o.duration < Duration::from_secs(5), "{:?}", o.duration);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !marker.exists(),
            "the background grandchild survived the timeout"
        );
    }

    #[tokio::test]
    async fn a_command_ignoring_sigterm_is_killed_after_the_grace_period() {
        let cmd = Command::new("trap '' TERM; sleep 60", Duration::from_millis(200));
        let o = Local.exec(&cmd, &mut Collect::default()).await.unwrap();
        assert!(o.timed_out);
        assert_eq!(o.exit, Exit::Signal("KILL".into()));
        assert!(
            o.duration < KILL_GRACE + Duration::from_secs(3),
            "{:?}",
            o.duration
        );
    }

    #[tokio::test]
    async fn env_cwd_and_stdin_reach_the_command() {
        let mut out = Collect::default();
        let cmd = Command::new("echo \"$X $(pwd)\"; cat", Duration::from_secs(10))
            .env("X", "hello")
            .cwd("/tmp")
            .stdin(b"from stdin".to_vec());
        Local.exec(&cmd, &mut out).await.unwrap();
        assert_eq!(out.stdout_text(), "hello /tmp\nfrom stdin");
    }
}
