//! The lab of an untrusted run (`metalab run --untrusted --lab-from SOURCE`): everything that
//! runs on the host (the Vagrantfile, `metalab.toml`, the box recipe, the host setup) comes from
//! a trusted source, a git ref of the repository or a directory the pipeline names; from the
//! change under test come only its suites, read here as data and copied as inert files (regular
//! files and directories; links, devices and the like are left out and named).

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The most a change's suites directory may hold: suites are small text files, and a change
/// that ships more is not to fill the host's disk.
pub const SUITES_CAP: u64 = 64 * 1024 * 1024;

/// Why the trusted lab could not be set up. Every variant is bad input (exit 2): nothing has
/// started.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedError {
    #[error(
        "--lab-from {spec}: neither a directory nor a commit of the repository at {repo}: {detail}"
    )]
    NoSuchSource {
        spec: String,
        repo: String,
        detail: String,
    },
    #[error(
        "--lab-from {0}: the trusted lab is inside the change's own tree, which the change could \
         have written; name a directory outside it, or a git ref"
    )]
    InsideChange(String),
    #[error("{0}: the trusted lab has neither a metalab.toml nor a Vagrantfile")]
    NoLab(String),
    #[error(
        "{0} is a symbolic link in the change's tree: an untrusted run writes nothing through a \
         link the change made"
    )]
    Link(String),
    #[error("the change's suites at {path} hold more than {cap} bytes")]
    TooBig { path: String, cap: u64 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UntrustedError + '_ {
    move |source| UntrustedError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The trusted lab definition of an untrusted run, ready to load.
pub struct TrustedLab {
    /// The lab directory to load the config, Vagrantfile and box recipe from.
    pub dir: PathBuf,
    /// Where it came from, as the run's notices say it: a ref and its commit, or a directory.
    pub source: String,
    /// Scratch space: the exported ref and the change's suites; removed when dropped.
    scratch: TempDir,
}

/// The change's suites, copied as inert files.
pub struct InertSuites {
    pub dir: PathBuf,
    /// What was left out, each as `path (kind)`.
    pub skipped: Vec<String>,
}

impl TrustedLab {
    /// The trusted lab named by `spec` for the change whose lab directory is `change`: `spec` is
    /// a directory outside the change's tree, or a git ref of the repository `change` is in, in
    /// which case the lab is at the same place in the ref's tree as `change` is in the work
    /// tree. `scratch_in` holds the scratch space (the state directory, so that libvirt can
    /// read what Vagrant hands it from there).
    pub fn fetch(spec: &str, change: &Path, scratch_in: &Path) -> Result<Self, UntrustedError> {
        std::fs::create_dir_all(scratch_in).map_err(io(scratch_in))?;
        let scratch = tempfile::Builder::new()
            .prefix("trusted-")
            .tempdir_in(scratch_in)
            .map_err(io(scratch_in))?;
        let (dir, source) = match Path::new(spec).is_dir() {
            true => (outside(spec, change)?, format!("directory {spec}")),
            false => export_ref(spec, change, scratch.path())?,
        };
        if !dir.join(crate::config::FILE_NAME).is_file() && !dir.join("Vagrantfile").is_file() {
            return Err(UntrustedError::NoLab(dir.display().to_string()));
        }
        Ok(TrustedLab {
            dir,
            source,
            scratch,
        })
    }

    /// Copies the change's suites directory `from` as inert files into the scratch space.
    pub fn copy_suites(&self, from: &Path) -> Result<InertSuites, UntrustedError> {
        let dir = self.scratch.path().join("change-suites");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut copy = InertCopy {
            skipped: Vec::new(),
            bytes: 0,
            root: from,
        };
        if from.is_dir() {
            copy.dir(from, &dir)?;
        }
        Ok(InertSuites {
            dir,
            skipped: copy.skipped,
        })
    }
}

/// The directory `spec`, refused when it is the change's lab or inside it.
fn outside(spec: &str, change: &Path) -> Result<PathBuf, UntrustedError> {
    let dir = Path::new(spec)
        .canonicalize()
        .map_err(io(Path::new(spec)))?;
    let change = change.canonicalize().map_err(io(change))?;
    if dir.starts_with(&change) {
        return Err(UntrustedError::InsideChange(spec.to_string()));
    }
    Ok(dir)
}

/// Exports the tree of the commit `spec` names into `scratch`; returns the lab's directory in
/// it and how to name the source. Git reads the repository's objects and its own config, which
/// CI wrote, never anything of the change's work tree.
fn export_ref(
    spec: &str,
    change: &Path,
    scratch: &Path,
) -> Result<(PathBuf, String), UntrustedError> {
    let no_source = |detail: String| UntrustedError::NoSuchSource {
        spec: spec.to_string(),
        repo: change.display().to_string(),
        detail,
    };
    let commit = git(
        change,
        &[
            "rev-parse",
            "--verify",
            "--end-of-options",
            &format!("{spec}^{{commit}}"),
        ],
    )
    .map_err(no_source)?;
    let commit = String::from_utf8_lossy(&commit).trim().to_string();
    let top = git(change, &["rev-parse", "--show-toplevel"]).map_err(no_source)?;
    let top = PathBuf::from(String::from_utf8_lossy(&top).trim());
    // From the top: run in a subdirectory, `git archive` would export only that subdirectory.
    let archive = git(&top, &["archive", "--format=tar", &commit]).map_err(no_source)?;
    let tree = scratch.join("tree");
    tar::Archive::new(&archive[..])
        .unpack(&tree)
        .map_err(io(&tree))?;
    let change = change.canonicalize().map_err(io(change))?;
    let within = change.strip_prefix(&top).unwrap_or(Path::new(""));
    let short = &commit[..commit.len().min(12)];
    Ok((tree.join(within), format!("{spec} (commit {short})")))
}

/// Runs git in `repo` with an allow-listed environment and hooks turned off; its stdout, or why
/// it failed.
fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = crate::child_env::command("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
        ])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    match out.status.success() {
        true => Ok(out.stdout),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// A copy of a directory tree that keeps regular files and directories only, up to a cap.
struct InertCopy<'a> {
    skipped: Vec<String>,
    bytes: u64,
    root: &'a Path,
}

impl InertCopy<'_> {
    fn dir(&mut self, from: &Path, to: &Path) -> Result<(), UntrustedError> {
        let mut entries: Vec<_> = std::fs::read_dir(from)
            .map_err(io(from))?
            .collect::<Result<_, _>>()
            .map_err(io(from))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let target = to.join(entry.file_name());
            let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
            if meta.is_dir() {
                std::fs::create_dir_all(&target).map_err(io(&target))?;
                self.dir(&path, &target)?;
            } else if meta.is_file() {
                self.file(&path, &target, meta.len())?;
            } else {
                let shown = path.strip_prefix(self.root).unwrap_or(&path);
                self.skipped
                    .push(format!("{} ({})", shown.display(), kind(&meta)));
            }
        }
        Ok(())
    }

    fn file(&mut self, from: &Path, to: &Path, len: u64) -> Result<(), UntrustedError> {
        self.bytes += len;
        if self.bytes > SUITES_CAP {
            return Err(UntrustedError::TooBig {
                path: self.root.display().to_string(),
                cap: SUITES_CAP,
            });
        }
        std::fs::copy(from, to).map_err(io(from))?;
        Ok(())
    }
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_symlink() => "symbolic link",
        _ if t.is_block_device() || t.is_char_device() => "device",
        _ if t.is_fifo() => "fifo",
        _ if t.is_socket() => "socket",
        _ => "not a regular file",
    }
}

/// Refuses a path the run will write under `change` (its artifacts) when any part of it below
/// `change` is a symbolic link: the change could point it anywhere on the host.
pub fn refuse_links(change: &Path, path: &Path) -> Result<(), UntrustedError> {
    let Ok(below) = path.strip_prefix(change) else {
        return Ok(());
    };
    let mut at = change.to_path_buf();
    for part in below.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UntrustedError::Link(at.display().to_string()));
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str) {
        let ok = crate::child_env::command("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }

    /// A repository whose `main` has a trusted lab in `lab/`, and a work tree (the change)
    /// where `lab/` has a hostile Vagrantfile, a symlink among the suites and a fifo.
    fn repo() -> TempDir {
        let d = tempfile::tempdir().unwrap();
        sh(
            d.path(),
            "git init -q -b main . && git config user.email t@t && git config user.name t
             mkdir -p lab/suites/ok && echo '# trusted' > lab/Vagrantfile
             echo 'vms = []' > lab/suites/ok/suite.toml
             git add -A && git commit -qm base
             echo 'File.write(\"/tmp/pwned\", ENV.to_h.to_s)' > lab/Vagrantfile
             echo '[[test]]' > lab/suites/ok/suite.toml
             ln -s /etc/passwd lab/suites/ok/passwd && mkfifo lab/suites/ok/pipe",
        );
        d
    }

    #[test]
    fn a_ref_gives_the_lab_as_committed_and_the_change_gives_only_inert_suites() {
        let repo = repo();
        let scratch = tempfile::tempdir().unwrap();
        let change = repo.path().join("lab");
        let lab = TrustedLab::fetch("main", &change, scratch.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(lab.dir.join("Vagrantfile")).unwrap(),
            "# trusted\n"
        );
        assert!(lab.source.starts_with("main (commit "), "{}", lab.source);
        let suites = lab.copy_suites(&change.join("suites")).unwrap();
        assert_eq!(
            std::fs::read_to_string(suites.dir.join("ok/suite.toml")).unwrap(),
            "[[test]]\n"
        );
        assert!(!suites.dir.join("ok/passwd").exists());
        assert!(!suites.dir.join("ok/pipe").exists());
        assert_eq!(
            suites.skipped,
            ["ok/passwd (symbolic link)", "ok/pipe (fifo)"]
        );
    }

    #[test]
    fn an_unknown_ref_and_a_directory_inside_the_change_are_refused() {
        let repo = repo();
        let scratch = tempfile::tempdir().unwrap();
        let change = repo.path().join("lab");
        let e = TrustedLab::fetch("no-such-branch", &change, scratch.path())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("--lab-from no-such-branch: neither"),
            "{e}"
        );
        let inside = change.join("suites").display().to_string();
        let e = TrustedLab::fetch(&inside, &change, scratch.path())
            .err()
            .unwrap();
        assert!(matches!(e, UntrustedError::InsideChange(_)), "{e}");
    }

    #[test]
    fn a_directory_outside_the_change_is_used_as_it_is() {
        let repo = repo();
        let trusted = tempfile::tempdir().unwrap();
        std::fs::write(trusted.path().join("Vagrantfile"), "# mine\n").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let spec = trusted.path().display().to_string();
        let lab = TrustedLab::fetch(&spec, &repo.path().join("lab"), scratch.path()).unwrap();
        assert_eq!(lab.dir, trusted.path().canonicalize().unwrap());
        assert_eq!(lab.source, format!("directory {spec}"));
    }

    #[test]
    fn a_link_on_the_way_to_the_artifacts_is_refused() {
        let change = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", change.path().join("artifacts")).unwrap();
        let e = refuse_links(change.path(), &change.path().join("artifacts/x")).unwrap_err();
        assert!(matches!(e, UntrustedError::Link(_)), "{e}");
        std::fs::create_dir(change.path().join("real")).unwrap();
        refuse_links(change.path(), &change.path().join("real/x")).unwrap();
    }
}
