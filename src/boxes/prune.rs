//! Removing the box versions a host no longer needs.
//!
//! Every change to a box recipe builds a new version, and the old one stays in three places, about
//! 330 MB in each: metalab's build cache, Vagrant's registered boxes, and the base volume in the
//! `metalab` storage pool that vagrant-libvirt uploads on first use. A pruned version is removed
//! from all three, unless the current recipe built it, a libvirt domain or volume still refers to
//! it (a lab that is up, or one a crashed run left for `metalab reap`), or it is among the newest
//! versions kept on purpose (`--keep`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::libvirt::{self, Definition};
use crate::report::record::BoxInfo;
use crate::state::StateDir;
use crate::transport::{Collect, Command, Transport, sh_quote};

/// One version of a box, wherever it is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: String,
    /// metalab's build cache directory for it.
    pub cache_dir: Option<PathBuf>,
    /// Vagrant's directory for it, when it is registered.
    pub registered_dir: Option<PathBuf>,
    /// Its base volume in the storage pool: name and path.
    pub volume: Option<(String, String)>,
}

/// What happens to a version, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Remove,
    Keep(String),
}

/// Every version of `box_name` on this machine, newest first.
pub async fn inventory(
    host: &dyn Transport,
    state: &StateDir,
    box_name: &str,
) -> anyhow::Result<Vec<Version>> {
    let mut versions: Vec<Version> = Vec::new();
    for (dir, info) in cached_builds(&state.boxes())? {
        if info.name == box_name {
            entry(&mut versions, &info.version).cache_dir = Some(dir);
        }
    }
    let registered = state.vagrant_home().join("boxes").join(slug(box_name));
    for version in subdirectories(&registered)? {
        let dir = registered.join(&version);
        // `vagrant box remove` leaves the version's directory behind, empty.
        if dir.join("libvirt/metadata.json").is_file() {
            entry(&mut versions, &version).registered_dir = Some(dir);
        }
    }
    for (name, path) in libvirt::pool_volumes(host).await? {
        if let Some(version) = base_volume_version(box_name, &name) {
            entry(&mut versions, version).volume = Some((name.clone(), path));
        }
    }
    versions.sort_by(|a, b| b.version.cmp(&a.version));
    Ok(versions)
}

fn entry<'a>(versions: &'a mut Vec<Version>, version: &str) -> &'a mut Version {
    if let Some(i) = versions.iter().position(|v| v.version == version) {
        return &mut versions[i];
    }
    versions.push(Version {
        version: version.to_string(),
        cache_dir: None,
        registered_dir: None,
        volume: None,
    });
    versions.last_mut().expect("just pushed")
}

/// Decides each version's fate. `versions` is newest first; `keep_newest` counts the versions kept
/// beyond the current one and those in use.
pub fn plan(
    versions: &[Version],
    current: Option<&str>,
    users: &[Definition],
    keep_newest: usize,
) -> Vec<Verdict> {
    let mut kept_newest = 0;
    versions
        .iter()
        .map(|v| {
            if current == Some(v.version.as_str()) {
                return Verdict::Keep("built by the current recipe".into());
            }
            if let Some(user) = users.iter().find(|u| refers_to(u, &v.version)) {
                return Verdict::Keep(format!("used by {} {}", user.kind, user.name));
            }
            if kept_newest < keep_newest {
                kept_newest += 1;
                return Verdict::Keep(format!("one of the {keep_newest} newest kept (--keep)"));
            }
            Verdict::Remove
        })
        .collect()
}

/// Removes a version from Vagrant, the pool and the build cache, in that order: a version whose
/// registration is gone can no longer be picked by `vagrant up`.
pub async fn remove(
    host: &dyn Transport,
    state: &StateDir,
    box_name: &str,
    v: &Version,
) -> anyhow::Result<()> {
    if v.registered_dir.is_some() {
        let cmd = Command::new(
            format!(
                "vagrant box remove --force --provider libvirt --box-version {} {}",
                sh_quote(&v.version),
                sh_quote(box_name)
            ),
            Duration::from_secs(120),
        )
        .env("VAGRANT_HOME", state.vagrant_home().display().to_string())
        .env("VAGRANT_CHECKPOINT_DISABLE", "1");
        let mut out = Collect::default();
        let outcome = host.exec(&cmd, &mut out).await?;
        if !outcome.success() {
            bail!(
                "vagrant box remove {box_name} {} failed ({}): {}",
                v.version,
                outcome.describe(),
                out.stderr_text().trim()
            );
        }
    }
    if let Some(dir) = &v.registered_dir {
        let _ = std::fs::remove_dir(dir); // what Vagrant leaves: the version directory, if empty
    }
    if let Some((name, _)) = &v.volume {
        libvirt::delete_volume(host, name).await?;
    }
    if let Some(dir) = &v.cache_dir {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

/// Bytes a version takes on disk, in all its places.
pub fn disk_usage(v: &Version) -> u64 {
    let volume = v.volume.as_ref().map(|(_, path)| PathBuf::from(path));
    [v.cache_dir.clone(), v.registered_dir.clone(), volume]
        .into_iter()
        .flatten()
        .map(|p| allocated(&p))
        .sum()
}

/// Where a version is, for a message: "cache, vagrant, pool".
pub fn places(v: &Version) -> String {
    let mut places = Vec::new();
    if v.cache_dir.is_some() {
        places.push("cache");
    }
    if v.registered_dir.is_some() {
        places.push("vagrant");
    }
    if v.volume.is_some() {
        places.push("pool");
    }
    places.join(", ")
}

/// A definition refers to a version through a path: the registered box's kernel, or a base
/// volume in a backing chain. Versions are build times (`20261123.031350.0`), found nowhere else.
fn refers_to(user: &Definition, version: &str) -> bool {
    user.xml.contains(&format!("/{version}/")) || user.xml.contains(&format!("_{version}_"))
}

fn slug(box_name: &str) -> String {
    box_name.replace('/', "-VAGRANTSLASH-")
}

/// The version in a base volume's name, as vagrant-libvirt names them:
/// `metalab-VAGRANTSLASH-debian12_vagrant_box_image_20261123.031350.0_box.img`.
fn base_volume_version<'a>(box_name: &str, volume: &'a str) -> Option<&'a str> {
    volume
        .strip_prefix(&format!("{}_vagrant_box_image_", slug(box_name)))?
        .strip_suffix("_box.img")
}

/// The finished builds in metalab's box cache: directory and what was built.
pub fn cached_builds(dir: &Path) -> anyhow::Result<Vec<(PathBuf, BoxInfo)>> {
    let mut found = Vec::new();
    for sub in subdirectories(dir)? {
        let path = dir.join(&sub);
        let Ok(json) = std::fs::read_to_string(path.join("box.json")) else {
            continue; // an unfinished build: the next build of its recipe replaces it
        };
        let info: BoxInfo = serde_json::from_str(&json)
            .with_context(|| format!("corrupt {}", path.join("box.json").display()))?;
        found.push((path, info));
    }
    Ok(found)
}

fn subdirectories(dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// Bytes allocated on disk under `path` (sparse images count for what they hold, as with `du`).
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| allocated(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: &str) -> Version {
        Version {
            version: v.into(),
            cache_dir: None,
            registered_dir: None,
            volume: None,
        }
    }

    fn user(kind: &'static str, name: &str, xml: &str) -> Definition {
        Definition {
            kind,
            name: name.into(),
            xml: xml.into(),
        }
    }

    #[test]
    fn base_volumes_are_told_apart_by_box_and_version() {
        let name = "metalab-VAGRANTSLASH-debian12_vagrant_box_image_20261123.031350.0_box.img";
        assert_eq!(
            base_volume_version("metalab/debian12", name),
            Some("20261123.031350.0")
        );
        assert_eq!(base_volume_version("metalab/debian13", name), None);
        assert_eq!(
            base_volume_version("metalab/debian12", "metalab-r1-node1.img"),
            None
        );
    }

    #[test]
    fn the_current_version_and_versions_in_use_are_kept_and_the_rest_removed() {
        let versions = [
            version("20261123.000000.0"),
            version("20261122.000000.0"),
            version("20261121.000000.0"),
            version("20261120.000000.0"),
        ];
        let users = [
            user(
                "domain",
                "metalab-r1-node1",
                "<kernel>/var/lib/metalab/vagrant.d/boxes/metalab-VAGRANTSLASH-debian12/20261121.000000.0/libvirt/vmlinuz</kernel>",
            ),
            user(
                "volume",
                "metalab-r2-node1.img",
                "<backingStore><path>/var/lib/metalab/pool/metalab-VAGRANTSLASH-debian12_vagrant_box_image_20261120.000000.0_box.img</path></backingStore>",
            ),
        ];
        let verdicts = plan(&versions, Some("20261123.000000.0"), &users, 0);
        assert_eq!(
            verdicts,
            [
                Verdict::Keep("built by the current recipe".into()),
                Verdict::Remove,
                Verdict::Keep("used by domain metalab-r1-node1".into()),
                Verdict::Keep("used by volume metalab-r2-node1.img".into()),
            ]
        );
    }

    #[test]
    fn keep_counts_the_newest_versions_beyond_the_current_one() {
        let versions = [
            version("20261123.000000.0"),
            version("20261122.000000.0"),
            version("20261121.000000.0"),
        ];
        let verdicts = plan(&versions, Some("20261123.000000.0"), &[], 1);
        assert_eq!(
            verdicts[1],
            Verdict::Keep("one of the 1 newest kept (--keep)".into())
        );
        assert_eq!(verdicts[2], Verdict::Remove);
        // No current build (the recipe changed and is not built yet): only --keep protects.
        let verdicts = plan(&versions, None, &[], 1);
        assert!(matches!(verdicts[0], Verdict::Keep(_)));
        assert_eq!(&verdicts[1..], [Verdict::Remove, Verdict::Remove]);
    }

    #[test]
    fn a_version_is_not_mistaken_for_another_that_contains_it() {
        let users = [user(
            "domain",
            "d",
            "/boxes/metalab-VAGRANTSLASH-debian12/20261121.000000.0/libvirt/vmlinuz",
        )];
        assert!(!refers_to(&users[0], "1121.000000.0"));
        assert!(refers_to(&users[0], "20261121.000000.0"));
    }
}
