#!/usr/bin/env bash
# The README's second command (and what CI runs): installs what is missing, builds, and
# runs the whole test suite twice: a release build (with the valgrind_* tests and the
# container test), then a build with AddressSanitizer + UndefinedBehaviorSanitizer
# (PSTRAIN_SANITIZE=ON; all but the container test, the source-tree and manifest checks
# and the benchmarks' smoke modes); then a third
# pass builds the libFuzzer harnesses with clang (PSTRAIN_FUZZ=ON, build-fuzz) and runs each
# briefly (ctest -L fuzz; docs/fuzzing.md). --fast skips the sanitizer and fuzz passes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test
jobs=$(nproc)

run_suite() { # build-dir, ctest args (quoted), cmake args...
  local dir=$1 sel=$2; shift 2
  cmake -S . -B "$dir" "$@" > /dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" $sel)  # a later -j in $sel wins
}

# The container test (label "container": builds the image with podman and runs a job of
# containers) runs once, in the release pass: the image builds its own binary, so a
# sanitizer build would only repeat it. So do the checks of the source tree (format,
# layering, sizes) and the benchmarks' smoke modes (bench): they run no code of ours that
# the unit and command-line tests do not run under the sanitizers too; nor does the
# Kubernetes manifests' check (k8s), which runs pstrain only for --help.
# ctest's "cpu" resource (cmake/cpu_slots.cmake): one slot per core, which every test takes
# one of but the container test; so ctest -j cores+1 runs the container test beside as many
# others as there are cores (its cold image build mostly waits on the Debian archive).
mkdir -p build
printf '{"version": {"major": 1, "minor": 0}, "local": [{"cpu": [{"id": "0", "slots": %d}]}]}\n' \
  "$jobs" > build/cpu-slots.json
echo "== test suite: release build =="
run_suite build "-j $((jobs + 1)) --resource-spec-file $PWD/build/cpu-slots.json" \
  -DCMAKE_BUILD_TYPE=Release
if [ "${1:-}" != "--fast" ]; then
  echo "== test suite: AddressSanitizer + UndefinedBehaviorSanitizer build =="
  run_suite build-asan "-LE container|format|layering|sizes|bench|k8s" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPSTRAIN_SANITIZE=ON
  echo "== fuzz harnesses: clang, libFuzzer + ASan + UBSan build, ctest -L fuzz =="
  if command -v clang > /dev/null; then
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPSTRAIN_FUZZ=ON \
      > /dev/null
    cmake --build build-fuzz -j "$jobs" --target fuzz
    (cd build-fuzz && ctest -L fuzz --output-on-failure -j "$jobs")
  else
    echo "fuzz pass SKIPPED: clang is not installed (scripts/install-deps.sh installs clang)"
  fi
fi
