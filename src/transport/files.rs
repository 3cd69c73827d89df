//! Files over any transport, as tar streams through a command's stdin and stdout: works the same
//! on a local host, an SSH host and a VM, and needs only `tar` on the other side.

use std::path::Path;
use std::time::Duration;

use super::{Collect, Command, Transport, TransportError, sh_quote};

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
/// name. A path that does not exist yields nothing, not an error: artifacts are collected on a
/// best-effort basis.
pub async fn get_path(
    t: &dyn Transport,
    remote: &str,
    into: &Path,
    sudo: bool,
    timeout: Duration,
) -> Result<(), FileError> {
    let p = Path::new(remote);
    let parent = p
        .parent()
        .map_or("/".to_string(), |d| d.display().to_string());
    let name = p
        .file_name()
        .map_or(".".to_string(), |n| n.to_string_lossy().into_owned());
    fetch(t, remote, &parent, &name, into, sudo, timeout).await
}

/// Copies what the remote directory `remote` holds into the local directory `into`.
pub async fn get_dir_contents(
    t: &dyn Transport,
    remote: &str,
    into: &Path,
    sudo: bool,
    timeout: Duration,
) -> Result<(), FileError> {
    fetch(t, remote, remote, ".", into, sudo, timeout).await
}

async fn fetch(
    t: &dyn Transport,
    exists: &str,
    dir: &str,
    name: &str,
    into: &Path,
    sudo: bool,
    timeout: Duration,
) -> Result<(), FileError> {
    let script = format!(
        "[ -e {exists} ] || exit 0; tar -c -C {dir} {name}",
        exists = sh_quote(exists),
        dir = sh_quote(dir),
        name = sh_quote(name)
    );
    let out = run(t, &Command::new(script, timeout).sudo(sudo)).await?;
    if out.stdout.is_empty() {
        return Ok(());
    }
    let unpack_err = |source| FileError::Unpack {
        path: into.display().to_string(),
        source,
    };
    std::fs::create_dir_all(into).map_err(unpack_err)?;
    tar::Archive::new(&out.stdout[..])
        .unpack(into)
        .map_err(unpack_err)
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
    use crate::transport::local::Local;

    #[tokio::test]
    async fn a_directory_round_trips_through_tar() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("sub")).unwrap();
        std::fs::write(src.path().join("sub/a.sh"), "echo a").unwrap();
        let remote = tempfile::tempdir().unwrap();
        let remote_dir = remote.path().join("lab");
        let t = Duration::from_secs(30);
        put_dir(&Local, src.path(), remote_dir.to_str().unwrap(), false, t)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(remote_dir.join("sub/a.sh")).unwrap(),
            "echo a"
        );

        let back = tempfile::tempdir().unwrap();
        get_path(
            &Local,
            remote_dir.join("sub").to_str().unwrap(),
            back.path(),
            false,
            t,
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(back.path().join("sub/a.sh")).unwrap(),
            "echo a"
        );
        get_path(&Local, "/nonexistent/metalab", back.path(), false, t)
            .await
            .unwrap();

        let flat = tempfile::tempdir().unwrap();
        get_dir_contents(&Local, remote_dir.to_str().unwrap(), flat.path(), false, t)
            .await
            .unwrap();
        assert!(flat.path().join("sub/a.sh").is_file());
    }
}
