//! Output sinks for the engine: every command's output goes to a log file under the run's
//! artifacts, while the engine keeps what it needs to judge the command (expectations, metrics).
//! A log keeps what the run's [`Budget`] grants it and no more, and its last line says where it
//! was cut; what the engine keeps in memory is what the log kept.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::budget::{Budget, Cap};
use crate::transport::{OutputSink, Stream};

/// The longest line held back whole (for the line callback, or for a log shared by writers side
/// by side); a longer one is passed on in pieces, so that output without newlines cannot grow
/// memory.
const LINE_MAX: usize = 64 << 10;

type LineCallback<'a> = Box<dyn FnMut(&str) + Send + 'a>;

/// Tees output into a log file and an in-memory capture, and hands complete lines to a callback.
pub struct LogSink<'a> {
    path: PathBuf,
    file: Option<File>,
    budget: &'a Budget,
    /// Bytes over a cap, and the cap first reached: said in the log's last line.
    dropped: u64,
    cut: Option<Cap>,
    /// The file's last byte is not a newline: a note starts a line of its own.
    line_open: bool,
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
    /// Appends to `path`, creating it and its directory, within `budget`. A log that cannot be
    /// written is reported once on stderr and otherwise ignored: losing a log must not fail a
    /// test.
    pub fn append(path: &Path, budget: &'a Budget) -> LogSink<'a> {
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
            path: path.to_path_buf(),
            file,
            budget,
            dropped: 0,
            cut: None,
            line_open: false,
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

    /// Calls `f` with each complete line of output (both streams) that the log keeps.
    pub fn on_line(mut self, f: impl FnMut(&str) + Send + 'a) -> LogSink<'a> {
        self.on_line = Some(Box::new(f));
        self
    }

    /// Writes a line of metalab's own into the log, e.g. the command about to run. Such lines
    /// are not the command's output and are always written, on a line of their own.
    pub fn note(&mut self, text: &str) {
        if let Some(f) = &mut self.file {
            let start = if self.line_open { "\n" } else { "" };
            let _ = writeln!(f, "{start}{text}");
            self.line_open = false;
        }
    }

    pub fn combined_text(&self) -> String {
        String::from_utf8_lossy(&self.combined).into_owned()
    }

    /// The kept stdout and the kept output of both streams, moved out of the sink.
    pub fn take_texts(&mut self) -> (String, String) {
        let text = |bytes: Vec<u8>| {
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
        };
        (
            text(std::mem::take(&mut self.stdout)),
            text(std::mem::take(&mut self.combined)),
        )
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

    fn write(&mut self, data: &[u8]) {
        let Some(f) = &mut self.file else { return };
        match &mut self.unwritten {
            None => {
                let _ = f.write_all(data);
                self.line_open = data.last() != Some(&b'\n');
            }
            Some(held) => {
                held.extend_from_slice(data);
                let end = match held.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None if held.len() > LINE_MAX => held.len(),
                    None => 0,
                };
                if end > 0 {
                    let _ = f.write_all(&held[..end]);
                    self.line_open = held[end - 1] != b'\n';
                    held.drain(..end);
                }
            }
        }
    }

    fn pass_lines(&mut self, data: &[u8]) {
        let Some(cb) = &mut self.on_line else { return };
        self.partial.extend_from_slice(data);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            call_with_line(cb, &line);
        }
        if self.partial.len() > LINE_MAX {
            call_with_line(cb, &std::mem::take(&mut self.partial));
        }
    }
}

fn call_with_line(cb: &mut LineCallback<'_>, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    if !text.is_empty() {
        cb(text);
    }
}

/// The last line of a log cut at `cap`.
pub fn cut_note(cap: Cap, dropped: u64) -> String {
    format!("[metalab: log cut at {cap}; {dropped} more bytes dropped]")
}

impl OutputSink for LogSink<'_> {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let grant = self.budget.for_log(&self.path, data.len());
        self.dropped += (data.len() - grant.kept) as u64;
        self.cut = self.cut.or(grant.cut);
        let kept = &data[..grant.kept];
        if kept.is_empty() {
            return;
        }
        self.write(kept);
        if stream == Stream::Stdout {
            self.stdout.extend_from_slice(kept);
        }
        self.combined.extend_from_slice(kept);
        self.pass_lines(kept);
    }
}

impl Drop for LogSink<'_> {
    fn drop(&mut self) {
        if let (Some(f), Some(held)) = (&mut self.file, &self.unwritten)
            && !held.is_empty()
        {
            let _ = f.write_all(held);
            let _ = f.write_all(b"\n");
            self.line_open = false;
        }
        if let Some(cap) = self.cut {
            self.note(&cut_note(cap, self.dropped));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Outputs;

    fn budget(log_cap: u64, run_cap: u64) -> Budget {
        Budget::new(Outputs { log_cap, run_cap })
    }

    #[test]
    fn a_log_stops_at_its_cap_and_says_where_and_how_much_was_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let b = budget(10, 1000);
        {
            let mut sink = LogSink::append(&path, &b);
            sink.note("$ cmd");
            sink.output(Stream::Stdout, b"0123456");
            sink.output(Stream::Stderr, b"789abcdef");
            sink.note("# exit 0");
            assert_eq!(sink.combined, b"0123456789");
            assert_eq!(sink.stdout, b"0123456");
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "$ cmd\n0123456789\n# exit 0\n\
             [metalab: log cut at 10 B (outputs.log_cap); 6 more bytes dropped]\n"
        );
    }

    #[test]
    fn a_second_writer_of_a_full_log_keeps_nothing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let b = budget(4, 1000);
        LogSink::append(&path, &b).output(Stream::Stdout, b"123\n");
        let mut retry = LogSink::append(&path, &b);
        retry.output(Stream::Stdout, b"56");
        assert!(retry.combined.is_empty());
        drop(retry);
        let log = std::fs::read_to_string(&path).unwrap();
        assert!(
            log.ends_with(
                "123\n[metalab: log cut at 4 B (outputs.log_cap); 2 more bytes dropped]\n"
            ),
            "{log}"
        );
    }

    #[test]
    fn the_run_cap_cuts_a_log_naming_the_run_cap() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget(100, 5);
        LogSink::append(&dir.path().join("a.log"), &b).output(Stream::Stdout, b"abc\n");
        LogSink::append(&dir.path().join("b.log"), &b).output(Stream::Stdout, b"def\n");
        let b_log = std::fs::read_to_string(dir.path().join("b.log")).unwrap();
        assert_eq!(
            b_log,
            "d\n[metalab: log cut at the run's cap of 5 B (outputs.run_cap); 3 more bytes dropped]\n"
        );
    }

    #[test]
    fn output_without_newlines_is_passed_on_in_bounded_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget(1 << 30, 1 << 30);
        let mut longest = 0;
        {
            let mut sink = LogSink::append(&dir.path().join("t.log"), &b)
                .whole_lines()
                .on_line(|l| longest = longest.max(l.len()));
            for _ in 0..64 {
                sink.output(Stream::Stdout, &[b'x'; 4096]);
                assert!(sink.partial.len() <= LINE_MAX);
                assert!(sink.unwritten.as_ref().unwrap().len() <= LINE_MAX);
            }
        }
        assert!(longest > 0 && longest <= LINE_MAX + 4096, "{longest}");
    }

    #[tokio::test]
    async fn a_command_printing_far_more_than_the_cap_completes_with_the_cap_kept() {
        use crate::transport::{Command, Transport, local::Local};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let b = budget(1 << 20, 1 << 30);
        let cmd = Command::new(
            "head -c 64000000 /dev/zero | tr '\\0' x; echo; echo the end",
            std::time::Duration::from_secs(60),
        );
        let mut sink = LogSink::append(&path, &b);
        let outcome = Local.exec(&cmd, &mut sink).await.unwrap();
        assert!(outcome.success(), "{}", outcome.describe());
        assert_eq!(sink.combined.len(), 1 << 20);
        assert_eq!(sink.stdout.len(), 1 << 20);
        drop(sink);
        let log = std::fs::read(&path).unwrap();
        let note = b"[metalab: log cut at 1 MiB (outputs.log_cap); 62951433 more bytes dropped]\n";
        // The kept bytes, a newline to end their line, and the note.
        assert_eq!(log.len(), (1 << 20) + 1 + note.len());
        assert!(
            log.ends_with(note),
            "{}",
            String::from_utf8_lossy(&log[1 << 20..])
        );
    }
}
