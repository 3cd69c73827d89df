#!/bin/bash
# Build the netbox container image offline: a root file system tarball for `docker import`, made
# from a few Debian packages unpacked side by side (busybox's applets for a userland, iperf3 and
# sockperf for traffic). No registry, no Dockerfile, no daemon on this machine: debootstrap only
# fetches the packages, from the same mirror and cache as the box.
#
# Usage: build.sh OUT.tar      (run by metalab, which caches OUT.tar by this directory's hash and
#                               loads it into the VMs of the suites that name `images = ["netbox"]`)
# Env:   MIRROR (default: the host's apt mirror), DEBOOTSTRAP_CACHE (a .deb cache directory)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(realpath -m "$1")
MIRROR=${MIRROR:-$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
say() { echo "image: $*"; }

WORK=$(mktemp -d "$(dirname "$OUT")/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mapfile -t pkgs < <(sed 's/#.*//' "$HERE/packages" | xargs -n1)

say "fetch ${pkgs[*]} from $MIRROR"
cache=()
if [ -n "${DEBOOTSTRAP_CACHE:-}" ]; then mkdir -p "$DEBOOTSTRAP_CACHE"; cache=(--cache-dir="$DEBOOTSTRAP_CACHE"); fi
include=$(IFS=,; echo "${pkgs[*]}")
debootstrap --variant=minbase --download-only "${cache[@]}" --include="$include" bookworm "$WORK/fetch" "$MIRROR" \
  >"$WORK/debootstrap.log" 2>&1 || { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }

say "unpack"
ROOT=$WORK/rootfs
mkdir -p "$ROOT"
for p in "${pkgs[@]}"; do
  debs=("$WORK/fetch/var/cache/apt/archives/${p}_"*.deb)
  [ -f "${debs[0]}" ] || { echo "image: no package $p was fetched" >&2; exit 1; }
  dpkg-deb -x "${debs[0]}" "$ROOT"
done
# Debian 12 packages put some files under /lib and /bin, which the merged-/usr layout links
# to /usr; here nothing made those links, so each directory stays where the packages put it.
rm -rf "$ROOT"/usr/share/doc "$ROOT"/usr/share/man "$ROOT"/usr/share/lintian "$ROOT"/usr/share/locale \
  "$ROOT"/usr/lib/x86_64-linux-gnu/gconv
# busybox's applets as links, where no package put a real command.
for applet in $(chroot "$ROOT" /bin/busybox --list-full); do
  [ -e "$ROOT/$applet" ] || { mkdir -p "$ROOT/$(dirname "$applet")"; ln -s /bin/busybox "$ROOT/$applet"; }
done
mkdir -p "$ROOT"/tmp "$ROOT"/etc "$ROOT"/www
chmod 1777 "$ROOT/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOT/etc/group"
printf 'hosts: files dns\n' > "$ROOT/etc/nsswitch.conf"

say "check every tool runs"
chroot "$ROOT" /bin/sh -c 'ping -h 2>&1 | grep -q Usage && nc --help 2>&1 | grep -q Usage && iperf3 --version && sockperf --version' \
  >"$WORK/check.log" 2>&1 || { cat "$WORK/check.log" >&2; exit 1; }

# Sorted, with fixed owners and times: the same packages make the same bytes.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$ROOT" -cf "$OUT.partial" .
mv "$OUT.partial" "$OUT"
say "wrote $OUT ($(du -h "$OUT" | cut -f1))"
