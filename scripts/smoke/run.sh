#!/usr/bin/env bash
# `make smoke`: the system path for real, under systemd. Boots a Debian
# container with systemd as PID 1 (`systemd-nspawn --boot`, its own network
# namespace, the root filesystem from rootfs.sh as a read-only lower layer
# under a tmpfs overlay), binds this build's binaries into it, and runs
# inside.sh there: install, use, restart and remove banger as a non-root
# owner, each step PASS, SKIP (reason) or FAIL, ending with
# `N passed, N failed`. The container is powered off (and killed if it
# does not stop) on every exit. Needs root. Why a container and not a
# guest: docs/system-path.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "make smoke boots a systemd container: run it as root (sudo make smoke)" >&2
  exit 1
fi
need=(systemd-container mmdebstrap e2fsprogs)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The binaries: the debug build `make test` leaves (no second, release
# compile in CI); BANGER_SMOKE_PROFILE=release uses `make build`'s.
profile="${BANGER_SMOKE_PROFILE:-debug}"
target="${CARGO_TARGET_DIR:-$repo/target}"
echo "== building the binaries ($profile)"
t0=$SECONDS
if [ "$profile" = release ]; then
  cargo build --release --workspace --bins -q
else
  cargo build --workspace --bins -q
fi
work=$(mktemp -d /tmp/banger-smoke.XXXXXX)
bins="$work/bin"
mkdir -p "$bins"
for b in banger bangerd bangerd-root banger-guest banger-fcsim; do
  cp "$target/$profile/$b" "$bins/$b"
done

echo "== binaries ready in $((SECONDS - t0)) s"
t0=$SECONDS
rootfs=$(scripts/smoke/rootfs.sh)
echo "== rootfs ready in $((SECONDS - t0)) s"
machine="banger-smoke-$$"
nspawn_pid=""
leader=""
teardown() {
  local rc=$?
  if [ -n "$leader" ] && kill -0 "$leader" 2>/dev/null; then
    kill -s SIGRTMIN+3 "$leader" 2>/dev/null || true # poweroff
  fi
  if [ -n "$nspawn_pid" ]; then
    for _ in $(seq 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
      echo "== the container did not power off in 15 s; killing it"
      kill -KILL "$nspawn_pid" 2>/dev/null || true
      wait "$nspawn_pid" 2>/dev/null || true
    fi
  fi
  # nspawn's mount-propagation directory for this machine, when a killed
  # nspawn left it (empty) behind.
  rmdir "/run/systemd/nspawn/propagate/$machine" 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

echo "== booting $machine (systemd-nspawn --boot, private network, rootfs $rootfs)"
start=$SECONDS
systemd-nspawn --quiet --boot --machine="$machine" --directory="$rootfs" \
  --volatile=overlay --register=no --keep-unit --private-network \
  --bind-ro="$bins:/opt/banger/bin" --bind-ro="$repo/scripts/smoke:/opt/banger/smoke" \
  </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1: nspawn's child in another PID namespace (nspawn
# forks an intermediate child first, which exits).
my_pidns=$(readlink /proc/self/ns/pid)
for _ in $(seq 300); do
  for c in $(pgrep -P "$nspawn_pid" 2>/dev/null); do
    ns=$(readlink "/proc/$c/ns/pid" 2>/dev/null || true)
    if [ -n "$ns" ] && [ "$ns" != "$my_pidns" ]; then leader=$c; fi
  done
  [ -n "$leader" ] && break
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$leader" ]; then
  echo "FAIL the container did not start:"
  cat "$work/console.log"
  echo "0 passed, 1 failed"
  exit 1
fi
# Run a command in the container (all its namespaces), bounded in time.
inside() {
  timeout --kill-after=10 900 nsenter --target "$leader" --all env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
state=""
for _ in $(seq 600); do
  state=$(inside systemctl is-system-running --wait 2>/dev/null || true)
  case "$state" in running | degraded) break ;; esac
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.2
done
echo "== systemd in the container: ${state:-not up} after $((SECONDS - start)) s"
case "$state" in
  running | degraded) ;;
  *)
    echo "FAIL systemd did not come up in the container; its console:"
    tail -30 "$work/console.log"
    echo "0 passed, 1 failed"
    exit 1
    ;;
esac
set +e
inside bash /opt/banger/smoke/inside.sh
rc=$?
set -e
exit "$rc"
