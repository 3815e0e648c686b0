#!/usr/bin/env bash
# The README's second command (and what CI runs): installs what is missing, builds, and
# runs the whole test suite twice: a release build, then a build with AddressSanitizer +
# UndefinedBehaviorSanitizer (PSTRAIN_SANITIZE=ON). --fast skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
jobs=$(nproc)

run_suite() { # build-dir, cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" > /dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j "$jobs")
}

echo "== test suite: release build =="
run_suite build -DCMAKE_BUILD_TYPE=Release
if [ "${1:-}" != "--fast" ]; then
  echo "== test suite: AddressSanitizer + UndefinedBehaviorSanitizer build =="
  run_suite build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPSTRAIN_SANITIZE=ON
fi
