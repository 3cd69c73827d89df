//! How a command runs on a machine: a local process, or an SSH session (a host or a VM).
//!
//! Every transport streams output as it arrives, enforces a timeout that really stops the command
//! (its whole process group), and tells a command's own failure apart from the transport's: a
//! command that exits non-zero is an [`Outcome`]; a connection that drops is a [`TransportError`],
//! which the engine reports as an infrastructure error.

pub mod files;
pub mod keys;
pub mod local;
pub mod reconnect;
pub mod ssh;
pub mod unpack;

use std::time::Duration;

use async_trait::async_trait;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives a command's output while it runs.
pub trait OutputSink: Send {
    fn output(&mut self, stream: Stream, data: &[u8]);

    /// Whether the sink can take no more: the transport then kills the command (its whole
    /// process group) rather than stream what would only be dropped. A sink that drops what is
    /// over a cap while the command must run on (a test's log) never says so.
    fn enough(&self) -> bool {
        false
    }
}

/// A sink that drops everything.
pub struct Discard;

impl OutputSink for Discard {
    fn output(&mut self, _: Stream, _: &[u8]) {}
}

/// The most a [`Collect`] keeps of a stream: far beyond any listing metalab parses, and a bound
/// on what a VM (whose commands a suite may have replaced) can make metalab hold in memory.
pub const COLLECT_LIMIT: usize = 64 << 20;

/// Collects output in memory, for commands whose output metalab parses: at most
/// [`COLLECT_LIMIT`] bytes a stream; [`Collect::overflowed`] says when more came.
#[derive(Default)]
pub struct Collect {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes dropped past the limit, over both streams.
    pub dropped: u64,
}

impl OutputSink for Collect {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let kept = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let room = COLLECT_LIMIT.saturating_sub(kept.len()).min(data.len());
        kept.extend_from_slice(&data[..room]);
        self.dropped += (data.len() - room) as u64;
    }
}

impl Collect {
    /// Whether output was dropped: what is kept is not the whole answer, and must not be
    /// parsed as if it were.
    pub fn overflowed(&self) -> bool {
        self.dropped > 0
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A shell snippet to run, and how.
#[derive(Debug, Clone)]
pub struct Command {
    /// Run by `bash -c`.
    pub script: String,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub stdin: Option<Stdin>,
    /// After this long the command's process group gets SIGTERM, and SIGKILL 10 s later.
    pub timeout: Duration,
    /// Run as root through `sudo -n` (test VMs and hosts where the user is not root).
    pub sudo: bool,
}

impl Command {
    pub fn new(script: impl Into<String>, timeout: Duration) -> Command {
        Command {
            script: script.into(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout,
            sudo: false,
        }
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Command {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs(mut self, vars: &[(String, String)]) -> Command {
        self.env.extend_from_slice(vars);
        self
    }

    pub fn cwd(mut self, dir: impl Into<String>) -> Command {
        self.cwd = Some(dir.into());
        self
    }

    pub fn stdin(mut self, data: Vec<u8>) -> Command {
        self.stdin = Some(Stdin::Bytes(data));
        self
    }

    /// Streams a file into the command's stdin, without loading it into memory (boxes).
    pub fn stdin_file(mut self, path: impl Into<std::path::PathBuf>) -> Command {
        self.stdin = Some(Stdin::File(path.into()));
        self
    }

    pub fn sudo(mut self, yes: bool) -> Command {
        self.sudo = yes;
        self
    }

    /// The script with the working directory and environment folded in, for `bash -c`. SSH
    /// servers pass only whitelisted variables, so they travel inside the script instead.
    pub fn wrapped_script(&self) -> String {
        let mut s = String::new();
        if let Some(dir) = &self.cwd {
            s.push_str(&format!("cd {} || exit 127\n", sh_quote(dir)));
        }
        for (k, v) in &self.env {
            s.push_str(&format!("export {k}={}\n", sh_quote(v)));
        }
        s.push_str(&self.script);
        s
    }
}

/// What a command reads on stdin.
#[derive(Debug, Clone)]
pub enum Stdin {
    Bytes(Vec<u8>),
    File(std::path::PathBuf),
}

impl Stdin {
    /// A reader over the data, for a transport to copy from.
    pub async fn reader(&self) -> std::io::Result<Box<dyn tokio::io::AsyncRead + Unpin + Send>> {
        Ok(match self {
            Stdin::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
            Stdin::File(p) => Box::new(tokio::fs::File::open(p).await?),
        })
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit: Exit,
    /// The command ran past its timeout and was killed.
    pub timed_out: bool,
    pub duration: Duration,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0) && !self.timed_out
    }

    /// "exit 3", "killed by TERM", "timed out after 60s".
    pub fn describe(&self) -> String {
        if self.timed_out {
            return format!(
                "timed out after {}",
                humantime::format_duration(round_secs(self.duration))
            );
        }
        match &self.exit {
            Exit::Code(c) => format!("exit {c}"),
            Exit::Signal(s) => format!("killed by {s}"),
        }
    }
}

/// A transport failure: the command's fate is unknown. Always an infrastructure error.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("connection to {target} dropped: {reason}")]
    Dropped { target: String, reason: String },
    #[error("cannot start `{program}` on {target}: {reason}")]
    Spawn {
        program: String,
        target: String,
        reason: String,
    },
}

/// Somewhere commands run.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Runs a command to completion (or timeout), streaming its output into `sink`.
    async fn exec(
        &self,
        cmd: &Command,
        sink: &mut dyn OutputSink,
    ) -> Result<Outcome, TransportError>;

    /// A short name for messages: "local", "vagrant@192.168.121.5:22".
    fn target(&self) -> String;
}

/// Runs a command to completion and returns its stdout. A failure is an error naming the command
/// (its first line) and carrying its stderr.
pub async fn stdout_of(t: &dyn Transport, cmd: &Command) -> anyhow::Result<String> {
    let mut out = Collect::default();
    let outcome = t.exec(cmd, &mut out).await?;
    let first = cmd.script.lines().next().unwrap_or_default();
    if out.overflowed() {
        anyhow::bail!(
            "{first}: more than {} MiB of output; {} bytes dropped, so its answer is not used",
            COLLECT_LIMIT >> 20,
            out.dropped
        );
    }
    if !outcome.success() {
        let more = if cmd.script.trim_end().contains('\n') {
            " …"
        } else {
            ""
        };
        anyhow::bail!(
            "{first}{more} ({}): {}",
            outcome.describe(),
            out.stderr_text().trim()
        );
    }
    Ok(out.stdout_text())
}

/// Cuts a script's output at the lines that start with `mark` (what a script listing several
/// things prints before each): the rest of each mark line, and the lines that follow it.
pub fn marked_sections<'a>(output: &'a str, mark: &str) -> Vec<(&'a str, String)> {
    let mut found: Vec<(&str, String)> = Vec::new();
    for line in output.lines() {
        if let Some(head) = line.strip_prefix(mark) {
            found.push((head.trim(), String::new()));
        } else if let Some((_, body)) = found.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    found
}

/// Quotes a string for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub(crate) fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs_f64().round() as u64)
}

/// Seconds the process group gets between SIGTERM and SIGKILL after a timeout.
pub const KILL_GRACE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collected_output_stops_at_its_limit_and_says_so() {
        let mut out = Collect::default();
        out.output(Stream::Stderr, b"warning\n");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(COLLECT_LIMIT >> 20) {
            out.output(Stream::Stdout, &chunk);
        }
        assert!(!out.overflowed(), "exactly the limit is kept whole");
        out.output(Stream::Stdout, b"more");
        assert_eq!(out.stdout.len(), COLLECT_LIMIT);
        assert_eq!(out.dropped, 4);
        assert!(out.overflowed());
        assert_eq!(
            out.stderr_text(),
            "warning\n",
            "each stream has its own room"
        );
    }

    #[tokio::test]
    async fn an_answer_past_the_limit_is_an_error_not_a_short_answer() {
        let cmd = Command::new(
            format!("head -c {} /dev/zero; echo tail", COLLECT_LIMIT + 1),
            std::time::Duration::from_secs(60),
        );
        let e = stdout_of(&local::Local, &cmd).await.unwrap_err();
        assert!(e.to_string().contains("more than 64 MiB of output"), "{e}");
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("plain/path-1"), "plain/path-1");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn output_is_cut_at_its_marks_and_what_comes_before_the_first_is_dropped() {
        let out = "noise\n@@m box /h/boxes/a\n{\"name\": \"x\"}\n\n@@m registered /h/v/1\n";
        let found = marked_sections(out, "@@m");
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0],
            ("box /h/boxes/a", "{\"name\": \"x\"}\n\n".to_string())
        );
        assert_eq!(found[1], ("registered /h/v/1", String::new()));
    }

    #[test]
    fn env_and_cwd_are_folded_into_the_script() {
        let c = Command::new("echo $A", Duration::from_secs(1))
            .cwd("/tmp/x y")
            .env("A", "1 2");
        assert_eq!(
            c.wrapped_script(),
            "cd '/tmp/x y' || exit 127\nexport A='1 2'\necho $A"
        );
    }
}
