//! Output sinks for the engine: every command's output goes to a log file under the run's
//! artifacts, while the engine keeps what it needs to judge the command (expectations, metrics).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::transport::{OutputSink, Stream};

/// Bytes of output kept in memory per command; the log file always gets everything.
const CAPTURE_LIMIT: usize = 8 << 20;

type LineCallback<'a> = Box<dyn FnMut(&str) + Send + 'a>;

/// Tees output into a log file and an in-memory capture, and hands complete lines to a callback.
pub struct LogSink<'a> {
    file: Option<File>,
    pub stdout: Vec<u8>,
    /// stdout and stderr interleaved as they arrived: what expectations are checked against.
    pub combined: Vec<u8>,
    partial: Vec<u8>,
    on_line: Option<LineCallback<'a>>,
    /// `Some`: only whole lines go to the file, so that several sinks can share it; this holds
    /// the start of a line not yet finished.
    unwritten: Option<Vec<u8>>,
}

impl<'a> LogSink<'a> {
    /// Appends to `path`, creating it and its directory. A log that cannot be written is
    /// reported once on stderr and otherwise ignored: losing a log must not fail a test.
    pub fn append(path: &Path) -> LogSink<'a> {
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| File::options().create(true).append(true).open(path));
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("metalab: warning: cannot write {}: {e}", path.display());
                None
            }
        };
        LogSink {
            file,
            stdout: Vec::new(),
            combined: Vec::new(),
            partial: Vec::new(),
            on_line: None,
            unwritten: None,
        }
    }

    /// Writes whole lines only, so that sinks of commands running side by side can append to one
    /// file without cutting each other's lines.
    pub fn whole_lines(mut self) -> LogSink<'a> {
        self.unwritten = Some(Vec::new());
        self
    }

    /// Calls `f` with each complete line of output (both streams).
    pub fn on_line(mut self, f: impl FnMut(&str) + Send + 'a) -> LogSink<'a> {
        self.on_line = Some(Box::new(f));
        self
    }

    /// Writes a line of metalab's own into the log, e.g. the command about to run.
    pub fn note(&mut self, text: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{text}");
        }
    }

    pub fn combined_text(&self) -> String {
        String::from_utf8_lossy(&self.combined).into_owned()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last non-empty line of output, to quote in a failure message.
    pub fn last_line(&self) -> Option<String> {
        self.combined_text()
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| l.chars().take(200).collect())
    }
}

impl OutputSink for LogSink<'_> {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        if let Some(f) = &mut self.file {
            match &mut self.unwritten {
                None => {
                    let _ = f.write_all(data);
                }
                Some(held) => {
                    held.extend_from_slice(data);
                    if let Some(end) = held.iter().rposition(|&b| b == b'\n') {
                        let lines: Vec<u8> = held.drain(..=end).collect();
                        let _ = f.write_all(&lines);
                    }
                }
            }
        }
        if stream == Stream::Stdout && self.stdout.len() < CAPTURE_LIMIT {
            self.stdout.extend_from_slice(data);
        }
        if self.combined.len() < CAPTURE_LIMIT {
            self.combined.extend_from_slice(data);
        }
        if let Some(cb) = &mut self.on_line {
            self.partial.extend_from_slice(data);
            while let Some(i) = self.partial.iter().position(|&b| b == b'\n' || b == b'\r') {
                let line: Vec<u8> = self.partial.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                if !text.is_empty() {
                    cb(text);
                }
            }
        }
    }
}

impl Drop for LogSink<'_> {
    fn drop(&mut self) {
        if let (Some(f), Some(held)) = (&mut self.file, &self.unwritten)
            && !held.is_empty()
        {
            let _ = f.write_all(held);
            let _ = f.write_all(b"\n");
        }
    }
}
