#!/usr/bin/env bash
# Print a manifest (path, type, mode, size, mtime) of what banger could write
# in the invoking user's home: its config and state, the SSH directory and
# registry credentials. CI saves one before the tests and compares it with
# one taken after: the tests must leave the real home exactly as it was.
set -euo pipefail
home=${1:-$HOME}
for p in .config/banger .local/state/banger .local/share/banger .cache/banger .ssh .docker; do
  if [ -e "$home/$p" ] || [ -L "$home/$p" ]; then
    find "$home/$p" -printf '%p %y %m %s %T@\n'
  else
    echo "$home/$p absent"
  fi
done | LC_ALL=C sort
