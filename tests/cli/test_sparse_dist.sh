#!/usr/bin/env bash
# Sparse models across processes (issue 12): every server holds its share of the embedding
# tables (keys by spt_owner), workers pull the rows of their batch's keys and push their
# gradients (SPULL/SPUSH) under the same clocks as the dense ranges.
#  - bsp with 1 worker and 1 server ends with the model of `pstrain train`, bit for bit,
#    and the same validation figures (which read the table rows);
#  - a bsp job stopped and resumed from the servers' checkpoints (tables included) ends
#    where one that went through does;
#  - 2 servers x 2 workers in bsp, ssp and asp train an embedding_bag -> dense classifier
#    well above chance; a sparse logistic regression (1 dense float) on 1 server too;
#  - that sparse LR on 2 servers (server 0 owns no dense float) in bsp (the 1-server model,
#    bit for bit), ssp and asp, and stopped + resumed.
source "$(dirname "$0")/lib.sh"
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"

# 2400 rows of 10 sparse ids each, a learnable label (make_sparse_svm.py).
/usr/bin/python3 "$SRC/tests/cli/make_sparse_svm.py" train.svm
cp "$SRC/tests/cli/jobs/sparse-mlp.yaml" mlp.yaml
cp "$SRC/tests/cli/jobs/sparse-lr.yaml" lr.yaml

expect_exit 0 "$PSTRAIN" train mlp.yaml --output single
expect_exit 0 "$PSTRAIN" local mlp.yaml --consistency bsp --servers 1 --workers 1 --output d11
$COMPARE single/model.safetensors d11/model.safetensors 0 \
  || fail "bsp with 1 worker and 1 server differs from single-process training"
a=$(json_field single/metrics.jsonl validation loss); b=$(json_field d11/metrics.jsonl validation loss)
[ "$a" = "$b" ] || fail "validation loss $a (single) vs $b (bsp, 1 worker): the table rows differ"

for c in bsp ssp asp; do
  expect_exit 0 "$PSTRAIN" local mlp.yaml --consistency $c --servers 2 --workers 2 --output m_$c
  expect_in err.txt "server\[1\] info: sparse: 1 table\(s\), [0-9]+ rows held"
  acc=$(json_field m_$c/metrics.jsonl validation accuracy)
  echo "embedding_bag -> dense, $c, 2 servers x 2 workers: validation accuracy $acc"
  expect_ge "$acc" 0.8 "$c accuracy"
done

# Servers checkpoint their tables beside their shards; a bsp job stopped after 50 clocks and
# resumed ends with the model and validation figures of the run that went through.
L=(local mlp.yaml --consistency bsp --servers 2 --workers 2 --checkpoint.every_steps 20)
expect_exit 0 "$PSTRAIN" "${L[@]}" --output full
for s in 0 1; do
  [ -f full/checkpoints/tables-server-$s-clock-120.safetensors ] || fail "no tables of server $s"
done
PSTRAIN_TEST_STOP_AFTER_STEPS=50 "$PSTRAIN" "${L[@]}" --output cut > out.txt 2> err.txt
code=$?
[ $code -eq 143 ] || { tail -5 err.txt >&2; fail "stopped job exited $code, expected 143"; }
expect_exit 0 "$PSTRAIN" "${L[@]}" --output cut --resume cut/checkpoints
expect_in err.txt "coordinator info: resuming from the servers' checkpoints of clock 50"
$COMPARE full/model.safetensors cut/model.safetensors 0 || fail "stop + resume differs"
a=$(json_field full/metrics.jsonl validation loss); b=$(json_field cut/metrics.jsonl validation loss)
[ "$a" = "$b" ] || fail "validation loss $a (through) vs $b (resumed): the table rows differ"

expect_exit 0 "$PSTRAIN" local lr.yaml --consistency bsp --servers 1 --workers 2 --output lr
acc=$(json_field lr/metrics.jsonl validation accuracy)
echo "sparse logistic regression, bsp, 1 server x 2 workers: validation accuracy $acc"
expect_ge "$acc" 0.85 "sparse LR accuracy"

# Sparse LR on 2 servers: the 1 dense float (the bias) leaves server 0 an empty dense range
# (coord_shard_map), yet it holds half the rows and keeps the clock from the workers' empty
# pushes. bsp ends with the 1-server model and validation figures bit for bit (the rows'
# updates do not depend on where they live); ssp and asp train as well.
L=(local lr.yaml --consistency bsp --servers 2 --workers 2 --checkpoint.every_steps 20)
expect_exit 0 "$PSTRAIN" "${L[@]}" --output lr2
expect_in err.txt "server\[0\] info: owns no dense parameter"
$COMPARE lr/model.safetensors lr2/model.safetensors 0 || fail "bsp on 2 servers differs from 1"
a=$(json_field lr/metrics.jsonl validation loss); b=$(json_field lr2/metrics.jsonl validation loss)
[ "$a" = "$b" ] || fail "validation loss $a (1 server) vs $b (2 servers): the table rows differ"
[ -f lr2/checkpoints/server-0-clock-120.safetensors ] || fail "no checkpoint of the empty shard"
for c in ssp asp; do
  expect_exit 0 "$PSTRAIN" local lr.yaml --consistency $c --servers 2 --workers 2 --output lr_$c
  acc=$(json_field lr_$c/metrics.jsonl validation accuracy)
  echo "sparse logistic regression, $c, 2 servers x 2 workers: validation accuracy $acc"
  expect_ge "$acc" 0.85 "sparse LR accuracy ($c, 2 servers)"
done
# Stopped after 50 clocks and resumed: the empty shard's checkpoint (metadata, no tensors)
# and its tables come back, and the run ends where the one that went through did.
PSTRAIN_TEST_STOP_AFTER_STEPS=50 "$PSTRAIN" "${L[@]}" --output lrcut > out.txt 2> err.txt
code=$?
[ $code -eq 143 ] || { tail -5 err.txt >&2; fail "stopped sparse LR exited $code, expected 143"; }
expect_exit 0 "$PSTRAIN" "${L[@]}" --output lrcut --resume lrcut/checkpoints
expect_in err.txt "server\[0\] info: resumed from .*server-0-clock-50"
$COMPARE lr2/model.safetensors lrcut/model.safetensors 0 || fail "sparse LR stop + resume differs"
a=$(json_field lrcut/metrics.jsonl validation loss)
[ "$a" = "$b" ] || fail "validation loss $b (through) vs $a (resumed): the table rows differ"
echo "ok"
