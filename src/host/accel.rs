//! KVM when it works, TCG otherwise. `/dev/kvm` existing proves little: on some hosts (nested
//! virtualisation) KVM guests hang without a word. So the probe boots the box's kernel under KVM
//! on the host and waits for its first line on the serial console. The answer is cached on the
//! host, where the Vagrantfile also looks when it is run by hand.

use std::time::Duration;

use super::Host;
use crate::config::Accel;
use crate::transport::{Collect, Command};

/// A working KVM prints the kernel banner in well under a second.
const PROBE: &str = r#"
f="$ACCEL_FILE"
if [ -z "${FRESH:-}" ] && [ -s "$f" ]; then cat "$f"; exit 0; fi
result=tcg
# A box without a kernel of its own (it boots through its bootloader): the host's will do.
[ -f "$KERNEL" ] || KERNEL=$(ls /boot/vmlinuz-* 2>/dev/null | tail -1)
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ -f "$KERNEL" ]; then
  d=$(mktemp -d)
  qemu-system-x86_64 -accel kvm -m 256 -display none -no-reboot -monitor none \
    -serial "file:$d/serial" -kernel "$KERNEL" -append "console=ttyS0 panic=-1" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do
    if grep -q "Linux version" "$d/serial" 2>/dev/null; then result=kvm; break; fi
    sleep 0.2
  done
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$d"
fi
mkdir -p "$(dirname "$f")" && echo "$result" > "$f"
echo "$result"
"#;

/// The accelerator to use on `host`: the configured one, or for `auto` the cached or probed
/// answer. `fresh` probes again even when an answer is cached.
pub async fn resolve(host: &Host, configured: Accel, kernel: &str, fresh: bool) -> Accel {
    if configured != Accel::Auto {
        return configured;
    }
    let mut cmd = Command::new(PROBE, Duration::from_secs(60))
        .env(
            "ACCEL_FILE",
            host.state().accel_file().display().to_string(),
        )
        .env("KERNEL", kernel)
        .sudo(true);
    if fresh {
        cmd = cmd.env("FRESH", "1");
    }
    let mut out = Collect::default();
    match host.transport.exec(&cmd, &mut out).await {
        Ok(o) if o.success() && out.stdout_text().trim() == "kvm" => Accel::Kvm,
        _ => Accel::Tcg,
    }
}

pub fn name(a: Accel) -> &'static str {
    match a {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
        Accel::Auto => "auto",
    }
}
