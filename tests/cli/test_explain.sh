#!/usr/bin/env bash
# pstrain explain: a tabular model where only one CSV column decides the class ranks that
# column first by permutation importance (noise columns near 0), with the header's names;
# the confusion matrix's rows sum to the class counts and its trace / total is eval's
# accuracy; an MLP and a CNN on tiny 8x8 images (tests/cli/make_bars_idx.py) draw weights
# and saliency maps; every PNG is checked by its signature. Bad input (an image index out
# of range, weights for a tabular model, importance for an image model, a checkpoint that
# does not fit the data, an unknown --what): one line, non-zero exit, nothing written.
source "$(dirname "$0")/lib.sh"
command -v gnuplot > /dev/null || { echo "gnuplot is not installed (apt-get install gnuplot-nox)"; exit 77; }
PY=/usr/bin/python3

png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$1 is not a PNG"; }
one_error() { # EXIT PATTERN ARGS...: one stderr line naming pstrain explain, nothing written
  local code=$1 pat=$2; shift 2
  expect_exit "$code" "$PSTRAIN" explain "$@" --out NOTHING
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt >&2; fail "expected one error line"; }
  expect_in err.txt "^pstrain explain: .*$pat"
  [ ! -e NOTHING ] || fail "bad input wrote NOTHING/"
}

expect_exit 0 "$PSTRAIN" explain --help
expect_in out.txt "usage: pstrain explain CKPT DATA"

# ---- tabular: the label is sign(signal); noise_a and noise_b are noise
$PY - <<'PY'
import random
r = random.Random(5)
with open("tab.csv", "w") as f:
    f.write("noise_a,signal,noise_b,label\n")
    for i in range(600):
        a, s, b = (r.uniform(-1, 1) for _ in range(3))
        f.write("%.4f,%.4f,%.4f,%s\n" % (a, s, b, "yes" if s > 0 else "no"))
PY
cat > tab.yaml <<'YAML'
name: tab
data: {format: csv, train: tab.csv, label: label, validation_split: 0.2, scale: standardize}
model: {layers: [{units: 8, activation: tanh}, {units: 2, activation: softmax}], loss: categorical_crossentropy}
optimizer: {name: adam, lr: 0.02}
train: {batch_size: 32, epochs: 8}
YAML
expect_exit 0 "$PSTRAIN" train tab.yaml --output tab
CK=tab/model.safetensors
expect_exit 0 "$PSTRAIN" explain "$CK" tab.csv --label label --out T --json
png T/confusion.png
png T/importance.png
[ ! -e T/weights.png ] || fail "weights.png for a tabular model"
cp out.txt tab.json
expect_exit 0 "$PSTRAIN" eval "$CK" tab.csv --label label
acc=$(awk '/^accuracy:/ {print $2}' out.txt)
$PY - tab.json tab.csv "$acc" <<'PY' || fail "explain's numbers (tab.json) are wrong"
import csv, json, sys
j = json.load(open(sys.argv[1]))
labels = [r["label"] for r in csv.DictReader(open(sys.argv[2]))]
cm, cls = j["confusion"], j["classes"]
for k, row in enumerate(cm):  # rows: true class; they sum to the class counts
    assert sum(row) == labels.count(cls[k]), (cls[k], row)
trace = sum(cm[k][k] for k in range(len(cm)))
assert abs(trace / len(labels) - float(sys.argv[3])) < 1e-6, (trace, sys.argv[3])
assert abs(j["accuracy"] - float(sys.argv[3])) < 1e-6
cols = sorted(j["importance"]["columns"], key=lambda c: -c["drop"])
assert [c["name"] for c in cols][0] == "signal", cols
assert {c["name"] for c in cols} == {"noise_a", "signal", "noise_b"}, cols
assert cols[0]["drop"] > 0.3, cols
for c in cols[1:]:
    assert abs(c["drop"]) < 0.05, cols
print("importance:", [(c["name"], round(c["drop"], 4)) for c in cols])
PY
# the text form: the same table; seeded, so the same numbers again
expect_exit 0 "$PSTRAIN" explain "$CK" tab.csv --label label --out T --what importance
expect_in out.txt "^signal +0\.[0-9]+$"
expect_in out.txt "^wrote T/importance.png$"
expect_exit 0 "$PSTRAIN" explain "$CK" tab.csv --label label --out T --json
cmp -s out.txt tab.json || fail "importance is not reproducible with the same seed"

# ---- images: an MLP (dense first layer) and a CNN (conv2d first layer)
$PY "$SRC/tests/cli/make_bars_idx.py" tr 1 400
$PY "$SRC/tests/cli/make_bars_idx.py" te 2 100
for arch in mlp cnn; do
  if [ $arch = mlp ]; then
    layers='[{units: 6, activation: relu}, {units: 2, activation: softmax}]'
  else
    layers='[{type: conv2d, filters: 4, kernel: 3, activation: relu}, {type: flatten}, {units: 2, activation: softmax}]'
  fi
  cat > $arch.yaml <<YAML
name: bars-$arch
data: {format: idx, train: tr-images, train_labels: tr-labels, num_classes: 2, scale: minmax}
model: {layers: $layers, loss: categorical_crossentropy}
optimizer: {name: adam, lr: 0.01}
train: {batch_size: 32, epochs: 5}
YAML
  expect_exit 0 "$PSTRAIN" train $arch.yaml --output $arch
  expect_exit 0 "$PSTRAIN" explain $arch/model.safetensors te-images --labels te-labels \
    --out I$arch --images 0,1,7 --json
  for f in confusion weights saliency; do png I$arch/$f.png; done
  $PY - out.txt $arch <<'PY' || fail "$arch: explain's numbers are wrong"
import json, sys
j = json.load(open(sys.argv[1]))
assert [sum(r) for r in j["confusion"]] == [50, 50], j["confusion"]
assert [s["image"] for s in j["saliency"]] == [0, 1, 7]
assert [s["label"] for s in j["saliency"]] == [0, 1, 1]
w = j["weights"]
want = (6, [8, 8]) if sys.argv[2] == "mlp" else (4, [3, 3])
assert (w["tiles"], w["shape"]) == want, w
PY
done
expect_exit 0 "$PSTRAIN" eval mlp/model.safetensors te-images --labels te-labels
acc=$(awk '/^accuracy:/ {print $2}' out.txt)
expect_exit 0 "$PSTRAIN" explain mlp/model.safetensors te-images --labels te-labels --out I2 \
  --what confusion
expect_in out.txt "^accuracy: $acc$"

# ---- bad input
one_error 2 "image 100 is out of range" mlp/model.safetensors te-images --labels te-labels \
  --images 0,100
one_error 2 "--images: " mlp/model.safetensors te-images --labels te-labels --images 1,x
one_error 3 "weights and saliency are for image models" "$CK" tab.csv --label label \
  --what weights
one_error 3 "importance is for tabular models" cnn/model.safetensors te-images --labels te-labels \
  --what importance
one_error 3 "64 features, but the model takes 3" "$CK" te-images --labels te-labels
one_error 2 "'colours' is not one of" "$CK" tab.csv --label label --what confusion,colours
one_error 2 "--images is for saliency" "$CK" tab.csv --label label --images 0
exit 0
