#!/usr/bin/env bash
# The README's main job: build banger, start a dev-mode bangerd, check the
# host with `banger doctor`, build the default image and boot a VM that
# answers `ssh dev.vm`.
#
# Which VMM runs the guest:
#  - real Firecracker, when `firecracker` is installed, /dev/kvm works and an
#    image is given (BANGER_DEMO_ROOTFS, BANGER_DEMO_KERNEL);
#  - otherwise, as root with QEMU available (installed here with apt when
#    missing): banger's QEMU front `banger-fcqemu` boots the VM under
#    emulation, from the image `banger image build` makes (Debian bookworm);
#  - otherwise the Firecracker simulator stands in (no guest boots) and the
#    script says so.
# In the two booting modes the daemon and the VM keep running at the end;
# the script prints how to use and remove them.
set -euo pipefail
cd "$(dirname "$0")/.."

root=0; [ "$(id -u)" = 0 ] && root=1

fc="$(command -v firecracker || true)"
mode=sim
if [ -n "$fc" ] && [ -w /dev/kvm ] && [ -n "${BANGER_DEMO_ROOTFS:-}" ] && [ -n "${BANGER_DEMO_KERNEL:-}" ]; then
  mode=firecracker
elif [ "$root" = 1 ] && [ "${BANGER_DEMO_SIMULATE:-0}" != 1 ]; then
  mode=qemu
fi

if [ "$mode" = qemu ]; then
  # What the QEMU path needs on a fresh Debian machine.
  need=(qemu-system-x86 mmdebstrap e2fsprogs nftables iproute2 openssh-client)
  missing=()
  for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null; then
      echo "== installing ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
      echo "NOTE: cannot install ${missing[*]} (no apt-get); using the simulator"
      mode=sim
    fi
  fi
fi

echo "== building (release)"
make build
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
export PATH="$bin:$PATH"

if [ "$mode" = sim ]; then
  state="${BANGER_DEMO_STATE:-$(mktemp -d /tmp/banger-demo.XXXXXX)}"
else
  state="${BANGER_DEMO_STATE:-$HOME/.local/state/banger-demo}"
fi
mkdir -p "$state"
config="$state/config.toml"
export BANGER_STATE_DIR="$state/state" BANGER_CONFIG="$config"
step() { echo; echo "\$ banger $*"; banger "$@"; }

case "$mode" in
  firecracker) printf 'firecracker_bin = "%s"\n' "$fc" > "$config" ;;
  qemu)
    cat > "$config" <<EOF
firecracker_bin = "$bin/banger-fcqemu"
[guest]
# Emulated guests boot in 10-60 s depending on the machine's load.
readiness_timeout_secs = 600
EOF
    ;;
  sim)
    printf 'firecracker_bin = "%s"\n' "$bin/banger-fcsim" > "$config"
    # The simulator boots no guest, so nothing would ever answer readiness;
    # the guest network needs root and changes the host's network.
    printf '[guest]\nreadiness = "none"\n' >> "$config"
    if [ "${BANGER_DEMO_NETWORK:-0}" != 1 ]; then printf '[network]\nenabled = false\n' >> "$config"; fi
    ;;
esac

if banger status >/dev/null 2>&1; then
  echo "== a bangerd already serves $state/state; using it"
else
  echo "== starting bangerd (dev mode, state in $state/state, log in $state/bangerd.log)"
  nohup "$bin/bangerd" --state-dir "$state/state" --config "$config" >"$state/bangerd.log" 2>&1 &
  daemon=$!
  echo "$daemon" > "$state/bangerd.pid"
  if [ "$mode" = sim ]; then trap 'kill $daemon 2>/dev/null || true' EXIT; fi
  for _ in $(seq 100); do banger status >/dev/null 2>&1 && break; sleep 0.1; done
fi

echo "== banger doctor"
banger doctor || true

if [ "$mode" = sim ]; then
  echo
  echo "NOTE: no usable VMM here (no firecracker + KVM + image, and not root for the QEMU front);"
  echo "      the Firecracker simulator stands in: every API call is checked as Firecracker would,"
  echo "      but no guest boots. Run as root to boot a real guest under QEMU."
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
  step image register default --rootfs "$state/rootfs.ext4" --kernel "$state/vmlinux"
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
  exit 0
fi

if ! banger image show default >/dev/null 2>&1; then
  if [ "$mode" = firecracker ]; then
    step image register default --rootfs "$BANGER_DEMO_ROOTFS" --kernel "$BANGER_DEMO_KERNEL"
  else
    # banger's microVM kernel, when CI's cache has it (`banger kernel build`
    # makes it otherwise): `image build` boots a registered `microvm` kernel.
    microvm="${BANGER_TEST_MICROVM_KERNEL:-$(ls -t /var/cache/banger-ci/microvm-kernel/*/bzImage 2>/dev/null | head -n 1)}"
    if [ -n "$microvm" ] && [ -f "$microvm" ] && ! banger kernel list | grep -qw microvm; then
      step kernel register microvm "$microvm"
    fi
    echo; echo "== the default image: Debian bookworm from the distribution's packages (first time: a few minutes)"
    step image build --name default
  fi
fi
if banger vm show dev >/dev/null 2>&1; then
  echo "== VM dev exists; starting it if needed"
  banger vm start dev 2>/dev/null || true
else
  step vm create dev
fi
step ssh-config
step vm ports dev
echo
echo "\$ ssh dev.vm uname -a"
ssh -o BatchMode=yes dev.vm uname -a
echo
echo "== dev is running and answers \`ssh dev.vm\`. To talk to this daemon from another shell:"
echo "     export PATH=$bin:\$PATH BANGER_STATE_DIR=$state/state BANGER_CONFIG=$config"
echo "   Remove everything: banger vm delete dev --force; banger network reset; kill \$(cat $state/bangerd.pid)"
