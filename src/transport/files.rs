//! Files over any transport, as tar streams through a command's stdin and stdout: works the same
//! on a local host, an SSH host and a VM, and needs only `tar` on the other side.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::unpack::{Unpacked, Unpacker};
use super::{Collect, Command, Transport, TransportError, sh_quote};
use crate::budget::Budget;

/// Why a file transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot pack {path}: {source}")]
    Pack {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot unpack into {path}: {source}")]
    Unpack {
        path: String,
        source: std::io::Error,
    },
    #[error("tar on {target} failed ({outcome}): {stderr}")]
    Remote {
        target: String,
        outcome: String,
        stderr: String,
    },
}

/// Copies the directory `local` to `remote` (created if missing), replacing files of the same name.
pub async fn put_dir(
    t: &dyn Transport,
    local: &Path,
    remote: &str,
    sudo: bool,
    timeout: Duration,
) -> Result<(), FileError> {
    let archive = pack_dir(local).map_err(|source| FileError::Pack {
        path: local.display().to_string(),
        source,
    })?;
    let q = sh_quote(remote);
    let cmd = Command::new(format!("mkdir -p {q} && tar -x -m -C {q}"), timeout)
        .stdin(archive)
        .sudo(sudo);
    run(t, &cmd).await.map(drop)
}

/// Copies the remote file or directory `remote` into the local directory `into`, keeping its
/// name, within `budget`: only regular files and directories, only inside `into` (see
/// [`unpack`]). A path that does not exist yields nothing, not an error: artifacts are collected
/// on a best-effort basis.
pub async fn get_path(
    t: &dyn Transport,
    remote: &str,
    into: &Path,
    sudo: bool,
    timeout: Duration,
    budget: &Arc<Budget>,
) -> Result<Unpacked, FileError> {
    let p = Path::new(remote);
    let parent = p
        .parent()
        .map_or("/".to_string(), |d| d.display().to_string());
    let name = p
        .file_name()
        .map_or(".".to_string(), |n| n.to_string_lossy().into_owned());
    let source = TarSource {
        exists: remote,
        dir: &parent,
        name: &name,
    };
    fetch(t, &source, into, sudo, timeout, budget).await
}

/// Copies what the remote directory `remote` holds into the local directory `into`, as
/// [`get_path`] does.
pub async fn get_dir_contents(
    t: &dyn Transport,
    remote: &str,
    into: &Path,
    sudo: bool,
    timeout: Duration,
    budget: &Arc<Budget>,
) -> Result<Unpacked, FileError> {
    let source = TarSource {
        exists: remote,
        dir: remote,
        name: ".",
    };
    fetch(t, &source, into, sudo, timeout, budget).await
}

/// What the remote tar packs: `name` in `dir`, when `exists` does.
struct TarSource<'a> {
    exists: &'a str,
    dir: &'a str,
    name: &'a str,
}

/// Streams the remote tar into an [`Unpacker`]. A command stopped because the unpacker reached
/// the budget's cap is not a failure: the cut is in what comes back.
async fn fetch(
    t: &dyn Transport,
    source: &TarSource<'_>,
    into: &Path,
    sudo: bool,
    timeout: Duration,
    budget: &Arc<Budget>,
) -> Result<Unpacked, FileError> {
    let script = format!(
        "[ -e {exists} ] || exit 0; tar -c -C {dir} {name}",
        exists = sh_quote(source.exists),
        dir = sh_quote(source.dir),
        name = sh_quote(source.name)
    );
    let mut sink = Unpacker::start(into.to_path_buf(), budget.clone());
    let outcome = t
        .exec(&Command::new(script, timeout).sudo(sudo), &mut sink)
        .await;
    let (unpacked, stderr) = sink.finish().await;
    let outcome = outcome?;
    let unpacked = unpacked.map_err(|source| FileError::Unpack {
        path: into.display().to_string(),
        source,
    })?;
    if !outcome.success() && unpacked.cut.is_none() {
        return Err(FileError::Remote {
            target: t.target(),
            outcome: outcome.describe(),
            stderr: stderr.trim().to_string(),
        });
    }
    Ok(unpacked)
}

async fn run(t: &dyn Transport, cmd: &Command) -> Result<Collect, FileError> {
    let mut out = Collect::default();
    let outcome = t.exec(cmd, &mut out).await?;
    if !outcome.success() {
        return Err(FileError::Remote {
            target: t.target(),
            outcome: outcome.describe(),
            stderr: out.stderr_text().trim().to_string(),
        });
    }
    Ok(out)
}

fn pack_dir(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Outputs;
    use crate::transport::local::Local;

    const T: Duration = Duration::from_secs(30);

    fn budget(run_cap: u64) -> Arc<Budget> {
        Arc::new(Budget::new(Outputs {
            log_cap: 1 << 20,
            run_cap,
        }))
    }

    fn sh(script: &str) {
        let ok = crate::child_env::command("bash")
            .args(["-ec", script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }

    #[tokio::test]
    async fn a_directory_round_trips_through_tar() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("sub")).unwrap();
        std::fs::write(src.path().join("sub/a.sh"), "echo a").unwrap();
        let remote = tempfile::tempdir().unwrap();
        let remote_dir = remote.path().join("lab");
        put_dir(&Local, src.path(), remote_dir.to_str().unwrap(), false, T)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(remote_dir.join("sub/a.sh")).unwrap(),
            "echo a"
        );

        let b = budget(1 << 30);
        let back = tempfile::tempdir().unwrap();
        let sub = remote_dir.join("sub");
        let got = get_path(&Local, sub.to_str().unwrap(), back.path(), false, T, &b)
            .await
            .unwrap();
        assert_eq!((got.files, got.dirs, got.bytes), (1, 1, 6));
        assert_eq!(
            std::fs::read_to_string(back.path().join("sub/a.sh")).unwrap(),
            "echo a"
        );
        let none = back.path().join("none");
        get_path(&Local, "/nonexistent/metalab", &none, false, T, &b)
            .await
            .unwrap();
        assert!(!none.exists(), "nothing to fetch creates nothing");

        let flat = tempfile::tempdir().unwrap();
        get_dir_contents(
            &Local,
            remote_dir.to_str().unwrap(),
            flat.path(),
            false,
            T,
            &b,
        )
        .await
        .unwrap();
        assert!(flat.path().join("sub/a.sh").is_file());
    }

    #[tokio::test]
    async fn only_regular_files_and_directories_come_back_from_a_real_tar() {
        let remote = tempfile::tempdir().unwrap();
        let r = remote.path().display();
        sh(&format!(
            "cd {r} && mkdir d && echo data > d/file && ln -s /etc/passwd d/passwd && \
             ln d/file d/hard && mkfifo d/pipe"
        ));
        let local = tempfile::tempdir().unwrap();
        let into = local.path().join("node1");
        let got = get_dir_contents(&Local, &r.to_string(), &into, false, T, &budget(1 << 30))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(into.join("d/file")).unwrap(),
            "data\n"
        );
        for gone in ["d/passwd", "d/hard", "d/pipe"] {
            assert!(
                std::fs::symlink_metadata(into.join(gone)).is_err(),
                "{gone} landed"
            );
        }
        let mut skipped: Vec<String> = got.notes();
        skipped.sort();
        // GNU tar stores the second name of a file as the hard link, whichever it meets second.
        let hard = if skipped
            .iter()
            .any(|l| l.contains("\"./d/hard\": hard link"))
        {
            "skipped \"./d/hard\": hard link to \"./d/file\""
        } else {
            "skipped \"./d/file\": hard link to \"./d/hard\""
        };
        let mut expected = vec![
            hard.to_string(),
            "skipped \"./d/passwd\": symbolic link to \"/etc/passwd\"".to_string(),
            "skipped \"./d/pipe\": fifo".to_string(),
        ];
        expected.sort();
        assert_eq!(skipped, expected);
    }

    #[tokio::test]
    async fn a_tar_larger_than_the_cap_stops_at_the_cap_saying_so() {
        let remote = tempfile::tempdir().unwrap();
        let r = remote.path().display();
        sh(&format!("head -c 3000000 /dev/urandom > {r}/big"));
        let local = tempfile::tempdir().unwrap();
        let b = budget(1 << 20);
        let got = get_path(&Local, &format!("{r}/big"), local.path(), false, T, &b)
            .await
            .unwrap();
        let kept = std::fs::metadata(local.path().join("big")).unwrap().len();
        assert_eq!(kept, 1 << 20);
        assert_eq!(got.bytes, 1 << 20);
        assert_eq!(
            got.notes(),
            vec![
                "[metalab: artifacts cut at the run's cap of 1 MiB (outputs.run_cap): \"big\" \
                 is incomplete and the rest was dropped]"
            ]
        );
        // The budget is the run's: the next collection keeps nothing.
        let again = tempfile::tempdir().unwrap();
        let got = get_path(&Local, &format!("{r}/big"), again.path(), false, T, &b)
            .await
            .unwrap();
        assert_eq!(got.bytes, 0);
        assert!(got.cut.is_some());
    }

    #[tokio::test]
    async fn the_sender_of_an_endless_stream_is_stopped_at_the_cap() {
        // A sparse file that tar reads as 64 GiB of zeros: the transfer ends at the cap, not
        // at the end of the file or the timeout.
        let remote = tempfile::tempdir().unwrap();
        let r = remote.path().display();
        sh(&format!("truncate -s 64G {r}/sparse"));
        let local = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let got = get_path(
            &Local,
            &format!("{r}/sparse"),
            local.path(),
            false,
            Duration::from_secs(120),
            &budget(4 << 20),
        )
        .await
        .unwrap();
        assert!(got.cut.is_some());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_failing_tar_is_an_error_with_its_stderr() {
        let local = tempfile::tempdir().unwrap();
        let e = fetch(
            &Local,
            &TarSource {
                exists: "/",
                dir: "/nonexistent/metalab",
                name: "x",
            },
            local.path(),
            false,
            T,
            &budget(1 << 20),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, FileError::Remote { .. }), "{e}");
        assert!(e.to_string().contains("nonexistent/metalab"), "{e}");
    }
}
