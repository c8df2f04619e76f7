#!/usr/bin/env bash
# Builds (once) the Debian root filesystem that `make smoke` boots with
# `systemd-nspawn --boot`: systemd as PID 1 plus what banger's system path
# uses at run time. Cached under $BANGER_SMOKE_CACHE (default
# /var/cache/banger-ci/smoke-rootfs/<key>), keyed by a hash of this script,
# so CI rebuilds it only when the package list or the steps change.
# Prints the rootfs directory on stdout (progress on stderr).
set -euo pipefail

suite=bookworm
packages=(
  systemd systemd-sysv dbus               # PID 1, journald, systemctl
  sudo passwd                             # the owner user and root commands
  e2fsprogs util-linux mount              # mkfs.ext4, debugfs, resize2fs, losetup
  nftables iproute2 kmod                  # the guest network (NAT, bridge, TAP)
  openssh-client git                      # ssh-keygen, ssh config, workspace
  docker-registry curl ca-certificates    # the loopback registry and a push
  procps                                  # ps/pgrep for the leftover checks
)

cache_root="${BANGER_SMOKE_CACHE:-/var/cache/banger-ci/smoke-rootfs}"
key=$( { cat "$0"; echo "$suite ${packages[*]}"; } | sha256sum | cut -c1-16)
dir="$cache_root/$key"
if [ -f "$dir/.banger-smoke-complete" ]; then
  echo "$dir"
  exit 0
fi

for tool in mmdebstrap systemd-nspawn; do
  command -v "$tool" >/dev/null || { echo "rootfs.sh: $tool is not installed (apt-get install mmdebstrap systemd-container)" >&2; exit 1; }
done

mkdir -p "$cache_root"
# Old keys are other versions of this script: their rootfs is stale.
find "$cache_root" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} + 2>/dev/null || true
partial="$dir.partial"
rm -rf "$partial"
echo "== building the smoke rootfs ($suite: ${packages[*]}) into $dir" >&2
start=$SECONDS
include=$(IFS=,; echo "${packages[*]}")
mmdebstrap --variant=minbase --include="$include" \
  --customize-hook='echo banger-smoke > "$1/etc/hostname"; printf "127.0.0.1 localhost\n127.0.1.1 banger-smoke\n" > "$1/etc/hosts"' \
  --customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
  --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service getty@tty1.service console-getty.service systemd-logind.service docker-registry.service >/dev/null' \
  --customize-hook='chroot "$1" passwd -d root >/dev/null' \
  "$suite" "$partial" http://deb.debian.org/debian >&2
touch "$partial/.banger-smoke-complete"
mv "$partial" "$dir"
echo "== smoke rootfs built in $((SECONDS - start)) s" >&2
echo "$dir"
