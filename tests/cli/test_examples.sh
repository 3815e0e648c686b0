#!/usr/bin/env bash
# Each example job in examples/ trains and reaches a sensible quality.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "$PSTRAIN" train "$SRC/examples/binary-moons.yaml" --output out/moons
acc=$(json_field out/moons/metrics.jsonl validation accuracy)
echo "binary-moons validation accuracy: $acc"
expect_ge "$acc" 0.95 "binary-moons accuracy"
expect_in out.txt "^Evaluation on the (test|validation) set: confusion matrix"

expect_exit 0 "$PSTRAIN" train "$SRC/examples/regression.yaml" --output out/reg
r2=$(json_field out/reg/metrics.jsonl validation r2)
echo "regression validation R^2: $r2"
expect_ge "$r2" 0.95 "regression R^2"
expect_in err.txt "val_mse"

# The default job's file is examples/fashion-mnist.yaml: both must be the same job.
"$PSTRAIN" train --print-config > a.yaml
"$PSTRAIN" train "$SRC/examples/fashion-mnist.yaml" --print-config > b.yaml
cmp -s a.yaml b.yaml || fail "built-in default job differs from examples/fashion-mnist.yaml"
echo "ok"
