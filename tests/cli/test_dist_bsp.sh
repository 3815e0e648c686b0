#!/usr/bin/env bash
# Synchronous training across processes computes what single-process training computes:
#  - 1 worker and any number of servers: the same weights as `pstrain train`, bit for bit;
#  - W workers: the mean of the W partitions' gradients applied once per step (compared
#    with tests/bsp_reference.c, which simulates exactly that in one process), bit for
#    bit: servers sum the workers' gradients in rank order, whatever order they arrive in.
source "$(dirname "$0")/lib.sh"
REF=$3
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"

# Fashion-MNIST, 1 epoch, momentum SGD with a cosine schedule (exercises optimizer state
# and the run-length bookkeeping on the servers).
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  COMMON=(--epochs 1 --optimizer momentum --lr 0.05 --optimizer.schedule cosine
          --consistency bsp)
  expect_exit 0 "$PSTRAIN" train "${COMMON[@]}" --output single
  for S in 1 3; do
    expect_exit 0 "$PSTRAIN" local "${COMMON[@]}" --servers $S --workers 1 --output dist$S
    expect_in err.txt "local info: job finished: all $((S + 2)) processes exited 0"
    $COMPARE single/model.safetensors dist$S/model.safetensors 0 \
      || fail "bsp with 1 worker and $S servers differs from single-process training"
  done
  # The same test-set figures, to the last digit.
  a=$(json_field single/metrics.jsonl test accuracy); b=$(json_field dist3/metrics.jsonl test accuracy)
  [ "$a" = "$b" ] || fail "test accuracy $a (single) vs $b (bsp, 1 worker)"
else
  echo "dataset-fashion-mnist not installed: skipping the Fashion-MNIST part"
fi

# W workers on the moons example: 640 training rows over 3 workers are 214/213/213 rows;
# with batch 71 worker 0 takes 4 steps an epoch and the others 3, so the others finish
# first and worker 0's last steps average its gradient alone (uneven partitions must not
# deadlock). 5 workers with batch 32: 128 rows and 4 steps each.
for case in "3 71" "5 32"; do
  set -- $case; W=$1; B=$2
  expect_exit 0 "$PSTRAIN" local "$SRC/examples/binary-moons.yaml" --consistency bsp \
    --servers 2 --workers $W --epochs 3 --optimizer adam --batch-size $B --output moons$W
  expect_exit 0 "$REF" "$SRC/examples/binary-moons.yaml" $W ref$W.safetensors \
    cluster.consistency=bsp cluster.servers=2 train.epochs=3 optimizer.name=adam \
    train.batch_size=$B data.train=$SRC/examples/data/moons.csv
  $COMPARE ref$W.safetensors moons$W/model.safetensors 0 \
    || fail "bsp with $W workers differs from the averaged-gradient reference"
done
# The comparison itself must be able to fail: a different seed gives other weights.
expect_exit 0 "$REF" "$SRC/examples/binary-moons.yaml" 3 other.safetensors \
  cluster.consistency=bsp cluster.servers=2 train.epochs=3 optimizer.name=adam seed=8 \
  train.batch_size=71 \
  data.train=$SRC/examples/data/moons.csv
if $COMPARE other.safetensors moons3/model.safetensors 1e-5 > /dev/null; then
  fail "the comparison does not tell different weights apart"
fi
echo "ok"
