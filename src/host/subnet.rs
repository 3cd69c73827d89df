//! Each VM set's private lab network gets a /24 of its own (`10.77.<n>.0/24`), so two runs (or
//! two lanes of one run) on a host never put two VMs on the same address. A claim file on the
//! host (in /run/metalab, shared by every state directory), written under a lock, reserves the
//! subnet until the network exists; from then on the
//! network's own address on the host reserves it. A claim older than half an hour without a
//! network is stale (its run died), and free again.

use std::time::Duration;

use anyhow::bail;

use super::Host;
use crate::transport::{Collect, Command, sh_quote};

/// Claims live outside any one state directory: every metalab on the host shares the subnets.
const CLAIMS: &str = "/run/metalab/subnets";

const CLAIM: &str = r#"
set -eu
mkdir -p "$CLAIMS"
exec 9>"$CLAIMS/.lock"
flock 9
used=" $(ip -o -4 addr show | grep -o ' 10\.77\.[0-9]*\.' | cut -d. -f3 | tr '\n' ' ') "
now=$(date +%s)
for n in $(seq 1 254); do
  case "$used" in *" $n "*) continue ;; esac
  f="$CLAIMS/$n"
  if [ -f "$f" ] && [ $(( now - $(stat -c %Y "$f") )) -lt 1800 ]; then continue; fi
  echo "$OWNER" > "$f"
  echo "10.77.$n"
  exit 0
done
echo "every subnet 10.77.1-254 is in use on this host" >&2
exit 1
"#;

/// What `METALAB_SUBNET` is when metalab describes a lab: claims never hand it out, so a network
/// in it follows `METALAB_SUBNET`, and any other network's subnet is pinned by the lab.
pub const PROBE: &str = "10.77.255";

/// [`PROBE`] as the network it makes: `10.77.255.0/24`.
pub fn probe_network() -> String {
    format!("{PROBE}.0/24")
}

/// A claimed subnet. [`release`] frees it; a claim that is never released expires by itself.
#[derive(Debug, Clone)]
pub struct Claim {
    /// `10.77.<n>`: the first three octets, as the Vagrantfile takes them.
    pub prefix: String,
    owner: String,
}

/// Claims a subnet on the host for `owner` (the run id and lane). `10.77.0` is left to people
/// running the Vagrantfile by hand.
pub async fn claim(host: &Host, owner: &str) -> anyhow::Result<Claim> {
    let mut out = Collect::default();
    let cmd = Command::new(CLAIM, Duration::from_secs(60))
        .env("CLAIMS", CLAIMS)
        .env("OWNER", owner)
        .sudo(true);
    let outcome = host.transport.exec(&cmd, &mut out).await?;
    if !outcome.success() {
        bail!(
            "cannot claim a subnet on {}: {}",
            host.name,
            out.stderr_text().trim()
        );
    }
    Ok(Claim {
        prefix: out.stdout_text().trim().to_string(),
        owner: owner.to_string(),
    })
}

/// Frees a claim (only if it is still this owner's).
pub async fn release(host: &Host, claim: &Claim) {
    let n = claim.prefix.rsplit('.').next().unwrap_or_default();
    let f = sh_quote(&format!("{CLAIMS}/{n}"));
    let script = format!(
        "[ \"$(cat {f} 2>/dev/null)\" = {} ] && rm -f {f}; true",
        sh_quote(&claim.owner)
    );
    let _ = host
        .transport
        .exec(
            &Command::new(script, Duration::from_secs(30)).sudo(true),
            &mut Collect::default(),
        )
        .await;
}
