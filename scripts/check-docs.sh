#!/usr/bin/env bash
# Keeps the docs' promises checkable (run by `make lint`):
# - README.md is at most 150 lines and ARCHITECTURE.md at most 250;
# - every relative link in README.md, ARCHITECTURE.md and docs/**/*.md
#   points to a file or directory that exists, and a #fragment to a
#   heading of that page.
# Usage: scripts/check-docs.sh [REPO_ROOT]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
fail=0

check_len() {
  local file=$1 max=$2 n
  n=$(wc -l <"$file")
  if [ "$n" -gt "$max" ]; then
    echo "check-docs: $file has $n lines, more than $max: move details into docs/" >&2
    fail=1
  fi
}
check_len README.md 150
check_len ARCHITECTURE.md 250

# GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'.
anchors() {
  grep -E '^#{1,6} ' "$1" | sed -E 's/^#+ +//' | LC_ALL=C tr 'A-Z' 'a-z' |
    LC_ALL=C sed -E 's/[^a-z0-9 _-]//g; s/ /-/g'
}

mapfile -t pages < <(find README.md ARCHITECTURE.md docs -name '*.md' -type f 2>/dev/null | sort)
for page in "${pages[@]}"; do
  dir=$(dirname "$page")
  # Links outside fenced code blocks: ](target) with no scheme.
  while IFS= read -r target; do
    case "$target" in
      http://* | https://* | mailto:*) continue ;;
    esac
    path=${target%%#*}
    frag=
    [ "$path" != "$target" ] && frag=${target#*#}
    if [ -z "$path" ]; then
      file=$page
    else
      file=$dir/$path
    fi
    if [ ! -e "$file" ]; then
      echo "check-docs: $page links to $target, but $file does not exist" >&2
      fail=1
      continue
    fi
    if [ -n "$frag" ] && [ -f "$file" ] && ! anchors "$file" | grep -qxF -- "$frag"; then
      echo "check-docs: $page links to $target, but $file has no heading #$frag" >&2
      fail=1
    fi
  done < <(awk '/^```/ { code = !code; next } !code' "$page" |
    grep -oE '\]\([^)[:space:]]+\)' | sed -E 's/^\]\(//; s/\)$//')
done

if [ "$fail" -ne 0 ]; then
  exit 1
fi
echo "check-docs: ${#pages[@]} pages, sizes and links fine"
