#!/usr/bin/env bash
# The C sources as .clang-format formats them (ctest -L format): lists each file that
# clang-format would change, with the first lines of the change, and fails. Skipped (77)
# where clang-format is not installed (scripts/install-deps.sh installs it).
set -u
SRC=$1
command -v clang-format > /dev/null || { echo "clang-format not installed: skipping"; exit 77; }
cd "$SRC" || exit 1
bad=0
while IFS= read -r f; do
  if ! out=$(clang-format --dry-run -Werror "$f" 2>&1); then
    echo "$f: not formatted (clang-format -i $f):"
    echo "$out" | head -6
    bad=$((bad + 1))
  fi
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
[ $bad -eq 0 ] || { echo "FAIL: $bad file(s) not formatted"; exit 1; }
echo "ok: every C file is formatted"
