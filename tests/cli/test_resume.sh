#!/usr/bin/env bash
# Checkpoints and --resume: a run stopped part-way and resumed from its newest complete
# checkpoint ends with exactly the weights of an uninterrupted run (tolerance 0), single
# process and distributed bsp; a damaged newest checkpoint is skipped with a warning
# naming it; none complete, another job's, or none at all stop with one line.
# The stop is the test hook PSTRAIN_TEST_STOP_AFTER_STEPS=k: SIGTERM raised right after
# update k, which the process handles as it would a real SIGTERM.
source "$(dirname "$0")/lib.sh"
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"
JOB=$SRC/examples/binary-moons.yaml

# flip FILE OFFSET: inverts one byte (OFFSET < 0 counts from the end).
flip() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys
path, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(path, "rb").read())
b[off] ^= 0xff
open(path, "wb").write(b)
PY
}

# ---- Single process: 640 training rows, batch 32: 20 steps an epoch, 60 in all ----------
T=(train "$JOB" --epochs 3)
expect_exit 0 "$PSTRAIN" "${T[@]}" --output a
[ -d a/checkpoints/ckpt-60 ] || fail "no epoch-end checkpoint ckpt-60 after a finished run"

# Stopped at update 27 (epoch 2, step 7), checkpoints every 5 updates and when stopped.
stop_run() { # OUTDIR
  PSTRAIN_TEST_STOP_AFTER_STEPS=27 "$PSTRAIN" "${T[@]}" --output "$1" \
    --checkpoint.every_steps 5 > out.txt 2> err.txt
  local code=$?
  [ $code -eq 143 ] || { tail -5 err.txt >&2; fail "stopped run exited $code, expected 143"; }
  expect_in err.txt "checkpoint \(stopped\) at step 27"
  [ "$(ls "$1/checkpoints")" = "$(printf 'ckpt-25\nckpt-27')" ] \
    || fail "checkpoints kept: $(ls "$1/checkpoints" | tr '\n' ' '), expected ckpt-25 ckpt-27"
}
stop_run b
[ ! -f b/model.safetensors ] || fail "a stopped run wrote model.safetensors"
expect_exit 0 "$PSTRAIN" "${T[@]}" --output b --resume b/checkpoints
expect_in err.txt "resuming from b/checkpoints/ckpt-27: epoch 2, 7 of its steps done, update 27"
$COMPARE a/model.safetensors b/model.safetensors 0 \
  || fail "stop at update 27 + resume differs from the uninterrupted run"
# The resumed epoch reports what the uninterrupted one did (timing columns aside).
cut -d, -f1-11 a/metrics.csv | tail -2 > a.csv; cut -d, -f1-11 b/metrics.csv | tail -2 > b.csv
cmp -s a.csv b.csv || { paste a.csv b.csv >&2; fail "metrics of epochs 2-3 differ after resume"; }
# The comparison can fail: an earlier checkpoint's weights are not the final ones.
if $COMPARE a/model.safetensors b/checkpoints/ckpt-60/model.safetensors 0 > /dev/null; then :; else
  fail "the resumed run's final checkpoint is not its final model"; fi
# A finished run's checkpoint (after the last epoch) resumes to the same model, and so does
# one checkpoint folder named directly (the resumed run's epoch-2 end).
expect_exit 0 "$PSTRAIN" "${T[@]}" --output a2 --resume a
$COMPARE a/model.safetensors a2/model.safetensors 0 || fail "resume of a finished run differs"
expect_exit 0 "$PSTRAIN" "${T[@]}" --output a3 --resume b/checkpoints/ckpt-40
expect_in err.txt "resuming from b/checkpoints/ckpt-40: epoch 3, 0 of its steps done"
$COMPARE a/model.safetensors a3/model.safetensors 0 || fail "resume from ckpt-40 differs"

# A flipped byte in the newest checkpoint: warned about by name, the previous one used.
stop_run c
if $COMPARE a/model.safetensors c/checkpoints/ckpt-25/model.safetensors 0 > /dev/null; then
  fail "the comparison does not tell different weights apart"
fi
flip c/checkpoints/ckpt-27/optimizer.safetensors -9
expect_exit 0 "$PSTRAIN" "${T[@]}" --output c --resume c
expect_in err.txt "warn: checkpoint c/checkpoints/ckpt-27 is not usable: .*optimizer.safetensors: corrupted"
expect_in err.txt "warn: resuming from the older checkpoint c/checkpoints/ckpt-25"
$COMPARE a/model.safetensors c/model.safetensors 0 || fail "resume from ckpt-25 differs"
# A fresh run into the same folder starts its checkpoints afresh: "the newest" is its own.
# The earlier run's wait in previous-run/ until it has written its first, then go.
expect_exit 0 "$PSTRAIN" train "$JOB" --epochs 1 --output c
expect_in err.txt "train warn: c/checkpoints holds 2 checkpoint\(s\) of an earlier run: moved to c/checkpoints/previous-run"
expect_in err.txt "train info: removed the 2 checkpoint\(s\) of the earlier run from c/checkpoints/previous-run"
[ "$(ls c/checkpoints)" = "ckpt-20" ] || fail "a fresh run kept $(ls c/checkpoints | tr '\n' ' ')"

# Every checkpoint damaged (one truncated, one flipped in its header): one line, exit 3.
stop_run d
truncate -s 1000 d/checkpoints/ckpt-27/model.safetensors
flip d/checkpoints/ckpt-25/model.safetensors 20
expect_exit 3 "$PSTRAIN" "${T[@]}" --output d --resume d/checkpoints
expect_in err.txt "ckpt-27/model.safetensors: truncated"
expect_in err.txt "^pstrain train: --resume d/checkpoints: no complete checkpoint \(2 damaged"
[ "$(grep -c '^pstrain train:' err.txt)" -eq 1 ] || fail "more than one error line"
[ ! -f d/model.safetensors ] || fail "a failed resume wrote a model"
# Another job's checkpoint (another learning rate) is refused, not skipped.
expect_exit 2 "$PSTRAIN" "${T[@]}" --lr 0.02 --output e --resume b
expect_in err.txt "written by another job"
# Nothing to resume from.
expect_exit 4 "$PSTRAIN" "${T[@]}" --output e --resume nowhere
expect_in err.txt "--resume nowhere: no checkpoint there"

# ---- Distributed bsp: 2 servers, 2 workers of 320 rows: 10 clocks an epoch, 30 in all --
# Two workers' gradients sum as a + b = b + a exactly, so the weights must match to 0.
L=(local "$JOB" --consistency bsp --servers 2 --workers 2 --epochs 3)
expect_exit 0 "$PSTRAIN" "${L[@]}" --output da
expect_in err.txt "server\[1\] info: checkpoint of clock 30"
# The servers' end-of-run shards, consolidated on demand, are worker 0's final model.
C=(consolidate "$JOB" --consistency bsp --servers 2 --workers 2 --epochs 3)
expect_exit 0 "$PSTRAIN" "${C[@]}" --resume da
expect_in err.txt "the model at clock 30, from 2 shard checkpoint\(s\): da/checkpoints/model-clock-30.safetensors"
$COMPARE da/model.safetensors da/checkpoints/model-clock-30.safetensors 0 \
  || fail "the consolidated shards differ from the final model"
expect_exit 4 "$PSTRAIN" "${C[@]}" --resume da --clock 7
expect_in err.txt "no checkpoint of clock 7"
expect_exit 2 "$PSTRAIN" "${C[@]}" --resume da --lr 0.5
expect_in err.txt "written by another job"

# A fresh job into da that fails before its first checkpoint (a NaN gradient, refused)
# destroys nothing: the earlier run's shards wait in previous-run/, and resume from there.
PSTRAIN_TEST_NAN_WORKER=1 PSTRAIN_TEST_NAN_STEP=3 expect_exit 1 "$PSTRAIN" "${L[@]}" --output da
expect_in err.txt "server\[1\] warn: da/checkpoints holds 1 checkpoint\(s\) of this server from an earlier run: moved to da/checkpoints/previous-run"
for s in 0 1; do
  [ -f "da/checkpoints/previous-run/server-$s-clock-30.safetensors" ] \
    || fail "the failed fresh job lost server $s's checkpoint of the earlier run"
done
expect_exit 0 "$PSTRAIN" "${L[@]}" --output da --resume da/checkpoints/previous-run
expect_in err.txt "coordinator info: resuming from the servers' checkpoints of clock 30"
$COMPARE da/model.safetensors da/checkpoints/model-clock-30.safetensors 0 \
  || fail "resuming the set-aside checkpoints gave another model"

dstop() { # OUTDIR: stopped after clock 13; the servers checkpointed clocks 5 and 10, and 13
  # at the stop (keeping 10 and 13)
  PSTRAIN_TEST_STOP_AFTER_STEPS=13 "$PSTRAIN" "${L[@]}" --output "$1" \
    --checkpoint.every_steps 5 > out.txt 2> err.txt
  local code=$?
  [ $code -eq 143 ] || { tail -5 err.txt >&2; fail "stopped job exited $code, expected 143"; }
  for s in 0 1; do for c in 10 13; do
    [ -f "$1/checkpoints/server-$s-clock-$c.safetensors" ] || fail "no server $s clock $c file"
  done; done
}
dstop db
expect_exit 0 "$PSTRAIN" "${L[@]}" --output db --checkpoint.every_steps 5 --resume db/checkpoints
expect_in err.txt "coordinator info: resuming from the servers' checkpoints of clock 13"
expect_in err.txt "worker\[1\] info: resuming at clock 13 \(epoch 2, step 3 of it\)"
expect_in err.txt "local info: job finished: all 5 processes exited 0"
$COMPARE da/model.safetensors db/model.safetensors 0 \
  || fail "distributed bsp stop + resume differs from the uninterrupted run"
[ "$(ls db/checkpoints | grep -c 'clock-\(25\|30\)\.')" -eq 4 ] \
  || fail "the resumed job kept $(ls db/checkpoints | tr '\n' ' ')"

# One server's newest checkpoint damaged: the newest clock complete on every server is used.
dstop dc
flip dc/checkpoints/server-1-clock-13.safetensors -5
expect_exit 0 "$PSTRAIN" "${L[@]}" --output dc --resume dc
expect_in err.txt "server\[1\] warn: checkpoint dc/checkpoints/server-1-clock-13.safetensors is not usable: .*corrupted"
expect_in err.txt "coordinator warn: resuming from clock 10, the newest that every server has complete \(server\[0\] 13 10, server\[1\] 10\)"
$COMPARE da/model.safetensors dc/model.safetensors 0 || fail "resume from clock 10 differs"

# No clock complete on every server: the coordinator says so, the job stops.
dstop dd
truncate -s 0 dd/checkpoints/server-0-clock-13.safetensors
rm dd/checkpoints/server-1-clock-10.safetensors
# Exit 3 (the coordinator's: damaged data) whichever process ends first.
expect_exit 3 "$PSTRAIN" "${L[@]}" --output dd --resume dd
expect_in err.txt "coordinator error: --resume dd: no clock has a complete checkpoint on every server \(server\[0\] 10, server\[1\] 13\)"
[ ! -f dd/model.safetensors ] || fail "a failed distributed resume wrote a model"

# Fine-tuning with the first two layers frozen: server 0's shard [0, 176) lies inside them,
# receives no pushes and sees no checkpoint flags; its one checkpoint stands for any clock.
F=(--model.layers.0.trainable false --model.layers.1.trainable false)
expect_exit 0 "$PSTRAIN" "${L[@]}" "${F[@]}" --output fa
PSTRAIN_TEST_STOP_AFTER_STEPS=13 "$PSTRAIN" "${L[@]}" "${F[@]}" --output fb \
  --checkpoint.every_steps 5 > out.txt 2> err.txt
[ $? -eq 143 ] || fail "stopped fine-tuning job did not exit 143"
[ -f fb/checkpoints/server-0-clock-0.safetensors ] || fail "the frozen shard wrote no checkpoint"
expect_exit 0 "$PSTRAIN" "${L[@]}" "${F[@]}" --output fb --resume fb
expect_in err.txt "coordinator info: resuming from the servers' checkpoints of clock 13"
expect_in err.txt "server\[0\] info: resumed from fb/checkpoints/server-0-clock-0.safetensors \(clock 13"
$COMPARE fa/model.safetensors fb/model.safetensors 0 || fail "frozen-shard resume differs"

# ssp resumes too (not bit-exact by nature): the job completes and still learns.
PSTRAIN_TEST_STOP_AFTER_STEPS=13 "$PSTRAIN" local "$JOB" --consistency ssp --servers 2 \
  --workers 2 --epochs 3 --output ds --checkpoint.every_steps 4 > out.txt 2> err.txt
[ $? -eq 143 ] || fail "stopped ssp job did not exit 143"
expect_exit 0 "$PSTRAIN" local "$JOB" --consistency ssp --servers 2 --workers 2 --epochs 3 \
  --output ds --resume ds
expect_in err.txt "coordinator info: resuming from the servers' checkpoints of clock 13"
expect_ge "$(json_field ds/metrics.jsonl validation accuracy)" 0.8 "ssp resumed accuracy"
# asp with worker 1 far behind (80 ms a step) when worker 0's stop comes: the resume says
# how many steps of its own each worker skips (worker 1's batches go untrained).
PSTRAIN_TEST_SLOW_WORKER=1 PSTRAIN_TEST_STEP_DELAY_MS=80 PSTRAIN_TEST_STOP_AFTER_STEPS=13 \
  "$PSTRAIN" local "$JOB" --consistency asp --servers 2 --workers 2 --epochs 3 --output da2 \
  --checkpoint.every_steps 4 > out.txt 2> err.txt
[ $? -eq 143 ] || fail "stopped asp job did not exit 143"
expect_exit 0 "$PSTRAIN" local "$JOB" --consistency asp --servers 2 --workers 2 --epochs 3 \
  --output da2 --resume da2
expect_in err.txt "coordinator info: resuming from the servers' checkpoints of clock 13"
expect_in err.txt "server\[0\] warn: resuming every worker at clock 13 \(steps per worker\): worker\[1\] was at [0-9]+ and skips [0-9]+ -- the skipped steps' batches are not trained"
grep -q "worker\[0\] was at" err.txt && fail "worker 0 was at the checkpoint's clock: nothing to say of it"
# Three workers (uneven partitions: 7, 7 and 7 or 8 steps an epoch): bsp sums in rank
# order, so stop + resume is exact with any number of workers.
L3=(local "$JOB" --consistency bsp --servers 2 --workers 3 --epochs 3)
expect_exit 0 "$PSTRAIN" "${L3[@]}" --output w3a
PSTRAIN_TEST_STOP_AFTER_STEPS=9 "$PSTRAIN" "${L3[@]}" --output w3b --checkpoint.every_steps 4 \
  > out.txt 2> err.txt
code=$?; [ $code -eq 143 ] || fail "3-worker stopped job exited $code, expected 143"
expect_exit 0 "$PSTRAIN" "${L3[@]}" --output w3b --checkpoint.every_steps 4 --resume w3b/checkpoints
expect_in err.txt "coordinator info: resuming from the servers' checkpoints of clock 9"
$COMPARE w3a/model.safetensors w3b/model.safetensors 0 \
  || fail "3-worker bsp stop + resume differs from the uninterrupted run"

echo "ok"
