#!/usr/bin/env bash
# fuzz/run_fuzz.sh HARNESS FUZZ_DIR SECONDS ARTIFACT_DIR [libFuzzer flags...]
# Runs one libFuzzer harness for SECONDS over a scratch copy of its seed corpus
# (FUZZ_DIR/corpus/<name>, left unchanged), with FUZZ_DIR/<name>.dict when there is one;
# further arguments go to libFuzzer (flags, or a corpus folder of your own to add to).
# A crash, leak, timeout or sanitizer report fails (libFuzzer's exit status) and leaves the
# input in ARTIFACT_DIR. Used by the ctest tests labelled "fuzz" and by hand for longer runs.
set -euo pipefail
bin=$1 fuzz_dir=$2 secs=$3 art=$4
shift 4
name=$(basename "$bin")
seeds=$fuzz_dir/corpus/$name
[ -d "$seeds" ] || { echo "run_fuzz: no seed corpus $seeds" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pstrain-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$art"
cp "$seeds"/* "$work/corpus/"
dict=()
[ -f "$fuzz_dir/$name.dict" ] && dict=(-dict="$fuzz_dir/$name.dict")
# Without dim, ds_load_libsvm densifies into as many columns as the largest index, as
# data/data.h documents: "1 1000000000:1" is a valid file asking for 4 GB (lazily zeroed
# pages, cheap without ASan). Under ASan such a block costs its shadow memory, and
# libFuzzer's malloc limit would report it as out-of-memory, so for this harness any
# allocation over 1 GB fails instead, which exercises the loader's PST_ERR_NOMEM path.
# The other loaders keep the malloc limit: for them a huge allocation from a small file is
# a finding (see docs/fuzzing.md).
extra_asan=
[ "$name" = fuzz_libsvm ] && extra_asan=:max_allocation_size_mb=1024
# The loaders write their input to temporary files; keep them in the scratch folder.
export TMPDIR=$work
# -rss_limit_mb: the loaders may take what a real file of that size needs, not gigabytes
# for a few header bytes. -timeout: one input must not take seconds.
# allocator_may_return_null: an impossible allocation is the loaders' PST_ERR_NOMEM path
# (they check every malloc), not a crash of the harness.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}$extra_asan \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$art/$name-" "${dict[@]}" "$@" "$work/corpus"
