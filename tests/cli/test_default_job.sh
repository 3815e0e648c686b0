#!/usr/bin/env bash
# The README's main job, unchanged: `pstrain train` with no arguments must reach >= 0.85
# test accuracy on Fashion-MNIST and write its metrics files. (The sanitizer pass runs it on
# lib.sh's subset, FM_SUBSET, where 0.80 is the bar.)
source "$(dirname "$0")/lib.sh"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
  || { echo "dataset-fashion-mnist is not installed"; exit 77; }

MIN=0.85
[ ${#FM_SUBSET[@]} -eq 0 ] || MIN=0.80
expect_exit 0 "$PSTRAIN" train "${FM_SUBSET[@]}"
expect_in err.txt "epoch 5/5 loss"
expect_in err.txt "train info: test: loss"
expect_in out.txt "^Evaluation on the (test|validation) set: confusion matrix"
m=runs/fashion-mnist/metrics.jsonl
acc=$(json_field $m test accuracy)
echo "default job test accuracy: $acc"
expect_ge "$acc" $MIN "test accuracy"
[ "$(wc -l < runs/fashion-mnist/metrics.csv)" -eq 6 ] || fail "metrics.csv should have a header and 5 epochs"
expect_in runs/fashion-mnist/metrics.csv "^epoch,train_loss,train_acc,val_loss,val_acc"

# The README's main command: the same job on 2 servers and 2 workers, no arguments.
rm -rf runs
expect_exit 0 "$PSTRAIN" local "${FM_SUBSET[@]}"
expect_in err.txt "local info: job finished: all 5 processes exited 0"
expect_in err.txt "coordinator info: job finished; test accuracy"
acc=$(json_field runs/fashion-mnist/metrics.jsonl test accuracy)
echo "default job, pstrain local: test accuracy $acc"
expect_ge "$acc" $MIN "pstrain local test accuracy"
[ -s runs/fashion-mnist/model.safetensors ] || fail "no model.safetensors from pstrain local"
echo "ok"
