#!/usr/bin/env bash
# The traffic columns of the metrics files (worker/report.h): a single-process run records
# no traffic; a distributed run records bytes both ways, ordered latency percentiles,
# staleness and where its time went, per epoch and every train.log_every steps.
# A run that trains to garbage says so and exits 1 (the model kept): diverged (plain SGD at
# lr 1e30), or no better than chance (lr 1e-9), single process and distributed; every epoch
# so judged warns, and with train.on_divergence stop ends the run (exit 5).
# A run folder is one job's: a second job aimed at it while the first runs is refused,
# naming the first; once that one ends the folder is free again.
source "$(dirname "$0")/lib.sh"
CHECK="/usr/bin/python3 $SRC/tests/cli/check_metrics.py"
MOONS=("$SRC/examples/binary-moons.yaml" --epochs 3 --train.log_every 5)

expect_exit 0 "$PSTRAIN" train "${MOONS[@]}" --output single
$CHECK single single || fail "single-process metrics files"
# 640 training rows in batches of 32: 20 steps an epoch, a record every 5: 4 per epoch.
[ "$(tail -n +2 single/steps.csv | wc -l)" -eq 12 ] || fail "steps.csv: expected 12 step records"

for cons in bsp ssp; do
  expect_exit 0 "$PSTRAIN" local "${MOONS[@]}" --servers 2 --workers 2 --consistency $cons \
    --output dist-$cons
  $CHECK dist-$cons dist || fail "$cons metrics files"
done
# The checker must be able to fail: a single-process run has no traffic to show.
if $CHECK single dist > /dev/null 2>&1; then
  fail "check_metrics.py accepts a run without traffic as distributed"
fi
expect_exit 1 "$PSTRAIN" train "${MOONS[@]}" --optimizer sgd --lr 1e30 --output diverged
expect_in err.txt "^pstrain train: model in diverged/model.safetensors: the run diverged: the final loss is .*, over 100 times the first batch's"
[ -f diverged/model.safetensors ] || fail "the diverged run's model was not kept"
expect_exit 1 "$PSTRAIN" train "${MOONS[@]}" --lr 1e-9 --output chance
expect_in err.txt "the model is no better than chance: accuracy 0\.[0-9]+, while always predicting the most frequent class scores 0\.5563"
expect_in err.txt "train warn: the model is no better than chance: .*\(epoch 1's validation loss "
expect_exit 1 "$PSTRAIN" local "${MOONS[@]}" --lr 1e-9 --output chance-dist
expect_in err.txt "worker\[0\] error: the model is no better than chance"
# train.on_divergence stop: the run ends after the first epoch judged diverged, exit 5,
# single process and distributed (the launcher ends the job with the worker's code).
expect_exit 5 "$PSTRAIN" train "${MOONS[@]}" --optimizer sgd --lr 1e30 \
  --train.on_divergence stop --output stop-single
expect_in err.txt "^pstrain train: the run diverged: epoch 1's validation loss is .*; stopped after epoch 1 \(train.on_divergence: stop\)$"
expect_exit 5 "$PSTRAIN" local "${MOONS[@]}" --optimizer sgd --lr 1e30 \
  --train.on_divergence stop --output stop-dist
expect_in err.txt "worker\[[01]\] error: the run diverged: epoch 1's validation loss"
expect_in err.txt "exit code 5$"

# A full disk (metrics.jsonl on /dev/full): one line naming the file's whole path, exit 4.
mkdir full && ln -s /dev/full full/metrics.jsonl
expect_exit 4 "$PSTRAIN" train "${MOONS[@]}" --output full
expect_in err.txt "^pstrain train: full/metrics.jsonl: write failed: No space left on device$"

# One folder, two jobs: worker 0 of the first sleeps 50 ms a step (test hook).
PSTRAIN_TEST_SLOW_WORKER=0 PSTRAIN_TEST_STEP_DELAY_MS=50 "$PSTRAIN" local "${MOONS[@]}" \
  --output busy > /dev/null 2> busy.err &
first=$!
for _ in $(seq 300); do
  grep -q "worker\[0\] info: training with" busy.err 2>/dev/null && break; sleep 0.1
done
expect_exit 2 "$PSTRAIN" train "${MOONS[@]}" --output busy
expect_in err.txt "^pstrain train: busy is in use by another job: the coordinator of job 'binary-moons', pid [0-9]+ on .* since 20"
expect_exit 2 "$PSTRAIN" local "${MOONS[@]}" --output busy
expect_in err.txt "coordinator error: busy is in use by another job"
kill -TERM $first
wait $first
expect_exit 0 "$PSTRAIN" train "${MOONS[@]}" --epochs 1 --output busy
echo "ok"
