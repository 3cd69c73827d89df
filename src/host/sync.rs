//! Syncing the lab directory to a remote host, incrementally: a file travels only when the host
//! lacks it or has it with another size or modification time (the quick check rsync makes), and
//! files gone from the lab are deleted on the host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::transport::{Collect, Command, Transport, sh_quote};

/// What a sync moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub files: usize,
    pub sent_files: usize,
    pub sent_bytes: u64,
    pub deleted: usize,
}

/// A file of the lab: path relative to the lab root, size, whole seconds of mtime.
type Manifest = HashMap<String, (u64, i64)>;

/// Makes `remote` on the host hold what `local` holds, except top-level names in `exclude`.
pub async fn sync_dir(
    host: &dyn Transport,
    local: &Path,
    remote: &str,
    exclude: &[&str],
) -> anyhow::Result<SyncStats> {
    let mut mine = Manifest::new();
    walk(local, local, exclude, &mut mine)?;
    let theirs = remote_manifest(host, remote).await?;
    let changed: Vec<&String> = mine
        .iter()
        .filter(|(path, meta)| theirs.get(*path) != Some(meta))
        .map(|(p, _)| p)
        .collect();
    let gone: Vec<&String> = theirs.keys().filter(|p| !mine.contains_key(*p)).collect();
    let mut stats = SyncStats {
        files: mine.len(),
        ..SyncStats::default()
    };
    if !changed.is_empty() {
        let archive = pack(local, &changed)?;
        stats.sent_files = changed.len();
        stats.sent_bytes = archive.len() as u64;
        let cmd = Command::new(
            format!("mkdir -p {r} && tar -x -C {r}", r = sh_quote(remote)),
            Duration::from_secs(600),
        )
        .stdin(archive)
        .sudo(true);
        run(host, &cmd).await?;
    }
    if !gone.is_empty() {
        let list: Vec<u8> = gone
            .iter()
            .flat_map(|p| format!("{p}\0").into_bytes())
            .collect();
        stats.deleted = gone.len();
        let cmd = Command::new(
            format!("cd {} && xargs -0 rm -f --", sh_quote(remote)),
            Duration::from_secs(120),
        )
        .stdin(list)
        .sudo(true);
        run(host, &cmd).await?;
    }
    Ok(stats)
}

fn walk(root: &Path, dir: &Path, exclude: &[&str], out: &mut Manifest) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if dir == root && exclude.iter().any(|x| *x == rel) {
            continue;
        }
        // Follows symlinks: what the lab's files point at is what the host needs.
        let meta =
            std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            walk(root, &path, exclude, out)?;
        } else if meta.is_file() {
            let mtime = meta
                .modified()?
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            out.insert(rel, (meta.len(), mtime));
        }
    }
    Ok(())
}

async fn remote_manifest(host: &dyn Transport, remote: &str) -> anyhow::Result<Manifest> {
    let script = format!(
        "mkdir -p {r} && cd {r} && find . -type f -printf '%P\\t%s\\t%T@\\n'",
        r = sh_quote(remote)
    );
    let out = run(
        host,
        &Command::new(script, Duration::from_secs(120)).sudo(true),
    )
    .await?;
    Ok(out
        .stdout_text()
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let path = f.next()?.to_string();
            let size = f.next()?.parse().ok()?;
            let mtime = f.next()?.split('.').next()?.parse().ok()?;
            Some((path, (size, mtime)))
        })
        .collect())
}

/// A tar of the given files, with their modification times, so the next quick check matches.
fn pack(root: &Path, files: &[&String]) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(true);
    for rel in files {
        let path: PathBuf = root.join(rel);
        b.append_path_with_name(&path, rel)
            .with_context(|| format!("cannot pack {}", path.display()))?;
    }
    Ok(b.into_inner()?)
}

async fn run(host: &dyn Transport, cmd: &Command) -> anyhow::Result<Collect> {
    let mut out = Collect::default();
    let outcome = host.exec(cmd, &mut out).await?;
    if !outcome.success() {
        bail!(
            "sync on {} failed ({}): {}",
            host.target(),
            outcome.describe(),
            out.stderr_text().trim()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::local::Local;

    #[tokio::test]
    async fn a_second_sync_sends_only_what_changed_and_deletes_what_went() {
        let lab = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let remote = host.path().join("lab");
        let remote = remote.to_str().unwrap();
        std::fs::create_dir_all(lab.path().join("suites/a")).unwrap();
        std::fs::create_dir_all(lab.path().join("artifacts")).unwrap();
        std::fs::write(lab.path().join("suites/a/suite.toml"), "x".repeat(5000)).unwrap();
        std::fs::write(lab.path().join("Vagrantfile"), "# vf").unwrap();
        std::fs::write(lab.path().join("artifacts/big.log"), "y".repeat(9000)).unwrap();

        let first = sync_dir(&Local, lab.path(), remote, &["artifacts"])
            .await
            .unwrap();
        assert_eq!((first.files, first.sent_files), (2, 2));
        assert!(!host.path().join("lab/artifacts").exists());

        let second = sync_dir(&Local, lab.path(), remote, &["artifacts"])
            .await
            .unwrap();
        assert_eq!(
            (second.sent_files, second.sent_bytes, second.deleted),
            (0, 0, 0)
        );

        std::fs::write(lab.path().join("Vagrantfile"), "# changed, longer").unwrap();
        std::fs::remove_file(lab.path().join("suites/a/suite.toml")).unwrap();
        let third = sync_dir(&Local, lab.path(), remote, &["artifacts"])
            .await
            .unwrap();
        assert_eq!((third.sent_files, third.deleted), (1, 1));
        assert_eq!(
            std::fs::read_to_string(host.path().join("lab/Vagrantfile")).unwrap(),
            "# changed, longer"
        );
        assert!(!host.path().join("lab/suites/a/suite.toml").exists());
    }
}
