//! Removing the box versions a host no longer needs.
//!
//! Every change to a box recipe builds a new version, and the old one stays in three places, about
//! 330 MB in each: the box file (metalab's build cache here, the shipped copy on a remote host),
//! Vagrant's registered boxes, and the base volume in the `metalab` storage pool that
//! vagrant-libvirt uploads on first use. A pruned version is removed from all three, unless the
//! current recipe built it, a libvirt domain or volume still refers to it (a lab that is up, or one
//! a crashed run left for `metalab reap`), or it is among the newest versions kept on purpose
//! (`--keep`). Everything goes through the host's transport, so this machine and an inventory
//! host over SSH are pruned alike.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;

use crate::boxes::vagrant_slug;
use crate::host::Host;
use crate::libvirt::{self, Definition};
use crate::model::record::BoxInfo;
use crate::state::BOX_INFO;
use crate::transport::{Command, marked_sections, sh_quote, stdout_of};

/// One version of a box, wherever it is found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: String,
    /// The directory holding its box file: metalab's build cache, or the shipped copy.
    pub box_dir: Option<String>,
    /// Vagrant's directory for it, when it is registered.
    pub registered_dir: Option<String>,
    /// Its base volume in the storage pool: name and path.
    pub volume: Option<(String, String)>,
}

/// What happens to a version, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Remove,
    Keep(String),
}

const TIMEOUT: Duration = Duration::from_secs(120);
/// Starts each section of the inventory script's output.
const MARK: &str = "@@metalab-box";

/// Every version of `box_name` on the host, newest first.
pub async fn inventory(host: &Host, box_name: &str) -> anyhow::Result<Vec<Version>> {
    // Each box directory has a box.json (what was built), and each registered version Vagrant's
    // metadata.json; `vagrant box remove` leaves the version's directory behind, empty.
    let script = format!(
        "for f in {boxes}/*/{BOX_INFO}; do [ -f \"$f\" ] && echo \"{MARK} box ${{f%/{BOX_INFO}}}\" && cat \"$f\" && echo; done; \
         for m in {registered}/*/libvirt/metadata.json; do [ -f \"$m\" ] && echo \"{MARK} registered ${{m%/libvirt/metadata.json}}\"; done; true",
        boxes = sh_quote(&host.state().boxes().display().to_string()),
        registered = sh_quote(&format!(
            "{}/boxes/{}",
            host.vagrant_home(),
            vagrant_slug(box_name)
        )),
    );
    let listed = run(host, &script).await?;
    // By version; a version may be in any of the three places.
    let mut found: BTreeMap<String, Version> = BTreeMap::new();
    for (head, body) in marked_sections(&listed, MARK) {
        match head.split_once(' ') {
            Some(("box", dir)) => {
                let info: BoxInfo = serde_json::from_str(&body)
                    .with_context(|| format!("corrupt {dir}/{BOX_INFO} on {}", host.name))?;
                if info.name == box_name {
                    at(&mut found, &info.version).box_dir = Some(dir.to_string());
                }
            }
            Some((_, dir)) => {
                let version = dir.rsplit('/').next().unwrap_or_default();
                at(&mut found, version).registered_dir = Some(dir.to_string());
            }
            None => {}
        }
    }
    for (name, path) in libvirt::pool_volumes(host.transport.as_ref()).await? {
        if let Some(version) = base_volume_version(box_name, &name) {
            at(&mut found, version).volume = Some((name.clone(), path));
        }
    }
    Ok(found.into_values().rev().collect())
}

/// The entry of a version, made on first sight.
fn at<'a>(found: &'a mut BTreeMap<String, Version>, version: &str) -> &'a mut Version {
    found.entry(version.to_string()).or_insert_with(|| Version {
        version: version.to_string(),
        box_dir: None,
        registered_dir: None,
        volume: None,
    })
}

/// Decides each version's fate. `versions` (of `box_name`) is newest first; `keep_newest` counts
/// the versions kept beyond the current one and those in use.
pub fn plan(
    box_name: &str,
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
            if let Some(user) = users.iter().find(|u| refers_to(u, box_name, &v.version)) {
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

/// Removes a version from Vagrant, the pool and the box directory, in that order: a version whose
/// registration is gone can no longer be picked by `vagrant up`.
pub async fn remove(host: &Host, box_name: &str, v: &Version) -> anyhow::Result<()> {
    if let Some(dir) = &v.registered_dir {
        let script = format!(
            "vagrant box remove --force --provider libvirt --box-version {} {} >/dev/null && {{ rmdir {} 2>/dev/null || true; }}",
            sh_quote(&v.version),
            sh_quote(box_name),
            sh_quote(dir)
        );
        let cmd = crate::vagrant::index::housekeeping(script, &host.vagrant_home(), TIMEOUT);
        stdout_of(host.transport.as_ref(), &cmd)
            .await
            .with_context(|| format!("on {}", host.name))?;
    }
    if let Some((name, _)) = &v.volume {
        libvirt::delete_volume(host.transport.as_ref(), name).await?;
    }
    if let Some(dir) = &v.box_dir {
        run(host, &format!("rm -rf {}", sh_quote(dir))).await?;
    }
    Ok(())
}

/// Bytes a version takes on the host's disks, in all its places (allocated, as `du` counts them).
pub async fn disk_usage(host: &Host, v: &Version) -> anyhow::Result<u64> {
    let paths: Vec<String> = [
        v.box_dir.clone(),
        v.registered_dir.clone(),
        v.volume.as_ref().map(|(_, path)| path.clone()),
    ]
    .into_iter()
    .flatten()
    .map(|p| sh_quote(&p))
    .collect();
    let total = run(host, &format!("du -scB1 {} | tail -n 1", paths.join(" "))).await?;
    Ok(total
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Where a version is, for a message: "box, vagrant, pool".
pub fn places(v: &Version) -> String {
    let mut places = Vec::new();
    if v.box_dir.is_some() {
        places.push("box");
    }
    if v.registered_dir.is_some() {
        places.push("vagrant");
    }
    if v.volume.is_some() {
        places.push("pool");
    }
    places.join(", ")
}

/// A definition refers to a version of a box through a path: the registered box's kernel
/// (`…/boxes/<slug>/<version>/libvirt/vmlinuz`), or its base volume in a backing chain.
fn refers_to(user: &Definition, box_name: &str, version: &str) -> bool {
    let slug = vagrant_slug(box_name);
    user.xml.contains(&format!("/{slug}/{version}/"))
        || user
            .xml
            .contains(&format!("/{slug}_vagrant_box_image_{version}_box.img"))
}

/// The version in a base volume's name, as vagrant-libvirt names them:
/// `metalab-VAGRANTSLASH-debian12_vagrant_box_image_20261123.031350.0_box.img`.
fn base_volume_version<'a>(box_name: &str, volume: &'a str) -> Option<&'a str> {
    volume
        .strip_prefix(&format!("{}_vagrant_box_image_", vagrant_slug(box_name)))?
        .strip_suffix("_box.img")
}

/// Runs a script on the host as root; its stdout, or its failure.
async fn run(host: &Host, script: &str) -> anyhow::Result<String> {
    stdout_of(
        host.transport.as_ref(),
        &Command::new(script, TIMEOUT).sudo(true),
    )
    .await
    .with_context(|| format!("on {}", host.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOX: &str = "metalab/debian12";

    fn version(v: &str) -> Version {
        Version {
            version: v.into(),
            box_dir: None,
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
        let verdicts = plan(BOX, &versions, Some("20261123.000000.0"), &users, 0);
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
        let verdicts = plan(BOX, &versions, Some("20261123.000000.0"), &[], 1);
        assert_eq!(
            verdicts[1],
            Verdict::Keep("one of the 1 newest kept (--keep)".into())
        );
        assert_eq!(verdicts[2], Verdict::Remove);
        // No current build (the recipe changed and is not built yet): only --keep protects.
        let verdicts = plan(BOX, &versions, None, &[], 1);
        assert!(matches!(verdicts[0], Verdict::Keep(_)));
        assert_eq!(&verdicts[1..], [Verdict::Remove, Verdict::Remove]);
    }

    #[test]
    fn a_version_is_not_mistaken_for_another_or_for_another_box_s() {
        let users = [user(
            "domain",
            "d",
            "/boxes/metalab-VAGRANTSLASH-debian12/20261121.000000.0/libvirt/vmlinuz",
        )];
        assert!(refers_to(&users[0], BOX, "20261121.000000.0"));
        assert!(!refers_to(&users[0], BOX, "1121.000000.0"));
        assert!(!refers_to(
            &users[0],
            "metalab/debian13",
            "20261121.000000.0"
        ));
    }
}
