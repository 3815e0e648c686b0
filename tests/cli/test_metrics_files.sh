#!/usr/bin/env bash
# The traffic columns of the metrics files (worker/report.h): a single-process run records
# no traffic; a distributed run records bytes both ways, ordered latency percentiles,
# staleness and where its time went, per epoch and every train.log_every steps.
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
echo "ok"
