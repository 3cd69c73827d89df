//! The base box: built offline from a recipe in `boxes/<name>/`, cached by the recipe's hash (a
//! second build is instant), and registered with Vagrant under a version.
//!
//! A recipe is a directory with an executable `build.sh OUT.box`. The box is named
//! `metalab/<directory name>`. Its version is the build time (`YYYYMMDD.HHMMSS.0`), so the newest
//! build is also Vagrant's newest version, and each build gets its own libvirt pool volume
//! (vagrant-libvirt reuses a volume by name and would otherwise keep serving a stale image).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::model::record::BoxInfo;
use crate::state::{BOX_FILE, BOX_INFO, FileLock, StateDir};
use crate::transport::{Command, OutputSink, Transport, sh_quote};

/// A build that takes longer has hung (debootstrap takes 1-3 minutes).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A box recipe directory.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub dir: PathBuf,
}

/// A built box in the cache.
#[derive(Debug, Clone)]
pub struct BuiltBox {
    pub info: BoxInfo,
    pub path: PathBuf,
}

impl Recipe {
    pub fn new(dir: &Path) -> Recipe {
        Recipe {
            dir: dir.to_path_buf(),
        }
    }

    /// `metalab/debian12` for `boxes/debian12`.
    pub fn box_name(&self) -> String {
        let base = self
            .dir
            .file_name()
            .map_or("box".into(), |n| n.to_string_lossy().into_owned());
        format!("metalab/{base}")
    }

    /// sha256 over every file of the recipe (see [`recipe_hash`]).
    pub fn hash(&self) -> anyhow::Result<String> {
        recipe_hash(&self.dir)
    }

    fn cache_dir(&self, state: &StateDir, hash: &str) -> PathBuf {
        let slug = self.box_name().replace('/', "-");
        state.boxes().join(format!("{slug}-{}", &hash[..16]))
    }

    /// The cached build of this exact recipe, if there is one.
    pub fn cached(&self, state: &StateDir) -> anyhow::Result<Option<BuiltBox>> {
        let dir = self.cache_dir(state, &self.hash()?);
        let Ok(json) = std::fs::read_to_string(dir.join(BOX_INFO)) else {
            return Ok(None);
        };
        let info: BoxInfo = serde_json::from_str(&json)
            .with_context(|| format!("corrupt {}", dir.join(BOX_INFO).display()))?;
        Ok(Some(BuiltBox {
            info,
            path: dir.join(BOX_FILE),
        }))
    }

    /// The cached box, or a fresh build of it. Concurrent callers build it once.
    pub async fn ensure_built(
        &self,
        state: &StateDir,
        sink: &mut dyn OutputSink,
    ) -> anyhow::Result<BuiltBox> {
        if let Some(b) = self.cached(state)? {
            return Ok(b);
        }
        let _lock = FileLock::acquire(state.lock("box-build")).await?;
        if let Some(b) = self.cached(state)? {
            return Ok(b);
        }
        self.build(state, sink).await
    }

    async fn build(&self, state: &StateDir, sink: &mut dyn OutputSink) -> anyhow::Result<BuiltBox> {
        let hash = self.hash()?;
        let dir = self.cache_dir(state, &hash);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let out = dir.join(BOX_FILE);
        run_recipe(&self.dir, &out, state, BUILD_TIMEOUT, sink).await?;
        let info = BoxInfo {
            name: self.box_name(),
            version: chrono::Utc::now().format("%Y%m%d.%H%M%S.0").to_string(),
            sha256: sha256_file(&out)?,
            recipe_hash: hash,
        };
        crate::files::write_atomic(
            &dir.join(BOX_INFO),
            serde_json::to_string_pretty(&info)?.as_bytes(),
        )?;
        Ok(BuiltBox { info, path: out })
    }
}

impl BuiltBox {
    /// Where Vagrant keeps this box version once it is registered.
    pub fn registered_dir(&self, vagrant_home: &Path) -> PathBuf {
        vagrant_home
            .join("boxes")
            .join(vagrant_slug(&self.info.name))
            .join(&self.info.version)
            .join("libvirt")
    }

    /// Registers the box with the Vagrant of `host` unless that version is already there. Vagrant
    /// checks the sha256 while adding.
    pub async fn register(
        &self,
        host: &dyn Transport,
        vagrant_home: &Path,
        sink: &mut dyn OutputSink,
    ) -> anyhow::Result<bool> {
        if self
            .registered_dir(vagrant_home)
            .join("metadata.json")
            .is_file()
        {
            return Ok(false);
        }
        let catalog = serde_json::json!({
            "name": self.info.name,
            "versions": [{
                "version": self.info.version,
                "providers": [{
                    "name": "libvirt",
                    "url": format!("file://{}", self.path.display()),
                    "checksum_type": "sha256",
                    "checksum": self.info.sha256,
                }]
            }]
        });
        let catalog_path = self.path.with_extension("catalog.json");
        std::fs::write(&catalog_path, serde_json::to_vec_pretty(&catalog)?)?;
        let cmd = Command::new(
            format!(
                "vagrant box add --no-color {}",
                sh_quote(&catalog_path.display().to_string())
            ),
            Duration::from_secs(600),
        )
        .env("VAGRANT_HOME", vagrant_home.display().to_string())
        .env("VAGRANT_CHECKPOINT_DISABLE", "1");
        let outcome = host.exec(&cmd, sink).await?;
        if !outcome.success() {
            bail!("vagrant box add failed ({})", outcome.describe());
        }
        Ok(true)
    }
}

/// Runs a recipe's `build.sh OUT` on this machine, as root, with debootstrap's package cache in
/// `DEBOOTSTRAP_CACHE`; its failure is an error naming the script. Boxes and container images
/// are built this way.
pub async fn run_recipe(
    dir: &Path,
    out: &Path,
    state: &StateDir,
    timeout: Duration,
    sink: &mut dyn OutputSink,
) -> anyhow::Result<()> {
    let build = dir.join("build.sh");
    let script = format!(
        "{} {}",
        sh_quote(&build.display().to_string()),
        sh_quote(&out.display().to_string())
    );
    let cmd = Command::new(script, timeout)
        .env(
            "DEBOOTSTRAP_CACHE",
            state.debootstrap_cache().display().to_string(),
        )
        .sudo(true);
    let outcome = crate::transport::local::Local.exec(&cmd, sink).await?;
    if !outcome.success() {
        bail!("{} failed ({})", build.display(), outcome.describe());
    }
    Ok(())
}

/// sha256 over every file of a recipe directory: relative path and content, in sorted order.
/// Boxes and container images are cached by it.
pub fn recipe_hash(dir: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?);
        h.update([0]);
    }
    Ok(hex::encode(h.finalize()))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// A box name as Vagrant spells it in paths and vagrant-libvirt in volume names:
/// `metalab/debian12` is `metalab-VAGRANTSLASH-debian12`.
pub fn vagrant_slug(box_name: &str) -> String {
    box_name.replace('/', "-VAGRANTSLASH-")
}

/// How many other builds of the same box the cache holds: versions of earlier recipes.
pub fn other_cached_builds(state: &StateDir, current: &BoxInfo) -> usize {
    let Ok(entries) = std::fs::read_dir(state.boxes()) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join(BOX_INFO)).ok())
        .filter_map(|json| serde_json::from_str::<BoxInfo>(&json).ok())
        .filter(|info| info.name == current.name && info.version != current.version)
        .count()
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_follows_content_and_names_only() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("build.sh"), "echo 1").unwrap();
        std::fs::write(a.path().join("packages"), "iperf3").unwrap();
        let r = Recipe::new(a.path());
        let h1 = r.hash().unwrap();
        assert_eq!(h1, r.hash().unwrap());
        std::fs::write(a.path().join("packages"), "iperf3\nnftables").unwrap();
        assert_ne!(h1, r.hash().unwrap());
    }
}
