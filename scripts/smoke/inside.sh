#!/usr/bin/env bash
# The smoke run's steps, inside the systemd container run.sh booted (as
# root there; the owner's commands run as the user `smoke` through sudo).
# Binaries in /opt/banger/bin (read-only); the VMM is banger's Firecracker
# simulator. Each step prints PASS, SKIP (reason) or FAIL; the run ends
# with `N passed, N failed` and exits non-zero on any FAIL.
set -uo pipefail

bin=/opt/banger/bin
owner=smoke
fx=/srv/smoke
passed=0 failed=0 skipped=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
skip() { echo "SKIP $*"; skipped=$((skipped + 1)); }
# check NAME CMD...: PASS when CMD succeeds, else FAIL with its output.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name"; fi
  [ -n "$out" ] && sed 's/^/    /' <<<"$out"
  return 0
}
as_owner() { sudo -u "$owner" -H -- "$@"; }
banger() { as_owner /usr/local/bin/banger "$@"; }
show() { echo "\$ $*"; }

echo "== smoke: the system path under systemd $(systemctl --version | head -1 | cut -d' ' -f2) (PID 1: $(cat /proc/1/comm))"
[ "$(cat /proc/1/comm)" = systemd ] && pass "systemd is PID 1" || fail "systemd is PID 1"

# Fixtures (before the "before" snapshot): the owner, the daemon's config
# (the simulator as Firecracker; readiness none: no guest boots), a
# registry on this host's loopback, an image's files.
useradd --create-home --shell /bin/bash "$owner"
uid=$(id -u "$owner")
mkdir -p /etc/banger "$fx/tree/etc" "$fx/tree/root" "$fx/registry"
cat >/etc/banger/config.toml <<CFG
# make smoke: the Firecracker simulator stands in for firecracker.
firecracker_bin = "$bin/banger-fcsim"
privileged_helper = "/run/banger-root/root.sock"
[guest]
readiness = "none"
CFG
echo smoke >"$fx/tree/etc/hostname"
echo 'root:x:0:0:root:/root:/bin/sh' >"$fx/tree/etc/passwd"
echo 'root:x:0:' >"$fx/tree/etc/group"
mkfs.ext4 -q -F -d "$fx/tree" "$fx/rootfs.ext4" 64M >/dev/null 2>&1
# A minimal ELF header: the simulator checks the kernel is an x86-64 ELF.
{
  printf '\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00'
  printf '\x02\x00\x3e\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00'
  printf '\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
  printf '\x00\x00\x00\x00\x40\x00\x38\x00\x01\x00\x00\x00\x00\x00\x00\x00'
  head -c 4032 /dev/zero
} >"$fx/vmlinux"
chmod -R a+rX "$fx"
cat >"$fx/registry.yml" <<REG
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $fx/registry } }
http: { addr: 127.0.0.1:5000 }
REG
docker-registry serve "$fx/registry.yml" >"$fx/registry.log" 2>&1 &
registry_pid=$!
reg=http://127.0.0.1:5000
for _ in $(seq 100); do curl -fsS "$reg/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

snapshot() {
  find /etc /usr/local /var/lib /run -xdev \
    -path /run/systemd -prune -o -path /run/log -prune -o -path /run/sudo -prune -o \
    -path /var/lib/systemd -prune -o -path /var/lib/sudo -prune -o -path /run/user -prune -o \
    -printf '%p %M %u %g\n' | sort
  systemctl list-unit-files --no-legend --no-pager | awk '{print "unit-file " $1 " " $2}'
  systemctl list-units --all --no-legend --no-pager --plain | awk '{print "unit " $1}' | sort
}
leftovers() {
  echo "links: $(ip -o link show | awk -F': ' '{print $2}' | grep -c '^bg' || true)"
  echo "nft: $(nft list tables 2>/dev/null | grep -c banger || true)"
  echo "loops: $(losetup -a 2>/dev/null | wc -l)"
  echo "processes: $(pgrep -c -f '/(bangerd|bangerd-root|banger-fcsim)( |$)' || true)"
}
systemctl daemon-reload # as before the "after" snapshot
snapshot >"$fx/before.txt"
leftovers >"$fx/leftovers-before.txt"

echo
show "banger system install --owner $owner --from $bin"
check "system install" /opt/banger/bin/banger system install --owner "$owner" --from "$bin"
check "install placed the guest agent" test -x /usr/local/bin/banger-guest
for u in bangerd-root bangerd; do
  st=$(systemctl show -p Type,ActiveState,SubState,LimitNOFILE,StatusText "$u.service")
  if grep -qx 'Type=notify' <<<"$st" && grep -qx 'ActiveState=active' <<<"$st" &&
    grep -qx 'SubState=running' <<<"$st" && grep -qx 'LimitNOFILE=65536' <<<"$st"; then
    pass "$u.service active (Type=notify, READY=1 received, LimitNOFILE=65536)"
  else
    fail "$u.service active (Type=notify, LimitNOFILE=65536)"
    journalctl -u "$u" --no-pager -o cat -n 15 | sed 's/^/    journal: /'
  fi
  sed 's/^/    /' <<<"$st"
done
show "banger system status"
check "system status (readiness from systemd)" banger system status
show "banger doctor --system"
out=$(banger doctor --system 2>&1)
rc=$?
sed 's/^/    /' <<<"$out"
if [ "$rc" = 0 ] && ! grep -q '^FAIL' <<<"$out"; then pass "doctor --system: no failure"; else fail "doctor --system: no failure (exit $rc)"; fi

echo
show "banger image register smoke --rootfs $fx/rootfs.ext4 --kernel $fx/vmlinux"
check "image register" banger image register smoke --rootfs "$fx/rootfs.ext4" --kernel "$fx/vmlinux"
img_dir=$(banger image show smoke --json 2>/dev/null | sed -n 's/.*"rootfs_path": *"\([^"]*\)".*/\1/p' | head -1)
if [ -n "$img_dir" ] && debugfs -R 'stat /usr/local/lib/banger/banger-guest' "$img_dir" 2>/dev/null | grep -q 'Type: regular'; then
  pass "the registered image carries the guest agent"
else
  fail "the registered image carries the guest agent ($img_dir)"
fi
check "banger's SSH key in the state directory, nothing in the owner's home" \
  bash -c "test -s /var/lib/banger/ssh/id_ed25519 && test ! -e ~$owner/.config/banger"

# Push a one-layer OCI image to the loopback registry (registry API v2).
push_blob() {
  local f=$1 d loc sep
  d=sha256:$(sha256sum "$f" | cut -d' ' -f1)
  loc=$(curl -fsS -X POST -D - -o /dev/null "$reg/v2/smoke/app/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
  case "$loc" in http*) ;; *) loc="$reg$loc" ;; esac
  sep='?'; case "$loc" in *\?*) sep='&' ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$f" "$loc${sep}digest=$d" >/dev/null && echo "$d"
}
tar -C "$fx/tree" --owner=0 --group=0 -cf "$fx/layer.tar" .
gzip -nkf "$fx/layer.tar"
diff_id=sha256:$(sha256sum "$fx/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]},"config":{}}' "$diff_id" >"$fx/config.json"
layer=$(push_blob "$fx/layer.tar.gz") && config=$(push_blob "$fx/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' \
  "$config" "$(stat -c %s "$fx/config.json")" "$layer" "$(stat -c %s "$fx/layer.tar.gz")" >"$fx/manifest.json"
check "push an image to the registry on 127.0.0.1:5000" curl -fsS -X PUT \
  -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$fx/manifest.json" "$reg/v2/smoke/app/manifests/1"
show "banger image pull 127.0.0.1:5000/smoke/app:1 --name pulled --kernel $fx/vmlinux"
check "image pull from the loopback registry" banger image pull 127.0.0.1:5000/smoke/app:1 --name pulled --kernel "$fx/vmlinux"
kill "$registry_pid" 2>/dev/null
wait "$registry_pid" 2>/dev/null

echo
vm_state() { banger vm show "$1" --json 2>/dev/null | sed -n 's/^  "state": *"\([a-z]*\)".*/\1/p'; }
vmm_pid() { pgrep -u "$owner" -f "banger-fcsim .*--id" | head -1; }
expect_state() { # STEP VM STATE
  local s
  s=$(vm_state "$2")
  if [ "$s" = "$3" ]; then pass "$1: $2 is $3"; else fail "$1: $2 is ${s:-unknown}, not $3"; fi
}
show "banger vm create smoke1 --image smoke"
check "vm create (through bangerd-root)" banger vm create smoke1 --image smoke
expect_state "vm create" smoke1 running
pid=$(vmm_pid)
if [ -n "$pid" ] && [ "$(stat -c %u /proc/"$pid")" = "$uid" ]; then
  pass "the VMM (pid $pid) runs as $owner"
else
  fail "the VMM runs as $owner (pid ${pid:-none})"
fi
links=$(ip -o link show)
if grep -q ': bg' <<<"$links"; then pass "banger's bridge and TAP exist"; else fail "banger's bridge and TAP exist"; fi
check "vm stop" banger vm stop smoke1
expect_state "vm stop" smoke1 stopped
check "vm start" banger vm start smoke1
expect_state "vm start" smoke1 running
check "vm restart" banger vm restart smoke1
expect_state "vm restart" smoke1 running
pid=$(vmm_pid)
show "banger system restart"
check "system restart" /usr/local/bin/banger system restart
expect_state "system restart" smoke1 running
if [ -n "$pid" ] && [ "$(vmm_pid)" = "$pid" ]; then
  pass "system restart: the VMM (pid $pid) kept running and was adopted"
else
  fail "system restart: the VMM kept running (before ${pid:-none}, after $(vmm_pid))"
fi

echo
for u in bangerd bangerd-root; do
  show "systemd-analyze security $u.service"
  out=$(systemd-analyze security --no-pager "$u.service" 2>&1)
  grep -E '^[✗✓]|Overall' <<<"$out" | grep -vE '^✓' | sed 's/^/    /'
  score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
  limit=3.0; [ "$u" = bangerd-root ] && limit=5.0
  if [ -n "$score" ] && awk -v s="$score" -v l="$limit" 'BEGIN { exit !(s < l) }'; then
    pass "systemd-analyze security $u.service: $score (aim < $limit)"
  else
    fail "systemd-analyze security $u.service: ${score:-no score} (aim < $limit)"
  fi
done

echo
check "vm delete" banger vm delete smoke1 --force
echo
show "journalctl -u bangerd-root"
log=$(journalctl -u bangerd-root --no-pager -o cat)
grep -E 'performing' <<<"$log" | sed -E 's/ request=.*//' | awk '!seen[$NF]++' | sed 's/^/    /'
missing=()
for op in spawn_vmm signal_vmm create_tap ensure_bridge apply_nat; do
  grep -q "caller_uid=$uid .*op=\"\?$op\"\?.*performing\|performing.*caller_uid=$uid.*op=\"\?$op" <<<"$log" || missing+=("$op")
done
if [ "${#missing[@]}" = 0 ]; then
  pass "journalctl -u bangerd-root shows each privileged request with its caller (uid $uid)"
else
  fail "journalctl -u bangerd-root: no 'performing' line with caller_uid=$uid for ${missing[*]}"
fi

show "banger system uninstall --purge"
check "system uninstall --purge" /usr/local/bin/banger system uninstall --purge
systemctl daemon-reload
snapshot >"$fx/after.txt"
leftovers >"$fx/leftovers-after.txt"
if d=$(diff "$fx/before.txt" "$fx/after.txt"); then
  pass "files under /etc /usr/local /var/lib /run and the unit list: as before the install"
else
  fail "files and units differ from before the install:"
  sed 's/^/    /' <<<"$d"
fi
if d=$(diff "$fx/leftovers-before.txt" "$fx/leftovers-after.txt"); then
  pass "no TAP, nft table, loop device or process left ($(tr '\n' ' ' <"$fx/leftovers-after.txt"))"
else
  fail "leftovers:"
  sed 's/^/    /' <<<"$d"
fi

echo
echo "== the steps took $SECONDS s"
echo "$passed passed, $failed failed${skipped:+, $skipped skipped}" | sed 's/, 0 skipped$//'
[ "$failed" = 0 ]
