#!/usr/bin/env bash
# pstrain eval / predict on checkpoints: pstrain's own (moons, regression), read back by an
# independent numpy reader to 1e-5, and one written by numpy (weights "trained elsewhere",
# named classes in another order than the data's) whose predictions pstrain reproduces.
# Bad checkpoints and data stop with one line and exit 3/4, the checkpoint untouched.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
INTEROP=$SRC/tests/interop
MOONS=$SRC/examples/data/moons.csv
$PY -c 'import numpy' 2>/dev/null || { echo "python3-numpy is not installed"; exit 77; }

# one_error CMD: the single stderr line starts with "pstrain CMD: ".
one_error() {
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt >&2; fail "expected one error line"; }
  grep -q "^pstrain $1: " err.txt \
    || { cat err.txt >&2; fail "error line does not name pstrain $1"; }
}

expect_exit 0 "$PSTRAIN" train "$SRC/examples/binary-moons.yaml" --output run
CK=run/model.safetensors
sum0=$(sha256sum < "$CK")

# ---- eval: the figures of the model on the whole file
expect_exit 0 "$PSTRAIN" eval "$CK" "$MOONS" --label label
expect_in out.txt '^samples: 800$'
expect_in out.txt '^loss: [0-9.]+$'
expect_in out.txt '^f1 \(macro\): '
expect_in out.txt '^confusion matrix'
expect_in out.txt '^macro avg '
acc=$(awk '/^accuracy:/ {print $2}' out.txt)
echo "moons eval accuracy: $acc"
expect_ge "$acc" 0.95 "eval accuracy"

# ---- predict: 800 rows, file and stdout alike, consistent with eval's accuracy
expect_exit 0 "$PSTRAIN" predict "$CK" "$MOONS" --label label --output pred.csv
[ "$(wc -l < pred.csv)" -eq 801 ] || fail "predict wrote $(wc -l < pred.csv) lines, expected 801"
[ "$(head -1 pred.csv)" = "index,predicted,p_0,p_1" ] || fail "header: $(head -1 pred.csv)"
expect_exit 0 "$PSTRAIN" predict "$CK" "$MOONS" --label label
cmp -s out.txt pred.csv || fail "predict to stdout differs from --output"
$PY - "$MOONS" pred.csv "$acc" <<'PY' || fail "predict disagrees with eval's accuracy"
import csv, sys
labels = [r["label"] for r in csv.DictReader(open(sys.argv[1]))]
pred = [r["predicted"] for r in csv.DictReader(open(sys.argv[2]))]
got = sum(a == b for a, b in zip(labels, pred)) / len(labels)
sys.exit(0 if abs(got - float(sys.argv[3])) < 1e-6 else 1)
PY

# ---- the numpy reader reproduces pstrain's predictions on the first 100 rows
$PY "$INTEROP/read_pstrain.py" predict "$CK" "$MOONS" label --rows 100 > np.csv \
  || fail "read_pstrain.py predict failed"
$PY "$INTEROP/read_pstrain.py" compare np.csv pred.csv 1e-5 --rows 100 \
  || fail "numpy's predictions differ from pstrain's"

# ---- regression: eval reports MSE/MAE/R^2; numpy agrees on predictions
expect_exit 0 "$PSTRAIN" train "$SRC/examples/regression.yaml" --output reg --epochs 20
expect_exit 0 "$PSTRAIN" eval reg/model.safetensors "$SRC/examples/data/regression.csv" --label y
expect_in out.txt '^mse: '
expect_in out.txt '^mae: '
expect_ge "$(awk '/^r2:/ {print $2}' out.txt)" 0.9 "regression eval R^2"
expect_exit 0 "$PSTRAIN" predict reg/model.safetensors "$SRC/examples/data/regression.csv" \
  --label y --output regpred.csv
[ "$(head -1 regpred.csv)" = "index,prediction" ] \
  || fail "regression header: $(head -1 regpred.csv)"
[ "$(wc -l < regpred.csv)" -eq 1001 ] || fail "regression predictions: $(wc -l < regpred.csv) lines"
$PY "$INTEROP/read_pstrain.py" predict reg/model.safetensors "$SRC/examples/data/regression.csv" \
  y --rows 100 > regnp.csv || fail "read_pstrain.py on the regression model failed"
$PY "$INTEROP/read_pstrain.py" compare regnp.csv regpred.csv 1e-5 --rows 100 \
  || fail "numpy's regression predictions differ from pstrain's"

# ---- a checkpoint written by numpy: classes named in the file's order "inner,outer", the
# data naming them in order of appearance (outer first), so pstrain must match by name.
sed 's/,0$/,inner/; s/,1$/,outer/' "$MOONS" > named.csv
for variant in crc no-crc; do
  extra=; [ $variant = no-crc ] && extra=--no-crc
  $PY "$INTEROP/write_safetensors.py" py.safetensors named.csv label --names inner,outer \
    --seed 3 $extra > expect.csv || fail "write_safetensors.py failed"
  expect_exit 0 "$PSTRAIN" predict py.safetensors named.csv --label label --output got.csv
  [ "$(head -1 got.csv)" = "index,predicted,p_inner,p_outer" ] \
    || fail "header: $(head -1 got.csv)"
  $PY "$INTEROP/read_pstrain.py" compare expect.csv got.csv 1e-5 \
    || fail "pstrain's predictions of the numpy checkpoint ($variant) differ from numpy's"
  expect_exit 0 "$PSTRAIN" eval py.safetensors named.csv --label label
  $PY - named.csv expect.csv "$(awk '/^accuracy:/ {print $2}' out.txt)" <<'PY' \
    || fail "eval of the numpy checkpoint: accuracy does not match numpy's predictions"
import csv, sys
labels = [r["label"] for r in csv.DictReader(open(sys.argv[1]))]
pred = [r["predicted"] for r in csv.DictReader(open(sys.argv[2]))]
got = sum(a == b for a, b in zip(labels, pred)) / len(labels)
sys.exit(0 if abs(got - float(sys.argv[3])) < 1e-6 else 1)
PY
done

# ---- and it fine-tunes: the same architecture, started from the numpy weights by name.
cat > ft.yaml <<YAML
data: {format: csv, train: named.csv, label: label, header: yes, validation_split: 0.2,
       scale: standardize}
model:
  init_from: py.safetensors
  layers:
    - {units: 8, name: enc}
    - {type: activation, activation: relu}
    - {units: 6, activation: tanh}
    - {units: 2, activation: softmax}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 5, batch_size: 32}
output: {dir: ft}
YAML
names=$($PY -c "import json,struct,sys; b=open('py.safetensors','rb').read(); n=struct.unpack('<Q',b[:8])[0]; print(' '.join(sorted(k for k in json.loads(b[8:8+n]) if k.endswith('.weight'))))")
[ "$names" = "dense_1.weight dense_2.weight enc.weight" ] || fail "numpy checkpoint tensors: $names"
expect_exit 0 "$PSTRAIN" train ft.yaml
expect_in err.txt "init_from py.safetensors: 6 tensor\\(s\\) loaded"
acc=$(json_field ft/metrics.jsonl validation accuracy)
expect_ge "$acc" 0.9 "fine-tuned numpy checkpoint accuracy"

# ---- unlabelled data: every column a feature; the same predictions as with the label.
cut -d, -f1,2 "$MOONS" > nolabel.csv
expect_exit 0 "$PSTRAIN" predict "$CK" nolabel.csv --no-label --output nl.csv
expect_exit 0 "$PSTRAIN" predict "$CK" "$MOONS" --label label --output wl.csv
cmp -s nl.csv wl.csv || fail "predictions without the label column differ from those with it"
expect_exit 2 "$PSTRAIN" predict "$CK" nolabel.csv --no-label --label label
expect_in err.txt "no-label is for CSV data"

# ---- bad checkpoints: one line, exit 3 (bad contents) or 4 (unreadable)
expect_exit 4 "$PSTRAIN" eval missing.safetensors "$MOONS" --label label
one_error eval; expect_in err.txt "missing.safetensors: cannot open"

head -c 700 "$CK" > trunc.safetensors
expect_exit 3 "$PSTRAIN" eval trunc.safetensors "$MOONS" --label label
one_error eval; expect_in err.txt "trunc.safetensors: truncated"

flip() { # FILE OFFSET: xor one byte
  $PY - "$1" "$2" <<'PY'
import sys
p, o = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
b[o] ^= 0x5A
open(p, "wb").write(b)
PY
}
cp "$CK" data-flip.safetensors; flip data-flip.safetensors $(( $(stat -c %s "$CK") - 3 ))
expect_exit 3 "$PSTRAIN" eval data-flip.safetensors "$MOONS" --label label
one_error eval; expect_in err.txt "corrupted: tensor 'preprocess.mul' fails its checksum"
cp "$CK" head-flip.safetensors; flip head-flip.safetensors 200
expect_exit 3 "$PSTRAIN" predict head-flip.safetensors "$MOONS" --label label
one_error predict; expect_in err.txt "head-flip.safetensors: "

$PY "$INTEROP/write_safetensors.py" nan.safetensors named.csv label --names inner,outer --nan \
  > /dev/null
expect_exit 3 "$PSTRAIN" eval nan.safetensors named.csv --label label
one_error eval; expect_in err.txt "tensor 'dense_1.weight': element \[1, 3\] is NaN"

printf 'not a checkpoint at all' > text.safetensors
expect_exit 3 "$PSTRAIN" eval text.safetensors "$MOONS" --label label
one_error eval

# A failing predict leaves an existing output file as it was.
cp pred.csv keep.csv
expect_exit 3 "$PSTRAIN" predict trunc.safetensors "$MOONS" --label label --output pred.csv
cmp -s pred.csv keep.csv || fail "a failed predict changed its --output file"
ls | grep -q '\.tmp\.' && fail "a temporary file was left behind"

# ---- bad data for a good checkpoint
awk -F, 'BEGIN {OFS=","} {print $1, $2, $1, $3}' "$MOONS" > wide.csv
expect_exit 3 "$PSTRAIN" eval "$CK" wide.csv --label label
one_error eval; expect_in err.txt "wide.csv: 3 features, but the model takes 2"
expect_exit 3 "$PSTRAIN" eval "$CK" named.csv --label label
one_error eval; expect_in err.txt "class labels are names, but the model's classes are numbers"
sed 's/,inner$/,middle/' named.csv > other.csv
expect_exit 3 "$PSTRAIN" eval py.safetensors other.csv --label label
one_error eval; expect_in err.txt "class 'middle' is not a class of the model"
expect_exit 4 "$PSTRAIN" predict "$CK" no-such.csv --label label
one_error predict

# ---- usage
expect_exit 0 "$PSTRAIN" eval --help; expect_in out.txt "^usage: pstrain eval CKPT DATA"
expect_exit 0 "$PSTRAIN" predict --help; expect_in out.txt "--output FILE"
expect_exit 2 "$PSTRAIN" eval "$CK"; one_error eval
expect_exit 2 "$PSTRAIN" eval "$CK" "$MOONS" --bogus 1; one_error eval
expect_exit 2 "$PSTRAIN" eval "$CK" "$MOONS" --output x.csv; one_error eval
expect_exit 2 "$PSTRAIN" predict "$CK" "$MOONS" --format parquet; one_error predict

[ "$(sha256sum < "$CK")" = "$sum0" ] || fail "the checkpoint changed"
echo "ok"
