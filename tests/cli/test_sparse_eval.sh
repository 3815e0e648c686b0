#!/usr/bin/env bash
# `pstrain eval` and `predict` of models with embedding tables (issue 12, cli/eval_sparse.c):
# the data is read with the run's job (libsvm ids, hashed CSV columns), the rows come from
# tables.safetensors beside the model (for a distributed run merged from the servers'
# checkpoints, by `pstrain local` and `pstrain consolidate`), and the figures are the run's
# own final test evaluation; a model without its tables or job is refused with one line.
source "$(dirname "$0")/lib.sh"

# 2000 training and 400 test rows of make_sparse_svm.py's learnable sparse data.
/usr/bin/python3 "$SRC/tests/cli/make_sparse_svm.py" all.svm
head -2000 all.svm > train.svm
tail -400 all.svm > test.svm

# eval's printed figures (6 decimals) against the run's "test" row of metrics.jsonl.
check_eval() { # OUT.txt METRICS.jsonl WHAT
  /usr/bin/python3 - "$1" "$2" "$3" << 'EOF' || fail "$3: eval differs from the run's test figures"
import json, sys
out, metrics, what = sys.argv[1:]
got = dict(l.split(": ", 1) for l in open(out).read().splitlines() if ": " in l)
test = [json.loads(l) for l in open(metrics) if '"split":"test"' in l][-1]
assert int(got["samples"]) == test["samples"], (got["samples"], test["samples"])
for key in ("loss", "accuracy"):
    assert got[key].strip() == "%.6f" % test[key], (what, key, got[key], test[key])
print("%s: eval accuracy %s, the run's test accuracy %.6f" % (what, got["accuracy"].strip(),
                                                           test["accuracy"]))
EOF
}
# predict's CSV: one row per test row, `predicted` the argmax, its accuracy eval's.
check_predict() { # PRED.csv LABELS(one a line) EVAL_OUT.txt CLASSES...
  /usr/bin/python3 - "$@" << 'EOF' || fail "$1: not eval's predictions"
import sys
pred, labels, out, classes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rows = [l.split(",") for l in open(pred).read().splitlines()]
assert rows[0] == ["index", "predicted"] + ["p_" + c for c in classes], rows[0]
y = open(labels).read().split()
assert len(rows) == len(y) + 1, (len(rows), len(y))
hits = 0
for i, (r, t) in enumerate(zip(rows[1:], y)):
    p = [float(v) for v in r[2:]]
    assert int(r[0]) == i and abs(sum(p) - 1) < 1e-5, r
    assert r[1] == classes[p.index(max(p))], r
    hits += r[1] == t
acc = [l.split(": ")[1] for l in open(out) if l.startswith("accuracy: ")][0].strip()
assert "%.6f" % (hits / len(y)) == acc, (hits / len(y), acc)
EOF
}
cut -d' ' -f1 test.svm > test.labels

# Sparse logistic regression (no dense input, one sigmoid unit: p_0 is 1 - p_1).
cp "$SRC/tests/cli/jobs/sparse-lr.yaml" lr.yaml
expect_exit 0 "$PSTRAIN" train lr.yaml --output lr --data.test test.svm
expect_exit 0 "$PSTRAIN" eval lr/model.safetensors test.svm
cp out.txt lr-eval.txt
check_eval lr-eval.txt lr/metrics.jsonl "sparse LR"
expect_exit 0 "$PSTRAIN" predict lr/model.safetensors test.svm --output lr-pred.csv
check_predict lr-pred.csv test.labels lr-eval.txt 0 1

# embedding_bag -> dense softmax head, also from its last checkpoint folder (the job two
# folders up, the tables beside the checkpoint's model).
cp "$SRC/tests/cli/jobs/sparse-mlp.yaml" mlp.yaml
expect_exit 0 "$PSTRAIN" train mlp.yaml --output mlp --data.test test.svm \
  --checkpoint.every_steps 1000
expect_exit 0 "$PSTRAIN" eval mlp/model.safetensors test.svm --batch-size 7
cp out.txt mlp-eval.txt
check_eval mlp-eval.txt mlp/metrics.jsonl "embedding_bag -> dense"
last=$(ls -d mlp/checkpoints/ckpt-* | sort -V | tail -1)
expect_exit 0 "$PSTRAIN" eval "$last/model.safetensors" test.svm
cmp -s out.txt mlp-eval.txt || fail "eval of $last differs from the final model's"
expect_exit 0 "$PSTRAIN" predict mlp/model.safetensors test.svm --output mlp-pred.csv
check_predict mlp-pred.csv test.labels mlp-eval.txt 0 1

# A distributed run (2 servers x 2 workers, bsp) holds the rows on the servers: at the end of
# `pstrain local` the tables of their final checkpoints, of the clock of worker 0's final
# model, are merged into tables.safetensors beside it; `pstrain consolidate` writes the same
# file beside the model it writes (NAME.tables.safetensors; its default in checkpoints/, the
# job one folder up) and refuses a server's missing one, writing nothing.
D=(mlp.yaml --consistency bsp --servers 2 --workers 2)
expect_exit 0 "$PSTRAIN" local "${D[@]}" --output dist --data.test test.svm
expect_in err.txt "local info: embedding tables of clock [0-9]+, merged from the 2 servers' final checkpoints: dist/tables.safetensors"
c=$(sed -En "s/.*embedding tables of clock ([0-9]+), merged.*/\1/p" err.txt)
expect_exit 0 "$PSTRAIN" eval dist/model.safetensors test.svm
cp out.txt dist-eval.txt
check_eval dist-eval.txt dist/metrics.jsonl "embedding_bag -> dense, 2 servers x 2 workers"
expect_exit 0 "$PSTRAIN" consolidate "${D[@]}" --resume dist --output dist/cons.safetensors
cmp -s dist/tables.safetensors dist/cons.tables.safetensors || fail "consolidate's tables differ"
expect_exit 0 "$PSTRAIN" eval dist/cons.safetensors test.svm
cmp -s out.txt dist-eval.txt || fail "eval of the consolidated model differs from the run's"
expect_exit 0 "$PSTRAIN" consolidate "${D[@]}" --resume dist
expect_exit 0 "$PSTRAIN" eval "dist/checkpoints/model-clock-$c.safetensors" test.svm
cmp -s out.txt dist-eval.txt || fail "eval of consolidate's default output differs"
rm "dist/checkpoints/tables-server-1-clock-$c.safetensors"
expect_exit 4 "$PSTRAIN" consolidate "${D[@]}" --resume dist --output dist/bad.safetensors
expect_in err.txt "^pstrain consolidate: dist/checkpoints/tables-server-1-clock-$c.safetensors: no such file: server 1's embedding tables of clock $c"
[ "$(wc -l < err.txt)" -eq 1 ] || fail "more than one line for a missing tables file"
[ -e dist/bad.safetensors ] || [ -e dist/bad.tables.safetensors ] && fail "consolidate wrote a file"
# Without checkpoints there are no tables to merge: a tables file of an earlier run is removed.
mkdir -p nockpt
cp dist/tables.safetensors nockpt/
expect_exit 0 "$PSTRAIN" local "${D[@]}" --output nockpt --data.test test.svm --checkpoint.enabled false
expect_in err.txt "local warn: removed nockpt/tables.safetensors, of an earlier run"
expect_in err.txt "local warn: no embedding tables beside the model \(checkpoint.enabled is off"
expect_exit 4 "$PSTRAIN" eval nockpt/model.safetensors test.svm

# CSV with hashed categorical columns and a cross beside a standardised dense column,
# classes by name: read as the job reads it; --no-label predicts the same.
/usr/bin/python3 - << 'EOF'
import random
random.seed(3)
with open("wd.csv", "w") as f, open("wd-test.csv", "w") as g:
    for h in (f, g):
        h.write("a,color,shape,label\n")
    for i in range(1000):
        a, c, s = random.gauss(5, 3), random.choice("rgbc"), random.choice(["sq", "ci"])
        y = "yes" if (a > 5) != (c in "rb") else "no"
        (f if i < 800 else g).write("%.3f,%s,%s,%s\n" % (a, c, s, y))
EOF
cat > wd.yaml << 'EOF'
name: wd
data: {format: csv, train: wd.csv, test: wd-test.csv, label: label, scale: standardize,
       categorical: [color, shape], crosses: ["color x shape"], hash_bits: 16}
model:
  layers:
    - {type: embedding, name: emb, dim: 4, fields: 3, inputs: [sparse]}
    - {type: concat, inputs: [emb, input]}
    - {units: 16, activation: relu}
    - {units: 2, activation: softmax}
optimizer: {name: adam, lr: 0.01}
sparse: {optimizer: adam, lr: 0.01}
train: {epochs: 6, batch_size: 32}
EOF
expect_exit 0 "$PSTRAIN" train wd.yaml --output wd
expect_exit 0 "$PSTRAIN" eval wd/model.safetensors wd-test.csv
cp out.txt wd-eval.txt
check_eval wd-eval.txt wd/metrics.jsonl "hashed CSV columns"
expect_exit 0 "$PSTRAIN" predict wd/model.safetensors wd-test.csv --output wd-pred.csv
tail -n +2 wd-test.csv | cut -d, -f4 > wd-test.labels
check_predict wd-pred.csv wd-test.labels wd-eval.txt no yes
cut -d, -f1-3 wd-test.csv > wd-nolabel.csv
expect_exit 0 "$PSTRAIN" predict wd/model.safetensors wd-nolabel.csv --no-label
cmp -s out.txt wd-pred.csv || fail "--no-label predictions differ"

# Refused with one line: no tables beside the model (exit 4, as a missing model), no job
# (exit 4), another format than the job's and --compare (exit 2).
mkdir -p bare
cp lr/model.safetensors lr/job.yaml bare/
expect_exit 4 "$PSTRAIN" eval bare/model.safetensors test.svm
expect_in err.txt "^pstrain eval: bare/tables.safetensors: no such file: the model's embedding tables"
[ "$(wc -l < err.txt)" -eq 1 ] || fail "more than one line for missing tables"
expect_exit 4 "$PSTRAIN" predict bare/model.safetensors test.svm --output bare.csv
[ -e bare.csv ] && fail "predict wrote a file without the tables"
rm bare/job.yaml
cp lr/tables.safetensors bare/
expect_exit 4 "$PSTRAIN" eval bare/model.safetensors test.svm
expect_in err.txt "^pstrain eval: bare/model.safetensors: .*no job.yaml beside it"
expect_exit 2 "$PSTRAIN" eval lr/model.safetensors test.svm --format csv
expect_in err.txt "^pstrain eval: --format csv: this model reads its data as its run did \(data.format libsvm"
expect_exit 2 "$PSTRAIN" eval lr/model.safetensors test.svm --compare lr/model.safetensors
expect_in err.txt "^pstrain eval: --compare: not for a model with embedding tables"
echo "ok"
