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
# the script prints how to use them, and `make demo-clean`
# (`scripts/demo.sh clean`) removes everything the demo created: its VMs
# and images, the daemon, its state directory, and — only where the demo
# made them — its daemon's file in `~/.ssh/config.d/`, the `Include` line in
# `~/.ssh/config` and banger's SSH key. The simulator run cleans up by
# itself. What the demo made is recorded in `<state>/demo-created`.
set -euo pipefail
cd "$(dirname "$0")/.."

INCLUDE_LINE="Include ~/.ssh/config.d/banger*"
xdg_config="${XDG_CONFIG_HOME:-$HOME/.config}"

# Paths outside the state directory the demo (banger ssh-config, the
# daemon's first key, ssh) may create, parents first.
home_paths() {
  printf '%s\n' "$HOME/.ssh" "$HOME/.ssh/config.d" "$HOME/.ssh/config.d/banger" \
    "$HOME/.ssh/config" "$HOME/.ssh/known_hosts" \
    "$xdg_config" "$xdg_config/banger" "$xdg_config/banger/ssh"
}

# Record, before anything is made, which of those paths (and of the state
# directory and its parents) do not exist yet, and whether ~/.ssh/config
# lacks the Include line. Kept from the first run when the state is reused.
record_created() {
  local state=$1 made_state=$2 manifest="$1/demo-created" p d
  [ -e "$manifest" ] && return 0
  local new=()
  while read -r p; do [ -e "$p" ] || new+=("$p"); done < <(home_paths)
  local chain=()
  if [ "$made_state" = 1 ]; then
    chain=("$state"); d=$(dirname "$state")
    while [ ! -e "$d" ]; do chain=("$d" "${chain[@]}"); d=$(dirname "$d"); done
  fi
  mkdir -p "$state"
  {
    for p in "${new[@]}" "${chain[@]}"; do echo "new $p"; done
    # ssh-config files of other daemons (banger, banger-<hash>) that are not the demo's.
    for p in "$HOME"/.ssh/config.d/banger*; do [ -e "$p" ] && echo "had $p"; done
    grep -qxF "$INCLUDE_LINE" "$HOME/.ssh/config" 2>/dev/null || echo "include-line"
  } > "$manifest"
}

human() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.1f MB", b / 1048576; else if (b >= 1024) printf "%.0f KB", b / 1024; else printf "%d bytes", b }'; }

# Remove everything the demo made (see the header).
cleanup() {
  local state=$1 manifest="$1/demo-created" freed=0 p size
  echo; echo "== removing everything the demo created"
  if [ ! -f "$manifest" ]; then
    echo "no $manifest: nothing recorded as the demo's; remove $state yourself if it is" >&2
    return 1
  fi
  if ! banger status >/dev/null 2>&1 && [ -f "$state/config.toml" ] && [ -d "$state/state" ]; then
    # Started again so that it deletes its VMs and resets the host network.
    nohup bangerd --state-dir "$state/state" --config "$state/config.toml" >>"$state/bangerd.log" 2>&1 &
    echo $! > "$state/bangerd.pid"
    for _ in $(seq 100); do banger status >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  if banger status >/dev/null 2>&1; then
    local name
    for name in $(banger vm list --json | python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.load(sys.stdin)))'); do
      banger vm delete "$name" --force >/dev/null && echo "removed VM $name"
    done
    for name in $(banger image list --json | python3 -c 'import json,sys; print(" ".join(i["name"] for i in json.load(sys.stdin)))'); do
      banger image delete "$name" >/dev/null && echo "removed image $name"
    done
    banger network reset >/dev/null 2>&1 && echo "reset the host network (bridge, TAPs, NAT table)" || true
  else
    echo "note: no bangerd answers for $state/state (see $state/bangerd.log): no VM deleted, host network left as is" >&2
  fi
  if [ -f "$state/bangerd.pid" ]; then
    local pid; pid=$(cat "$state/bangerd.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "stopped bangerd (pid $pid)"
    fi
  fi
  if grep -qx "include-line" "$manifest" && grep -qxF "$INCLUDE_LINE" "$HOME/.ssh/config" 2>/dev/null; then
    # `banger ssh-config` put it at the top, followed by one blank line.
    python3 - "$HOME/.ssh/config" "$INCLUDE_LINE" <<'PY'
import sys
path, line = sys.argv[1], sys.argv[2]
lines = open(path).read().split("\n")
i = lines.index(line)
del lines[i : i + 2 if i + 1 < len(lines) and lines[i + 1] == "" else i + 1]
open(path, "w").write("\n".join(lines))
PY
    echo "removed \`$INCLUDE_LINE\` from ~/.ssh/config"
  fi
  # The demo daemon's ssh-config file (`banger-<hash of its socket>`).
  for p in "$HOME"/.ssh/config.d/banger*; do
    [ -e "$p" ] || continue
    grep -qxF "had $p" "$manifest" && continue
    rm -f "$p" && echo "removed $p"
  done
  # Deepest first: the manifest lists parents first.
  while read -r p; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    if [ "$p" = "$HOME/.ssh/config" ] && [ -n "$(tr -d '[:space:]' < "$p")" ]; then
      echo "kept $p (it has more than the demo's Include line)"; continue
    fi
    size=$(du -s -B1 "$p" | cut -f1)  # disk usage, not apparent size
    if [ -d "$p" ] && [ "$p" != "$state" ] && [ "$p" != "$xdg_config/banger/ssh" ]; then
      # A parent the demo created: removed only once empty.
      rmdir "$p" 2>/dev/null || { echo "kept $p (not empty)"; continue; }
    else
      rm -rf "$p"
    fi
    freed=$((freed + size))
    echo "removed $p ($(human "$size"))"
  done < <(sed -n 's/^new //p' "$manifest" | tac)
  [ -e "$state" ] && rm -f "$manifest"
  echo "== freed $(human "$freed")"
}

demo_state_default() { echo "${BANGER_DEMO_STATE:-$HOME/.local/state/banger-demo}"; }

if [ "${1:-}" = clean ]; then
  state=$(demo_state_default)
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
  export PATH="$bin:$PATH" BANGER_STATE_DIR="$state/state" BANGER_CONFIG="$state/config.toml"
  cleanup "$state"
  exit $?
fi

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

made_state=1
if [ "$mode" = sim ] && [ -z "${BANGER_DEMO_STATE:-}" ]; then
  state=$(mktemp -d /tmp/banger-demo.XXXXXX)
else
  state=$(demo_state_default)
  # The default is the demo's own directory; a given one is the demo's
  # only when it does not exist yet.
  [ -n "${BANGER_DEMO_STATE:-}" ] && [ -e "$state" ] && made_state=0
fi
record_created "$state" "$made_state"
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
  step ssh-config
  step vm delete dev --force
  step vm list
  cleanup "$state"
  echo "== done"
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
echo "   Remove everything the demo created (VMs, images, daemon, $state, and the ssh-config"
echo "   include, its Include line and banger's key where the demo made them): make demo-clean"
