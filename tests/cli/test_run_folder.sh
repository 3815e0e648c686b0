#!/usr/bin/env bash
# What a new user's run folder and flags do (issue 16): a run owns its folder whichever
# command wrote it before (`pstrain train` after `pstrain local` sets the shards aside, so
# `pstrain consolidate` cannot assemble the older run's by mistake, and the other way
# round); --print-config prints absolute paths, so the printed job loads from anywhere;
# consolidate writes its file with --output (as predict), --out still works, and unknown
# flags are errors; plots say what they show (the test accuracy in accuracy.png, worker 0's
# throughput in a distributed run's throughput.png).
source "$(dirname "$0")/lib.sh"
MOONS=("$SRC/examples/binary-moons.yaml" --epochs 2)
DIST=(--servers 2 --workers 2 --consistency bsp)

# 2. local, then train, in one folder: the shards go to previous-run/, and consolidate
# says where they are instead of assembling them.
expect_exit 0 "$PSTRAIN" local "${MOONS[@]}" "${DIST[@]}" --output run
[ -f run/checkpoints/server-0-clock-20.safetensors ] || fail "no shard checkpoint"
expect_exit 0 "$PSTRAIN" train "${MOONS[@]}" --output run
expect_in err.txt "train warn: run/checkpoints holds 2 checkpoint\(s\) of another run \(a distributed run's shards\): moved to run/checkpoints/previous-run"
ls run/checkpoints | grep -q '^server-' && fail "shards of the earlier run left in place"
[ -f run/checkpoints/previous-run/server-1-clock-20.safetensors ] || fail "shards not set aside"
expect_exit 4 "$PSTRAIN" consolidate "${MOONS[@]}" "${DIST[@]}" --resume run --output m.safetensors
expect_in err.txt "no shard checkpoint of the run there; run/checkpoints/previous-run holds those of an earlier run"
[ -f m.safetensors ] && fail "consolidate wrote a model of the earlier run"
# They are still that run's: consolidate them from where they went.
expect_exit 0 "$PSTRAIN" consolidate "${MOONS[@]}" "${DIST[@]}" \
  --resume run/checkpoints/previous-run --output m.safetensors
[ -f m.safetensors ] || fail "consolidate --output wrote no file"
# local after train: train's checkpoints go aside (previous-run/ then holds that run
# alone), the new shards are this run's.
expect_exit 0 "$PSTRAIN" local "${MOONS[@]}" "${DIST[@]}" --output run
expect_in err.txt "local warn: run/checkpoints holds 2 checkpoint\(s\) of another run"
ls run/checkpoints | grep -q '^ckpt-' && fail "train's checkpoints left in place"
[ -d run/checkpoints/previous-run/ckpt-40 ] || fail "train's checkpoints not set aside"
ls run/checkpoints/previous-run | grep -q '^server-' && fail "previous-run mixes two runs"
expect_exit 0 "$PSTRAIN" consolidate "${MOONS[@]}" "${DIST[@]}" --resume run --output m2.safetensors
# A resumed run continues its folder: nothing is set aside.
expect_exit 0 "$PSTRAIN" train "${MOONS[@]}" --output solo
expect_exit 0 "$PSTRAIN" train "${MOONS[@]}" --output solo --resume solo
! grep -q "another run\|earlier run" err.txt || fail "a resumed run set its own checkpoints aside"

# 7. One spelling: --output FILE (as predict), --out the same; the job shorthand --output
# (output.dir) does not apply to consolidate; unknown flags are errors.
expect_exit 0 "$PSTRAIN" consolidate "${MOONS[@]}" "${DIST[@]}" --resume run --out m3.safetensors
[ -f m3.safetensors ] || fail "consolidate --out wrote no file"
expect_exit 0 "$PSTRAIN" consolidate --help
expect_in out.txt "^  --output FILE +where to write the model"
! grep -q "^  --output DIR" out.txt || fail "consolidate --help still lists --output DIR (output.dir)"
expect_exit 2 "$PSTRAIN" consolidate "${MOONS[@]}" --resume run --outptu x
expect_in err.txt "unknown option '--outptu'"
for cmd in train local coordinator server worker eval predict consolidate plot keygen status mpi; do
  # pstrain mpi initialises MPI (a singleton here) before it reports the flag, so that every
  # rank of a launch learns it; Open MPI's plugins are unloaded by then, so the sanitizer
  # build cannot attribute their allocations to tests/lsan.supp's libraries: no leak check.
  asan=${ASAN_OPTIONS-}
  [ $cmd = mpi ] && asan="${asan:+$asan:}detect_leaks=0"
  ASAN_OPTIONS=$asan expect_exit 2 "$PSTRAIN" $cmd --no-such-flag 1
  expect_in err.txt "unknown (or incomplete )?option '--no-such-flag'"
done
expect_exit 0 "$PSTRAIN" keygen --output keys k1
[ -f keys/k1.pub ] || fail "keygen --output wrote no key"

# 4. --print-config: absolute paths; the printed job, moved elsewhere, loads and trains.
mkdir -p elsewhere
expect_exit 0 "$PSTRAIN" train "$SRC/examples/binary-moons.yaml" --output rel --print-config
cp out.txt elsewhere/job.yaml
expect_in elsewhere/job.yaml "^  train: \"$SRC/examples/data/moons.csv\"$"
expect_in elsewhere/job.yaml "^  dir: \"$WORK/rel\"$"
(cd / && "$PSTRAIN" train "$WORK/elsewhere/job.yaml" --epochs 1 > /dev/null 2> "$WORK/err.txt") \
  || { tail -5 err.txt >&2; fail "the printed job does not load from another folder"; }
[ -f rel/model.safetensors ] || fail "the printed job did not write to its output.dir"

# 9. accuracy.png carries the final test accuracy; a distributed run's throughput.png says
# it is worker 0's.
if command -v gnuplot > /dev/null; then
  expect_exit 0 "$PSTRAIN" train "${MOONS[@]}" --test "$SRC/examples/data/moons.csv" --output withtest
  expect_exit 0 "$PSTRAIN" plot withtest --ascii
  expect_in out.txt "test_acc \(end\)"
  expect_exit 0 "$PSTRAIN" plot run --ascii
  expect_in out.txt "throughput of worker 0 \(its partition only\)"
  ! grep -q "test_acc" out.txt || fail "a run without a test set plots a test accuracy"
  expect_exit 0 "$PSTRAIN" plot withtest --ascii
  ! grep -q "worker 0" out.txt || fail "a single-process run's throughput is titled worker 0's"
fi
echo "ok"
