#!/usr/bin/env bash
# Asynchronous (asp) and bounded-staleness (ssp) training over real processes reach the
# test accuracy of single-process training, within 1 point, on Fashion-MNIST for the same
# epochs (the default job: 5 epochs of Adam with a cosine schedule); every process exits 0
# and none is left behind. The servers' corrections for stale gradients follow the job.
source "$(dirname "$0")/lib.sh"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
  || { echo "dataset-fashion-mnist is not installed"; exit 77; }

EPOCHS=(--epochs 5 "${FM_SUBSET[@]}")
expect_exit 0 "$PSTRAIN" train "${EPOCHS[@]}" --output single
base=$(json_field single/metrics.jsonl test accuracy)
echo "single-process test accuracy: $base"

check() { # NAME ARGS...
  local name=$1; shift
  expect_exit 0 "$PSTRAIN" local "${EPOCHS[@]}" --output "$name" "$@"
  local n=$(grep -c "exited 0" err.txt || true)
  expect_in err.txt "local info: job finished: all [0-9]+ processes exited 0"
  local acc=$(json_field "$name/metrics.jsonl" test accuracy)
  echo "$name ($*): test accuracy $acc"
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') >= float('$base') - $ACC_TOL else 1)" \
    || fail "$name: test accuracy $acc is more than 1 point below single-process $base"
  # No process of this job is left: they all ran with our unique output path.
  pgrep -f -- "$WORK" > /dev/null && fail "$name: processes left behind: $(pgrep -af -- "$WORK")"
  return 0
}
# The servers' corrections for stale gradients (ps/async.h) follow the job's keys:
# async_momentum (on by default) takes momentum 0.9 to 0.8 for 2 asp workers, and off
# leaves it; delay compensation and the staleness-aware lr run; a bad lambda0 is refused.
MOONS=("$SRC/examples/binary-moons.yaml" --epochs 2 --optimizer momentum --consistency asp)
expect_exit 0 "$PSTRAIN" local "${MOONS[@]}" --output mom
expect_in err.txt "server\[0\] info: cluster.async_momentum: explicit momentum 0.8 for the 0.9 of 2 asynchronous workers"
expect_exit 0 "$PSTRAIN" local "${MOONS[@]}" --cluster.async_momentum false \
  --cluster.staleness_lr true --cluster.delay_compensation 0.5 --output nomom
grep -q "explicit momentum" err.txt && fail "cluster.async_momentum false still changed the momentum"
expect_exit 2 "$PSTRAIN" train "${MOONS[@]}" --cluster.delay_compensation -1
expect_in err.txt "cluster.delay_compensation: must be >= 0"

check asp2 --consistency asp --servers 2 --workers 2
check ssp2 --consistency ssp --staleness 2 --servers 2 --workers 2
echo "ok"
