#!/bin/bash
# Build the metalab/debian12 vagrant-libvirt box offline, from Debian packages only:
#   debootstrap -> guest configuration in the rootfs -> mkfs.ext4 -d -> qcow2 -> .box
# Direct kernel boot: the kernel and initrd travel inside the box; the image has no bootloader.
# No loop mounts and no /proc inside the chroot are needed.
#
# Usage: build.sh OUT.box      (run by `metalab box build`, which caches OUT.box by this
#                               directory's hash; run it by hand only to debug the recipe)
# Env:   MIRROR (default: the host's apt mirror), DEBOOTSTRAP_CACHE (a .deb cache directory)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(realpath -m "$1")
SIZE_GB=4
MIRROR=${MIRROR:-$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# Vagrant's well-known insecure key, from the vagrant package (the first, if several versions).
pubkeys=(/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub)
VAGRANT_PUBKEY=${pubkeys[0]}
[ -f "$VAGRANT_PUBKEY" ] || { echo "box: no vagrant.pub: is the vagrant package installed?" >&2; exit 1; }

# A build killed mid-way (metalab stopped by a signal) leaves its work directory behind.
rm -rf "$(dirname "$OUT")"/.build.*
WORK=$(mktemp -d "$(dirname "$OUT")/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/rootfs
say() { echo "box: $*"; }

say "debootstrap bookworm from $MIRROR"
pkgs=$(sed 's/#.*//' "$HERE/packages" | xargs | tr ' ' ,)
cache=()
if [ -n "${DEBOOTSTRAP_CACHE:-}" ]; then mkdir -p "$DEBOOTSTRAP_CACHE"; cache=(--cache-dir="$DEBOOTSTRAP_CACHE"); fi
debootstrap --variant=minbase "${cache[@]}" --include="$pkgs" bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }

say "configure the guest"
in_root() { chroot "$ROOT" "$@"; }
echo metalab > "$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 metalab\n::1 localhost ip6-localhost ip6-loopback\n' > "$ROOT/etc/hosts"
# No /etc/fstab: the kernel mounts the root read-write (`rw` on its command line), so there is
# nothing to remount at boot (systemd-remount-fs: ~0.8 s under TCG), and `vagrant up` finds no
# fstab to clean up over SSH (a `test` and a `sudo sed`: ~0.7 s).
rm -f "$ROOT/etc/fstab"
in_root id vagrant >/dev/null 2>&1 || in_root useradd -m -s /bin/bash -G sudo vagrant
echo 'vagrant:vagrant' | in_root chpasswd
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$ROOT/etc/sudoers.d/vagrant"
chmod 0440 "$ROOT/etc/sudoers.d/vagrant"
install -d -m 700 "$ROOT/home/vagrant/.ssh"
install -m 600 "$VAGRANT_PUBKEY" "$ROOT/home/vagrant/.ssh/authorized_keys"
in_root chown -R vagrant:vagrant /home/vagrant/.ssh
# No DNS lookups or GSSAPI on login: each costs seconds under TCG.
printf 'UseDNS no\nGSSAPIAuthentication no\n' > "$ROOT/etc/ssh/sshd_config.d/metalab.conf"
# DHCP on every NIC through systemd-networkd, which Vagrant's debian guest plugin knows.
# ClientIdentifier=mac: clones of one image must not share a DHCP client id, or dnsmasq hands
# every VM the same lease and the second VM never gets an address. UseHostname=no: the hostname
# comes from the kernel command line.
mkdir -p "$ROOT/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n[DHCPv4]\nClientIdentifier=mac\nUseHostname=no\n' \
  > "$ROOT/etc/systemd/network/99-dhcp.network"
# Each VM generates its own machine-id at first boot.
: > "$ROOT/etc/machine-id"; rm -f "$ROOT/var/lib/dbus/machine-id"
# Fresh host keys at first boot, not one set baked into every VM: ed25519 only, since every
# key type costs seconds to generate under TCG (RSA over ten) and delays SSH by as much. Vagrant's
# net-ssh (with Debian's ruby-ed25519), OpenSSH and russh all take ed25519 host keys.
rm -f "$ROOT"/etc/ssh/ssh_host_*
# Keys only: metalab logs in with a key, and a password would let in anyone on the network.
printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n' \
  >> "$ROOT/etc/ssh/sshd_config.d/metalab.conf"
# At every boot, before sshd: the host key (made at the first), the run's login key when the
# kernel command line carries one (metalab.ssh_key=<ed25519 blob>: then it is the only key let
# in, and the password is locked), and the host key announced on the serial console, which only
# this VM writes and metalab reads to pin the key before it connects (src/vm/access.rs). Without
# a key on the command line (`vagrant up` by hand), Vagrant's insecure key is let in as usual.
cat > "$ROOT/usr/local/sbin/metalab-ssh-setup" <<'SCRIPT'
#!/bin/sh
set -eu
[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
for word in $(cat /proc/cmdline); do
  case "$word" in
    metalab.ssh_key=?*)
      printf 'ssh-ed25519 %s metalab-run\n' "${word#metalab.ssh_key=}" > /home/vagrant/.ssh/authorized_keys
      passwd -l vagrant >/dev/null
      ;;
  esac
done
printf 'metalab-host-key: %s\n' "$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)" > /dev/ttyS0
SCRIPT
chmod 0755 "$ROOT/usr/local/sbin/metalab-ssh-setup"
cat > "$ROOT/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=SSH host key, the run's login key, and the host key on the console
Before=ssh.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/metalab-ssh-setup
[Install]
WantedBy=multi-user.target
UNIT
in_root systemctl enable ssh-hostkeys.service systemd-networkd.service ssh.service >/dev/null 2>&1
# Units a throw-away lab VM does not need; under TCG each costs a second or more of boot.
in_root systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer systemd-timesyncd.service \
  systemd-random-seed.service systemd-pstore.service kmod-static-nodes.service \
  systemd-update-utmp.service systemd-update-utmp-runlevel.service systemd-journal-flush.service \
  dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-kernel-config.mount sys-fs-fuse-connections.mount \
  modprobe@drm.service modprobe@efi_pstore.service modprobe@fuse.service modprobe@loop.service \
  modprobe@dm_mod.service modprobe@configfs.service \
  systemd-logind.service dbus.service dbus.socket getty@tty1.service \
  systemd-sysusers.service systemd-network-generator.service systemd-modules-load.service \
  >/dev/null 2>&1 || true
# The container runtime starts only where a suite needs it (metalab loads a suite's images with
# `systemctl start docker`): dockerd and containerd would add seconds to every boot under TCG.
in_root systemctl disable docker.service docker.socket containerd.service >/dev/null
# (sysusers: the packages created their users when they were installed; network-generator: no
# ip= on the kernel command line; modules-load: no module is listed to load at boot.)
# sshd checks its configuration before it starts (`sshd -t`): a second sshd start on the way to
# SSH; the box's configuration is fixed.
mkdir -p "$ROOT/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=\n' > "$ROOT/etc/systemd/system/ssh.service.d/metalab.conf"
# Drivers for devices a lab VM has but never uses (the PC's IDE controller, nested KVM, the
# memory balloon, input devices nothing reads): udev would load each at boot, and every one takes
# CPU from the way to SSH when the one virtual CPU is emulated.
printf 'blacklist %s\n' kvm kvm_amd kvm_intel ata_piix ata_generic pata_acpi serio_raw evdev button \
  qemu_fw_cfg virtio_balloon powernow_k8 pcspkr floppy > "$ROOT/etc/modprobe.d/metalab-unused.conf"
# (Without logind and D-Bus, an SSH login starts no `systemd --user` either; pam_systemd is
# optional in Debian's PAM stack, so logins still work.)
# The journal lives in memory: nothing to flush to disk at boot, nothing kept after the VM.
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' > "$ROOT/etc/systemd/journald.conf.d/metalab.conf"
# The hostname comes from the kernel command line (systemd.hostname=); myhostname resolves it.
sed -i 's/^hosts:.*/hosts:          files myhostname dns/' "$ROOT/etc/nsswitch.conf"
echo 'nameserver 192.168.121.1' > "$ROOT/etc/resolv.conf"
# A small initrd with just the virtio drivers that find /dev/vda: faster to load under TCG.
printf 'virtio_pci\nvirtio_blk\nvirtio_net\n' >> "$ROOT/etc/initramfs-tools/modules"
sed -i 's/^MODULES=.*/MODULES=list/' "$ROOT/etc/initramfs-tools/initramfs.conf"
in_root update-initramfs -u -k all >/dev/null 2>&1
in_root apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* \
  "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/log/*.log

say "make the disk image"
BOX=$WORK/box
mkdir "$BOX"
cp -L "$ROOT/vmlinuz" "$BOX/vmlinuz"
cp -L "$ROOT/initrd.img" "$BOX/initrd.img"
chmod 644 "$BOX/vmlinuz" "$BOX/initrd.img"
mkfs.ext4 -q -F -L root -E root_owner=0:0 -d "$ROOT" "$WORK/disk.raw" "${SIZE_GB}G" >/dev/null
qemu-img convert -O qcow2 "$WORK/disk.raw" "$BOX/box.img"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%s}\n' "$SIZE_GB" > "$BOX/metadata.json"
cp "$HERE/Vagrantfile.box" "$BOX/Vagrantfile"
tar -C "$BOX" -cf "$OUT.partial" metadata.json Vagrantfile box.img vmlinuz initrd.img
mv "$OUT.partial" "$OUT"
say "wrote $OUT ($(du -h "$OUT" | cut -f1))"
