#!/usr/bin/env bash
# The C sources as .clang-format formats them (ctest -L format): lists each file that
# clang-format would change, with the first lines of the change, and fails. Skipped (77)
# where clang-format is not installed (scripts/install-deps.sh installs it).
# One clang-format process checks every file (one per file cost ~1.5 min on a loaded
# 2-core machine); its messages start "FILE:LINE:COL: error:", which name the files.
set -u
SRC=$1
command -v clang-format > /dev/null || { echo "clang-format not installed: skipping"; exit 77; }
cd "$SRC" || exit 1
files=$(git ls-files '*.c' '*.h' 2> /dev/null || find . -name '*.[ch]' -not -path './build*')
if out=$(echo "$files" | xargs clang-format --dry-run -Werror 2>&1); then
  echo "ok: every C file is formatted ($(echo "$files" | wc -l) files)"
  exit 0
fi
bad=$(echo "$out" | grep -oE '^[^:]+\.[ch]:[0-9]+:[0-9]+: error' | cut -d: -f1 | sort -u)
[ -n "$bad" ] || { echo "$out" | head -6; echo "FAIL: clang-format failed"; exit 1; }
for f in $bad; do
  echo "$f: not formatted (clang-format -i $f):"
  echo "$out" | grep -A2 -m2 "^$f:" | head -6
done
echo "FAIL: $(echo "$bad" | wc -l) file(s) not formatted"
exit 1
