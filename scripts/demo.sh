#!/usr/bin/env bash
# The README's main job: build banger, start a dev-mode bangerd in a fresh
# state directory, check the host with `banger doctor`, and drive a VM through
# its whole lifecycle. With a working firecracker + KVM and an image given in
# BANGER_DEMO_ROOTFS / BANGER_DEMO_KERNEL the VM is real; otherwise (as on
# hosts without usable KVM) the Firecracker simulator stands in and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
state="${BANGER_DEMO_STATE:-$(mktemp -d /tmp/banger-demo.XXXXXX)}"
mkdir -p "$state"
config="$state/config.toml"
banger() { "$bin/banger" --state-dir "$state/state" --config "$config" "$@"; }
step() { echo; echo "\$ banger $*"; banger "$@"; }

fc="$(command -v firecracker || true)"
simulated=0
if [ -z "$fc" ] || [ ! -w /dev/kvm ] || [ -z "${BANGER_DEMO_ROOTFS:-}" ] || [ -z "${BANGER_DEMO_KERNEL:-}" ]; then
  simulated=1
  fc="$bin/banger-fcsim"
fi
printf 'firecracker_bin = "%s"\n' "$fc" > "$config"
# The guest network (bridge, TAPs, NAT, DNS) needs root and changes the host's
# network; the demo leaves it off unless BANGER_DEMO_NETWORK=1.
if [ "${BANGER_DEMO_NETWORK:-0}" != 1 ]; then
  printf '[network]\nenabled = false\n' >> "$config"
fi
# The simulator boots no guest, so nothing would ever answer readiness.
if [ "$simulated" = 1 ]; then printf '[guest]\nreadiness = "none"\n' >> "$config"; fi

echo "== starting bangerd (dev mode, state in $state/state)"
"$bin/bangerd" --state-dir "$state/state" --config "$config" >"$state/bangerd.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do banger status >/dev/null 2>&1 && break; sleep 0.1; done

echo "== banger doctor"
banger doctor || true

if [ "$simulated" = 1 ]; then
  echo
  echo "NOTE: no usable firecracker + KVM + image here (firecracker: ${fc##*/}); the Firecracker"
  echo "      simulator stands in: every API call is checked as Firecracker would, but no guest boots."
  mkdir -p "$state/tree/etc" && echo demo > "$state/tree/etc/hostname"
  mkfs.ext4 -q -F -d "$state/tree" "$state/rootfs.ext4" 64M
  python3 - "$state/vmlinux" <<'PY'
import struct, sys
h = bytearray(4096)
h[0:4] = b"\x7fELF"; h[4] = 2; h[5] = 1; h[6] = 1
struct.pack_into("<HHIQQ", h, 16, 2, 62, 1, 0x1000000, 64)  # type, machine, version, entry, phoff
struct.pack_into("<HH", h, 54, 56, 1)  # phentsize, phnum
open(sys.argv[1], "wb").write(h)
PY
  rootfs="$state/rootfs.ext4"; kernel="$state/vmlinux"
else
  rootfs="$BANGER_DEMO_ROOTFS"; kernel="$BANGER_DEMO_KERNEL"
fi

step image register default --rootfs "$rootfs" --kernel "$kernel"
step vm create dev
step vm list
step vm show dev
step vm stats dev
step vm logs dev --tail 5
step vm stop dev
step vm set dev --vcpus 1 --memory 512M
step vm start dev
step vm delete dev --force
step vm list
echo "== done; daemon log: $state/bangerd.log"
