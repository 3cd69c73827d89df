//! Container images for the suites, built offline. A recipe is a directory `images/<name>/`
//! (under `lab.images`) with an executable `build.sh OUT.tar` that writes a root file system as a
//! tar. Images are built on the machine running metalab, cached by the recipe's hash like the
//! box, and loaded with `docker import` into the VMs of the suites that name them
//! (`images = ["netbox"]`), just before their setup. Nothing comes from a registry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::boxes::{recipe_hash, run_recipe};
use crate::model::record::ImageInfo;
use crate::state::{FileLock, StateDir};
use crate::transport::{Command, Outcome, OutputSink, Transport, TransportError, sh_quote};

/// What a build leaves in its cache directory.
const IMAGE_FILE: &str = "image.tar";

/// A build that takes longer has hung (fetching and unpacking a few packages takes a minute).
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The images a directory of recipes offers: each subdirectory with a `build.sh`, sorted.
pub fn available(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("build.sh").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The builds in the cache that no current recipe makes (their recipe changed, or is gone),
/// but the `keep` newest of each image: what `metalab box prune` removes.
pub fn stale_builds(state: &StateDir, images_dir: &Path, keep: usize) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(state.images()) else {
        return Vec::new();
    };
    let mut by_image: std::collections::BTreeMap<String, Vec<(std::time::SystemTime, PathBuf)>> =
        Default::default();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some((name, hash)) = file_name.rsplit_once('-') else {
            continue;
        };
        if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue; // not a build's directory
        }
        let recipe = images_dir.join(name);
        let current = recipe_hash(&recipe)
            .ok()
            .filter(|_| recipe.join("build.sh").is_file());
        if current.is_some_and(|h| h.starts_with(hash)) {
            continue;
        }
        let built = entry.metadata().and_then(|m| m.modified());
        let built = built.unwrap_or(std::time::UNIX_EPOCH);
        by_image
            .entry(name.to_string())
            .or_default()
            .push((built, entry.path()));
    }
    let mut stale = Vec::new();
    for (_, mut builds) in by_image {
        builds.sort_by_key(|b| std::cmp::Reverse(b.0));
        stale.extend(builds.into_iter().skip(keep).map(|(_, path)| path));
    }
    stale.sort();
    stale
}

/// One image's recipe.
#[derive(Debug, Clone)]
pub struct ImageRecipe {
    pub name: String,
    pub dir: PathBuf,
}

/// A built image in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltImage {
    pub name: String,
    pub recipe_hash: String,
    pub path: PathBuf,
}

impl ImageRecipe {
    /// The recipe of image `name` in the directory of recipes `images_dir`.
    pub fn new(images_dir: &Path, name: &str) -> ImageRecipe {
        ImageRecipe {
            name: name.to_string(),
            dir: images_dir.join(name),
        }
    }

    /// The cached image, or a fresh build of it. Concurrent callers build it once.
    pub async fn ensure_built(
        &self,
        state: &StateDir,
        sink: &mut dyn OutputSink,
    ) -> anyhow::Result<BuiltImage> {
        let hash = recipe_hash(&self.dir)?;
        let dir = state
            .images()
            .join(format!("{}-{}", self.name, &hash[..16]));
        let built = BuiltImage {
            name: self.name.clone(),
            path: dir.join(IMAGE_FILE),
            recipe_hash: hash,
        };
        if built.path.is_file() {
            return Ok(built);
        }
        let _lock = FileLock::acquire(state.lock(&format!("image-build-{}", self.name))).await?;
        if built.path.is_file() {
            return Ok(built);
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        self.build(state, &built.path, sink).await?;
        Ok(built)
    }

    /// Runs the recipe into a scratch file, renamed into place only when the build succeeded:
    /// a build that failed or was killed half-way is never taken for the image.
    async fn build(
        &self,
        state: &StateDir,
        out: &Path,
        sink: &mut dyn OutputSink,
    ) -> anyhow::Result<()> {
        let scratch = out.with_extension("tar.building");
        let _ = std::fs::remove_file(&scratch);
        if let Err(e) = run_recipe(&self.dir, &scratch, state, BUILD_TIMEOUT, sink).await {
            let _ = std::fs::remove_file(&scratch);
            return Err(e);
        }
        if !scratch.is_file() {
            bail!(
                "{} succeeded but wrote no image at {} (its first argument)",
                self.dir.join("build.sh").display(),
                scratch.display()
            );
        }
        std::fs::rename(&scratch, out)
            .with_context(|| format!("cannot move the image to {}", out.display()))
    }
}

impl BuiltImage {
    /// What the run's record keeps of it.
    pub fn info(&self) -> ImageInfo {
        ImageInfo {
            name: self.name.clone(),
            recipe_hash: self.recipe_hash.clone(),
        }
    }

    /// Loads the image into a VM as `<name>:latest`, starting Docker there first when it is not
    /// running (the bundled box starts it only in the VMs of suites that name an image).
    pub async fn load(
        &self,
        vm: &dyn Transport,
        timeout: Duration,
        sink: &mut dyn OutputSink,
    ) -> Result<Outcome, TransportError> {
        let cmd = Command::new(self.load_script(), timeout)
            .stdin_file(&self.path)
            .sudo(true);
        vm.exec(&cmd, sink).await
    }

    fn load_script(&self) -> String {
        let name = sh_quote(&self.name);
        let message = sh_quote(&format!(
            "metalab image {}, recipe {}",
            self.name,
            &self.recipe_hash[..16]
        ));
        format!(
            "command -v docker >/dev/null || {{ echo \"no docker in this VM: the image {name} is \
             loaded with docker import (Debian's docker.io in the box)\" >&2; exit 127; }}\n\
             docker info >/dev/null 2>&1 || systemctl start docker\n\
             docker import --message {message} - {name}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Collect, local::Local};

    fn recipe(script: &str) -> (tempfile::TempDir, ImageRecipe) {
        let lab = tempfile::tempdir().unwrap();
        let dir = lab.path().join("images/tiny");
        std::fs::create_dir_all(&dir).unwrap();
        let build = dir.join("build.sh");
        std::fs::write(&build, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&build, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = ImageRecipe::new(&lab.path().join("images"), "tiny");
        (lab, r)
    }

    fn state_dir() -> (tempfile::TempDir, StateDir) {
        let home = tempfile::tempdir().unwrap();
        let state = StateDir::at(home.path().to_path_buf());
        (home, state)
    }

    async fn built(r: &ImageRecipe, state: &StateDir) -> BuiltImage {
        r.ensure_built(state, &mut Collect::default())
            .await
            .unwrap()
    }

    #[test]
    fn only_directories_with_a_build_script_are_images() {
        let (lab, _) = recipe("#!/bin/sh\n");
        std::fs::create_dir_all(lab.path().join("images/notes")).unwrap();
        assert_eq!(available(&lab.path().join("images")), vec!["tiny"]);
        assert!(available(&lab.path().join("nowhere")).is_empty());
    }

    #[tokio::test]
    async fn an_image_is_built_once_per_recipe_and_again_when_it_changes() {
        let counter = tempfile::NamedTempFile::new().unwrap();
        let count = counter.path().display();
        let script = format!("#!/bin/sh\necho built >> {count}\necho rootfs > \"$1\"\n");
        let (_lab, r) = recipe(&script);
        let (_home, state) = state_dir();
        let first = built(&r, &state).await;
        let again = built(&r, &state).await;
        assert_eq!(first, again);
        assert_eq!(std::fs::read_to_string(&first.path).unwrap(), "rootfs\n");
        assert_eq!(std::fs::read_to_string(counter.path()).unwrap(), "built\n");
        std::fs::write(r.dir.join("packages"), "busybox\n").unwrap();
        let changed = built(&r, &state).await;
        assert_ne!(changed.recipe_hash, first.recipe_hash);
        assert_eq!(
            std::fs::read_to_string(counter.path()).unwrap(),
            "built\nbuilt\n"
        );
    }

    #[tokio::test]
    async fn builds_of_changed_or_removed_recipes_are_stale_but_the_current_one() {
        let (lab, r) = recipe("#!/bin/sh\necho rootfs > \"$1\"\n");
        let images_dir = lab.path().join("images");
        let (_home, state) = state_dir();
        let first = built(&r, &state).await;
        assert!(stale_builds(&state, &images_dir, 0).is_empty());
        std::fs::write(r.dir.join("packages"), "busybox\n").unwrap();
        let second = built(&r, &state).await;
        let first_dir = first.path.parent().unwrap().to_path_buf();
        assert_eq!(
            stale_builds(&state, &images_dir, 0),
            vec![first_dir.clone()]
        );
        assert!(
            stale_builds(&state, &images_dir, 1).is_empty(),
            "kept: the newest other"
        );
        std::fs::remove_dir_all(&r.dir).unwrap();
        let mut gone = vec![first_dir, second.path.parent().unwrap().to_path_buf()];
        gone.sort();
        assert_eq!(stale_builds(&state, &images_dir, 0), gone);
    }

    #[tokio::test]
    async fn a_failed_build_leaves_nothing_taken_for_the_image() {
        let (_lab, r) = recipe("#!/bin/sh\necho half > \"$1\"\necho 'no mirror' >&2\nexit 1\n");
        let (_home, state) = state_dir();
        let mut out = Collect::default();
        let e = r.ensure_built(&state, &mut out).await.unwrap_err();
        assert!(
            format!("{e:#}").contains("build.sh failed (exit 1)"),
            "{e:#}"
        );
        assert!(out.stderr_text().contains("no mirror"));
        let left: Vec<_> = walk(&state.images());
        assert!(left.is_empty(), "{left:?}");
        let (_lab, silent) = recipe("#!/bin/sh\nexit 0\n");
        let e = silent.ensure_built(&state, &mut out).await.unwrap_err();
        assert!(format!("{e:#}").contains("wrote no image"), "{e:#}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            match e.path().is_dir() {
                true => files.extend(walk(&e.path())),
                false => files.push(e.path()),
            }
        }
        files
    }

    #[tokio::test]
    async fn loading_says_what_is_missing_where_there_is_no_docker() {
        let image = BuiltImage {
            name: "tiny".into(),
            recipe_hash: "0123456789abcdef0123".into(),
            path: PathBuf::from("/dev/null"),
        };
        let mut out = Collect::default();
        let script = format!("PATH=/nonexistent\n{}", image.load_script());
        let no_docker = Command::new(script, Duration::from_secs(10)).stdin_file("/dev/null");
        let outcome = Local.exec(&no_docker, &mut out).await.unwrap();
        assert_eq!(outcome.exit, crate::transport::Exit::Code(127));
        assert!(
            out.stderr_text().contains("no docker in this VM"),
            "{}",
            out.stderr_text()
        );
    }
}
