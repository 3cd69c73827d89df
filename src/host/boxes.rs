//! Installing a built box on a host: shipped only when the host lacks that exact sha256, and
//! registered with the host's Vagrant once per version.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use super::Host;
use crate::boxes::{BuiltBox, vagrant_slug};
use crate::state::{BOX_FILE, BOX_INFO, BOX_SHA256};
use crate::transport::{Collect, Command, OutputSink, sh_quote};

/// What installing the box took.
pub struct Installed {
    /// The box's kernel on the host, for the accelerator probe.
    pub kernel: String,
    /// Bytes sent to the host (0 when it had the box).
    pub shipped: u64,
    /// Whether `vagrant box add` ran.
    pub registered: bool,
}

/// Makes sure the host's Vagrant has the box.
pub async fn install(
    host: &Host,
    built: &BuiltBox,
    sink: &mut dyn OutputSink,
) -> anyhow::Result<Installed> {
    let dir = registered_dir(host, built);
    let kernel = kernel_in(&dir);
    if registered(host, built, &format!("{dir}/metadata.json")).await? {
        return Ok(Installed {
            kernel,
            shipped: 0,
            registered: false,
        });
    }
    let (box_path, shipped) = if host.is_local() {
        (built.path.display().to_string(), 0)
    } else {
        ship(host, built).await?
    };
    register(host, built, &box_path, sink).await?;
    Ok(Installed {
        kernel,
        shipped,
        registered: true,
    })
}

/// Whether the host's Vagrant has the version. In the same round trip, a shipped copy of the box
/// gets its record of what it is (copies shipped before versions were recorded lack one).
async fn registered(host: &Host, built: &BuiltBox, metadata: &str) -> anyhow::Result<bool> {
    let script = format!(
        "test -f {} || exit 1; {}",
        sh_quote(metadata),
        record_version(host, built)?
    );
    let cmd = Command::new(script, Duration::from_secs(30)).sudo(true);
    Ok(host
        .transport
        .exec(&cmd, &mut Collect::default())
        .await?
        .success())
}

/// Where the host's Vagrant keeps the box version once it is registered.
fn registered_dir(host: &Host, built: &BuiltBox) -> String {
    built
        .registered_dir(Path::new(&host.vagrant_home()))
        .display()
        .to_string()
}

/// Where the box is kept on the host: the build cache on this machine, the shipped copy on others.
fn box_dir(host: &Host, built: &BuiltBox) -> String {
    let dir = built
        .path
        .parent()
        .and_then(|d| d.file_name())
        .map_or("box".into(), |n| n.to_string_lossy().into_owned());
    host.state().boxes().join(dir).display().to_string()
}

/// Shell that writes `box.json` (what the box is, as in the build cache) beside a shipped copy of
/// this very build, unless it says so already: `metalab box prune` finds a host's versions by it.
fn record_version(host: &Host, built: &BuiltBox) -> anyhow::Result<String> {
    let dir = box_dir(host, built);
    Ok(format!(
        "if [ \"$(cat {sum} 2>/dev/null)\" = {sha} ] && [ \"$(cat {info_file} 2>/dev/null)\" != {info} ]; \
         then printf '%s' {info} > {info_file}; fi; true",
        sum = sh_quote(&format!("{dir}/{BOX_SHA256}")),
        sha = sh_quote(&built.info.sha256),
        info_file = sh_quote(&format!("{dir}/{BOX_INFO}")),
        info = sh_quote(&serde_json::to_string(&built.info)?),
    ))
}

/// Copies the box to the host unless a copy with the same sha256 is already there.
async fn ship(host: &Host, built: &BuiltBox) -> anyhow::Result<(String, u64)> {
    let dir = box_dir(host, built);
    let remote = format!("{dir}/{BOX_FILE}");
    let sum_file = format!("{dir}/{BOX_SHA256}");
    let record = record_version(host, built)?;
    let mut out = Collect::default();
    let read_sum = Command::new(
        format!("cat {} 2>/dev/null; {record}", sh_quote(&sum_file)),
        Duration::from_secs(30),
    )
    .sudo(true);
    host.transport.exec(&read_sum, &mut out).await?;
    if out.stdout_text().trim() == built.info.sha256 {
        return Ok((remote, 0));
    }
    let size = std::fs::metadata(&built.path)?.len();
    let q = sh_quote(&remote);
    let script = format!(
        "set -e; mkdir -p \"$(dirname {q})\"; cat > {q}.partial; \
         sum=$(sha256sum {q}.partial | cut -d' ' -f1); \
         if [ \"$sum\" != {sha} ]; then echo \"sha256 mismatch after transfer: $sum\" >&2; rm -f {q}.partial; exit 1; fi; \
         mv {q}.partial {q}; echo {sha} > {sum_q}; {record}",
        sha = sh_quote(&built.info.sha256),
        sum_q = sh_quote(&sum_file)
    );
    let mut out = Collect::default();
    let cmd = Command::new(script, Duration::from_secs(3600))
        .stdin_file(&built.path)
        .sudo(true);
    let outcome = host.transport.exec(&cmd, &mut out).await?;
    if !outcome.success() {
        bail!(
            "shipping the box to {} failed ({}): {}",
            host.name,
            outcome.describe(),
            out.stderr_text().trim()
        );
    }
    Ok((remote, size))
}

/// `vagrant box add` through a catalog, so the box gets its version and Vagrant checks the
/// sha256. Serialised per host: Vagrant's box store is not safe for concurrent adds.
async fn register(
    host: &Host,
    built: &BuiltBox,
    box_path: &str,
    sink: &mut dyn OutputSink,
) -> anyhow::Result<()> {
    let catalog = serde_json::json!({
        "name": built.info.name,
        "versions": [{
            "version": built.info.version,
            "providers": [{
                "name": "libvirt",
                "url": format!("file://{box_path}"),
                "checksum_type": "sha256",
                "checksum": built.info.sha256,
            }]
        }]
    });
    let catalog_path = format!("{box_path}.catalog.json");
    let script = format!(
        "set -e; mkdir -p {locks}; exec 9>{lock}; flock 9; \
         cat > {cat}; \
         if [ -f {done} ]; then exit 0; fi; \
         vagrant box add --no-color {cat}",
        locks = sh_quote(&host.state().locks().display().to_string()),
        lock = sh_quote(&host.state().lock("box-add").display().to_string()),
        cat = sh_quote(&catalog_path),
        done = sh_quote(&format!("{}/metadata.json", registered_dir(host, built))),
    );
    let cmd = Command::new(script, Duration::from_secs(900))
        .stdin(serde_json::to_vec_pretty(&catalog)?)
        .env("VAGRANT_HOME", host.vagrant_home())
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .sudo(true);
    let outcome = host.transport.exec(&cmd, sink).await?;
    if !outcome.success() {
        bail!(
            "vagrant box add on {} failed ({})",
            host.name,
            outcome.describe()
        );
    }
    Ok(())
}

/// Where a registered box with direct kernel boot keeps its kernel (metalab's boxes do).
pub fn kernel_in(box_dir: &str) -> String {
    format!("{box_dir}/vmlinuz")
}

/// A box the Vagrantfile names, as found registered on a host.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub version: String,
    /// Its directory in metalab's Vagrant home on the host.
    pub dir: String,
    /// The sha256 of its disk image.
    pub sha256: String,
    /// Set when it was found in another Vagrant home and registered in metalab's from there.
    pub imported_from: Option<String>,
}

/// Looks for a box the Vagrantfile names (newest version, or `version` when it names one) in
/// the Vagrant homes of the host's users first (`$VAGRANT_HOME`, `~/.vagrant.d`): the box as the
/// developer's own Vagrant finds it, registered in metalab's home (hard links where it can) and
/// registered again when the team replaced it (`vagrant box add --force` of the same version);
/// then in metalab's home (the boxes it built, or one a team's home no longer has). The image's
/// sha256 is cached beside it, by size and modification time. `None`: Vagrant has it nowhere,
/// and fetches it itself during `vagrant up`.
pub async fn find_registered(
    host: &Host,
    name: &str,
    version: Option<&str>,
) -> anyhow::Result<Option<Registered>> {
    let mut homes = Vec::new();
    if host.is_local() {
        homes.extend(std::env::var("VAGRANT_HOME").ok());
        homes.extend(
            std::env::var("HOME")
                .ok()
                .map(|h| format!("{h}/.vagrant.d")),
        );
    } else {
        homes.push("${VAGRANT_HOME:-}".into());
        homes.push("$HOME/.vagrant.d".into());
    }
    homes.push(host.vagrant_home());
    let script = FIND_REGISTERED.replace("@HOMES@", &homes.join(" "));
    let cmd = Command::new(script, Duration::from_secs(1800))
        .env("MINE", host.vagrant_home())
        .env("SLUG", vagrant_slug(name))
        .env("WANT", version.unwrap_or_default())
        .sudo(true);
    let mut out = Collect::default();
    let outcome = host.transport.exec(&cmd, &mut out).await?;
    if outcome.exit == crate::transport::Exit::Code(3) {
        return Ok(None);
    }
    if !outcome.success() {
        bail!(
            "cannot look for box {name} on {} ({}): {}",
            host.name,
            outcome.describe(),
            out.stderr_text().trim()
        );
    }
    Ok(parse_registered(&out.stdout_text()))
}

/// Exits 3 when no home has the box; prints `imported FROM` and `box VERSION DIR SHA256`.
const FIND_REGISTERED: &str = r#"
set -eu
found=""
for home in @HOMES@; do
  [ -n "$home" ] && [ -d "$home/boxes/$SLUG" ] || continue
  v=$WANT
  [ -n "$v" ] || v=$(ls -1 "$home/boxes/$SLUG" | grep -v '^metadata_url$' | sort -V | tail -1)
  if [ -n "$v" ] && [ -f "$home/boxes/$SLUG/$v/libvirt/metadata.json" ]; then found="$home"; break; fi
done
[ -n "$found" ] || exit 3
dst="$MINE/boxes/$SLUG/$v/libvirt"
image() { ls "$1"/box*.img 2>/dev/null | head -1; }
# The same image: one file (hard links), or a copy of the same size and modification time.
same() { [ -n "$1" ] && [ -n "$2" ] && { [ "$1" -ef "$2" ] || [ "$(stat -c %s.%Y "$1")" = "$(stat -c %s.%Y "$2")" ]; }; }
if [ "$found" != "$MINE" ] && ! { [ -d "$dst" ] && same "$(image "$found/boxes/$SLUG/$v/libvirt")" "$(image "$dst")"; }; then
  src="$found/boxes/$SLUG/$v/libvirt"
  mkdir -p "$(dirname "$dst")"
  rm -rf "$dst.partial"
  cp -al "$src" "$dst.partial" 2>/dev/null || { rm -rf "$dst.partial"; cp -a "$src" "$dst.partial"; }
  rm -rf "$dst"
  mv "$dst.partial" "$dst"
  echo "imported $src"
fi
img=$(ls "$dst"/box*.img 2>/dev/null | head -1)
[ -n "$img" ] || { echo "box $v $dst -"; exit 0; }
stamp=$(stat -c '%s %Y' "$img")
cache="$dst/.metalab-sha256"
if [ -f "$cache" ] && [ "$(cut -d' ' -f1,2 "$cache")" = "$stamp" ]; then
  sha=$(cut -d' ' -f3 "$cache")
else
  sha=$(sha256sum "$img" | cut -d' ' -f1)
  echo "$stamp $sha" > "$cache"
fi
echo "box $v $dst $sha"
"#;

fn parse_registered(out: &str) -> Option<Registered> {
    let imported_from = out
        .lines()
        .find_map(|l| l.strip_prefix("imported "))
        .map(str::to_string);
    let line = out.lines().find_map(|l| l.strip_prefix("box "))?;
    let mut words = line.split_whitespace();
    Some(Registered {
        version: words.next()?.to_string(),
        dir: words.next()?.to_string(),
        sha256: words.next().filter(|s| *s != "-").unwrap_or("").to_string(),
        imported_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_box_is_read_with_where_it_came_from() {
        let out = "imported /root/.vagrant.d/boxes/acme-VAGRANTSLASH-bookworm/0/libvirt\n\
                   box 0 /var/lib/metalab/vagrant.d/boxes/acme-VAGRANTSLASH-bookworm/0/libvirt abc123\n";
        let r = parse_registered(out).unwrap();
        assert_eq!(r.version, "0");
        assert_eq!(r.sha256, "abc123");
        assert!(r.imported_from.unwrap().starts_with("/root/.vagrant.d"));
        assert_eq!(parse_registered("box 1.2 /d -\n").unwrap().sha256, "");
        assert_eq!(parse_registered("nothing\n"), None);
    }
}
