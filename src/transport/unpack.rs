//! A tar stream from a machine unpacked as it arrives, entry by entry, never whole in memory.
//! What comes out of a VM is the suite's to choose, and a suite may be hostile: only regular
//! files and directories land, only inside the destination, and their bytes only within the
//! run's [`Budget`]. Symbolic links, hard links, devices, fifos and anything else are skipped
//! and listed (CI's archive step could follow a link to the host's files), as are paths that
//! would leave the destination. At the cap the unpacking stops, and the sink tells the
//! transport it has had enough, which stops the sender.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{OutputSink, Stream};
use crate::budget::{Budget, Cap};
use crate::paths::join_inside;

/// Chunks on their way to the unpacker: what the stream may hold in memory at once.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Bytes one entry's headers may take (GNU long names, pax records), which the tar reader holds
/// in memory; real ones are a few KiB.
const HEADERS_MAX: u64 = 1 << 20;

/// Skipped entries listed by name; more are only counted.
const LISTED_MAX: usize = 100;

/// Bytes of the sender's stderr kept for an error message.
const STDERR_MAX: usize = 64 << 10;

/// What an unpacking brought, and what it left out.
#[derive(Debug, Default)]
pub struct Unpacked {
    pub files: u64,
    pub dirs: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Entries not unpacked, the first [`LISTED_MAX`] of them.
    pub skipped: Vec<Skipped>,
    /// Entries not unpacked beyond those listed.
    pub more_skipped: u64,
    /// Where the unpacking stopped at a cap.
    pub cut: Option<Cut>,
}

/// An entry left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The entry's path as the stream names it, quoted and escaped (it is the sender's text).
    pub path: String,
    /// "symbolic link to \"/etc/passwd\"", "fifo", "a path outside the destination".
    pub kind: String,
}

/// The entry being written when a cap was reached; it and the rest of the stream were dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub cap: Cap,
    pub path: String,
}

impl Unpacked {
    /// Lines for a log: each entry skipped, and where the unpacking stopped.
    pub fn notes(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .skipped
            .iter()
            .map(|s| format!("skipped {}: {}", s.path, s.kind))
            .collect();
        if self.more_skipped > 0 {
            lines.push(format!("skipped {} more entries", self.more_skipped));
        }
        if let Some(cut) = &self.cut {
            lines.push(format!(
                "[metalab: artifacts cut at {}: {} is incomplete and the rest was dropped]",
                cut.cap, cut.path
            ));
        }
        lines
    }

    fn skip(&mut self, path: &Path, kind: String) {
        if self.skipped.len() < LISTED_MAX {
            self.skipped.push(Skipped {
                path: shown(path),
                kind,
            });
        } else {
            self.more_skipped += 1;
        }
    }
}

/// The receiving end of a tar stream: an [`OutputSink`] whose stdout feeds an unpacker on a
/// thread of its own, a few chunks at a time.
pub struct Unpacker {
    chunks: Option<SyncSender<Vec<u8>>>,
    stopped: Arc<AtomicBool>,
    stderr: Vec<u8>,
    worker: tokio::task::JoinHandle<io::Result<Unpacked>>,
}

impl Unpacker {
    /// Starts unpacking into `into` (created with the first entry) within `budget`.
    pub fn start(into: PathBuf, budget: Arc<Budget>) -> Unpacker {
        let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
        let stopped = Arc::new(AtomicBool::new(false));
        let done = stopped.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let result = unpack(rx, &into, &budget);
            // Failed or cut, the rest would only be dropped; what follows the end of a whole
            // archive (the zeros tar pads its last record with) is dropped without stopping it.
            if !matches!(&result, Ok(u) if u.cut.is_none()) {
                done.store(true, Ordering::SeqCst);
            }
            result
        });
        Unpacker {
            chunks: Some(tx),
            stopped,
            stderr: Vec::new(),
            worker,
        }
    }

    /// Ends the stream and waits for the unpacker: what it unpacked, and the sender's stderr.
    pub async fn finish(mut self) -> (io::Result<Unpacked>, String) {
        self.chunks = None;
        let result = match (&mut self.worker).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(format!("the unpacker failed: {e}"))),
        };
        (result, String::from_utf8_lossy(&self.stderr).into_owned())
    }
}

impl OutputSink for Unpacker {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        match stream {
            // Blocks while the unpacker is behind: disk speed, as a log's writes.
            Stream::Stdout => {
                if let Some(tx) = &self.chunks
                    && tx.send(data.to_vec()).is_err()
                {
                    self.chunks = None;
                }
            }
            Stream::Stderr => {
                let room = STDERR_MAX.saturating_sub(self.stderr.len());
                self.stderr.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }

    fn enough(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// The stream as the tar reader reads it, metering what it reads outside file bodies.
struct Chunks {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
    meter: Rc<Meter>,
}

/// Where the reader is in the stream, and how much more it may read before the next entry.
#[derive(Default)]
struct Meter {
    position: Cell<u64>,
    /// `Some`: between entries, what is left to read; `None`: inside a file body.
    allowed: Cell<Option<u64>>,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => (self.chunk, self.at) = (chunk, 0),
                Err(_) => return Ok(0),
            }
        }
        let mut n = buf.len().min(self.chunk.len() - self.at);
        if let Some(left) = self.meter.allowed.get() {
            if left == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an entry's headers are over {HEADERS_MAX} bytes"),
                ));
            }
            n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
            self.meter.allowed.set(Some(left - n as u64));
        }
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        self.meter
            .position
            .set(self.meter.position.get() + n as u64);
        Ok(n)
    }
}

/// Whether the unpacking goes on after an entry.
enum Flow {
    Continue,
    Stop,
}

fn unpack(rx: Receiver<Vec<u8>>, into: &Path, budget: &Budget) -> io::Result<Unpacked> {
    let meter = Rc::new(Meter::default());
    let mut archive = tar::Archive::new(Chunks {
        rx,
        chunk: Vec::new(),
        at: 0,
        meter: meter.clone(),
    });
    let mut done = Unpacked::default();
    let mut next_header = 0u64;
    let mut entries = archive.entries()?;
    loop {
        // Between entries the reader skips what is left of the last one, then reads headers:
        // only those are held in memory, so only they are bounded.
        let skip = next_header.saturating_sub(meter.position.get());
        meter.allowed.set(Some(skip + HEADERS_MAX));
        let Some(entry) = entries.next() else {
            return Ok(done);
        };
        let mut entry = entry?;
        meter.allowed.set(None);
        next_header = entry.raw_file_position() + entry.size().next_multiple_of(512);
        if let Flow::Stop = land(&mut entry, into, budget, &mut done)? {
            return Ok(done);
        }
    }
}

/// Writes one entry under `into` when it is a regular file or a directory inside it.
fn land(
    entry: &mut tar::Entry<'_, impl Read>,
    into: &Path,
    budget: &Budget,
    done: &mut Unpacked,
) -> io::Result<Flow> {
    let path = entry.path()?.into_owned();
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions() {
        // Metadata for the archive as a whole, not an entry of it.
        return Ok(Flow::Continue);
    }
    if !(kind.is_file() || kind.is_contiguous() || kind.is_dir()) {
        done.skip(&path, kind_of(entry));
        return Ok(Flow::Continue);
    }
    let Some(dest) = join_inside(into, &path) else {
        done.skip(&path, "a path outside the destination".to_string());
        return Ok(Flow::Continue);
    };
    if kind.is_dir() {
        std::fs::create_dir_all(&dest)?;
        done.dirs += 1;
        return Ok(Flow::Continue);
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Nothing here makes links, but a destination that has one is not followed either.
    let mut file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&dest)?;
    done.files += 1;
    let (written, cut) = copy_within(entry, &mut file, budget)?;
    done.bytes += written;
    match cut {
        None => Ok(Flow::Continue),
        Some(cap) => {
            done.cut = Some(Cut {
                cap,
                path: shown(&path),
            });
            Ok(Flow::Stop)
        }
    }
}

/// Copies what the budget grants; returns the bytes written and the cap, if one was reached.
fn copy_within(
    from: &mut impl Read,
    to: &mut File,
    budget: &Budget,
) -> io::Result<(u64, Option<Cap>)> {
    let mut buf = vec![0u8; 64 << 10];
    let mut written = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok((written, None));
        }
        let grant = budget.for_artifact(n);
        to.write_all(&buf[..grant.kept])?;
        written += grant.kept as u64;
        if grant.cut.is_some() {
            return Ok((written, grant.cut));
        }
    }
}

/// What a skipped entry is, as a person would say it.
fn kind_of(entry: &tar::Entry<'_, impl Read>) -> String {
    let kind = entry.header().entry_type();
    let target = || {
        entry
            .link_name()
            .ok()
            .flatten()
            .map_or_else(|| "\"\"".to_string(), |t| shown(&t))
    };
    if kind.is_symlink() {
        format!("symbolic link to {}", target())
    } else if kind.is_hard_link() {
        format!("hard link to {}", target())
    } else if kind.is_character_special() {
        "character device".to_string()
    } else if kind.is_block_special() {
        "block device".to_string()
    } else if kind.is_fifo() {
        "fifo".to_string()
    } else if kind.is_gnu_sparse() {
        "sparse file".to_string()
    } else {
        format!("entry of type {:?}", kind.as_byte() as char)
    }
}

/// A path from the stream as text for a log: quoted and escaped, so that no name can forge a
/// line of its own.
fn shown(path: &Path) -> String {
    format!("{:?}", path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tar::{EntryType, Header};

    use super::*;
    use crate::config::Outputs;
    use crate::transport::local::Local;
    use crate::transport::{Command, Transport};

    /// Appends an entry whose name is written as is: the tar crate's own setters refuse `..`
    /// and absolute names, which a hostile sender would not.
    fn append(
        tar: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: EntryType,
        link: &str,
        data: &[u8],
    ) {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        tar.append(&h, data).unwrap();
    }

    /// Streams `archive` through a real local process into an unpacker.
    async fn unpack_through_cat(archive: &[u8], into: &Path, budget: Budget) -> Unpacked {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("stream.tar");
        std::fs::write(&file, archive).unwrap();
        let cmd = Command::new(format!("cat {}", file.display()), Duration::from_secs(30));
        let mut sink = Unpacker::start(into.to_path_buf(), Arc::new(budget));
        let outcome = Local.exec(&cmd, &mut sink).await.unwrap();
        let (unpacked, stderr) = sink.finish().await;
        let unpacked = unpacked.unwrap();
        // A cut stops the sender, which may then end killed.
        assert!(
            outcome.success() || unpacked.cut.is_some(),
            "{} {stderr}",
            outcome.describe()
        );
        unpacked
    }

    fn budget(run_cap: u64) -> Budget {
        Budget::new(Outputs {
            log_cap: 1 << 20,
            run_cap,
        })
    }

    #[tokio::test]
    async fn links_devices_fifos_and_escapes_are_skipped_and_listed() {
        let outside = tempfile::tempdir().unwrap();
        let absolute = outside.path().join("absolute");
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, "d/", EntryType::Directory, "", b"");
        append(&mut tar, "d/kept.txt", EntryType::Regular, "", b"kept");
        append(&mut tar, "d/passwd", EntryType::Symlink, "/etc/passwd", b"");
        append(&mut tar, "d/hard", EntryType::Link, "d/kept.txt", b"");
        append(&mut tar, "d/tty", EntryType::Char, "", b"");
        append(&mut tar, "d/sda", EntryType::Block, "", b"");
        append(&mut tar, "d/pipe", EntryType::Fifo, "", b"");
        append(&mut tar, "../escape", EntryType::Regular, "", b"out");
        append(
            &mut tar,
            absolute.to_str().unwrap(),
            EntryType::Regular,
            "",
            b"out",
        );
        append(&mut tar, "d/after", EntryType::Regular, "", b"after");
        let into = outside.path().join("dest");
        let got = unpack_through_cat(&tar.into_inner().unwrap(), &into, budget(1 << 20)).await;

        assert_eq!(
            std::fs::read_to_string(into.join("d/kept.txt")).unwrap(),
            "kept"
        );
        assert_eq!(
            std::fs::read_to_string(into.join("d/after")).unwrap(),
            "after"
        );
        let landed: Vec<_> = std::fs::read_dir(into.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(landed.len(), 2, "{landed:?}");
        assert!(!outside.path().join("escape").exists());
        assert!(!absolute.exists());
        assert_eq!((got.files, got.dirs, got.bytes), (2, 1, 9));
        let shown_absolute = format!("{:?}", absolute.to_str().unwrap());
        assert_eq!(
            got.notes(),
            vec![
                "skipped \"d/passwd\": symbolic link to \"/etc/passwd\"".to_string(),
                "skipped \"d/hard\": hard link to \"d/kept.txt\"".to_string(),
                "skipped \"d/tty\": character device".to_string(),
                "skipped \"d/sda\": block device".to_string(),
                "skipped \"d/pipe\": fifo".to_string(),
                "skipped \"../escape\": a path outside the destination".to_string(),
                format!("skipped {shown_absolute}: a path outside the destination"),
            ]
        );
    }

    #[tokio::test]
    async fn a_name_cannot_forge_a_line_of_the_log() {
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, "x\n[metalab: ok]", EntryType::Fifo, "", b"");
        let into = tempfile::tempdir().unwrap();
        let got =
            unpack_through_cat(&tar.into_inner().unwrap(), into.path(), budget(1 << 20)).await;
        assert_eq!(got.notes(), vec!["skipped \"x\\n[metalab: ok]\": fifo"]);
    }

    #[tokio::test]
    async fn files_stop_at_the_cap_and_the_rest_of_the_stream_is_dropped() {
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, "a", EntryType::Regular, "", &[b'a'; 600]);
        append(&mut tar, "b", EntryType::Regular, "", &[b'b'; 600]);
        append(&mut tar, "c", EntryType::Regular, "", &[b'c'; 600]);
        let into = tempfile::tempdir().unwrap();
        let got = unpack_through_cat(&tar.into_inner().unwrap(), into.path(), budget(1000)).await;
        assert_eq!(std::fs::metadata(into.path().join("a")).unwrap().len(), 600);
        assert_eq!(std::fs::metadata(into.path().join("b")).unwrap().len(), 400);
        assert!(!into.path().join("c").exists());
        assert_eq!(
            got.cut,
            Some(Cut {
                cap: Cap::Run(1000),
                path: "\"b\"".to_string()
            })
        );
    }

    #[tokio::test]
    async fn a_huge_long_name_is_refused_not_held_in_memory() {
        // A GNU long-name entry declaring 64 GiB, then zeros for ever.
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(EntryType::GNULongName);
        h.set_size(64 << 30);
        h.set_cksum();
        let scratch = tempfile::tempdir().unwrap();
        let head = scratch.path().join("head");
        std::fs::write(&head, h.as_bytes()).unwrap();
        let cmd = Command::new(
            format!("cat {}; cat /dev/zero", head.display()),
            Duration::from_secs(60),
        );
        let mut sink = Unpacker::start(scratch.path().join("dest"), Arc::new(budget(1 << 30)));
        let started = std::time::Instant::now();
        Local.exec(&cmd, &mut sink).await.unwrap();
        let (unpacked, _) = sink.finish().await;
        let e = unpacked.unwrap_err();
        assert!(
            e.to_string().contains("headers are over 1048576 bytes"),
            "{e}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}
