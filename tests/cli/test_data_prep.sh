#!/usr/bin/env bash
# What a new user's data does (issue 16): data.limit on a file sorted by class trains on
# every class (a seeded, stratified subset, the same in every worker); a class id with no
# training sample warns alike whether it is the lowest or the highest (a class only the
# test file has is a class of the model); training data of one class warns; a gzipped
# CSV trains as the plain one does; a CSV of another separator gets a hint; 20 x 20 IDX
# digits padded or resized to 28 x 28 (data.image) fine-tune a model trained on 28 x 28.
source "$(dirname "$0")/lib.sh"

# 3 classes of 400 rows each, sorted by class; shift.csv: the ids 1..3 (no class 0);
# low.csv: classes 0 and 1 only.
/usr/bin/python3 - <<'PY'
import random
random.seed(1)
rows = [(random.gauss(2 * c, 0.4), random.gauss(-c, 0.4), c) for c in range(3) for _ in range(400)]
def write(name, keep=lambda c: True, shift=0):
    with open(name, "w") as f:
        f.write("x,y,label\n")
        for x, y, c in rows:
            if keep(c):
                f.write("%.4f,%.4f,%d\n" % (x, y, c + shift))
write("sorted.csv")
write("shift.csv", shift=1)
write("low.csv", keep=lambda c: c < 2)
PY
cat > job.yaml <<'YAML'
name: prep
data: {format: csv, train: sorted.csv, label: label, validation_split: 0}
model:
  layers: [{units: 16, activation: relu}, {units: 3, activation: softmax}]
train: {epochs: 20, batch_size: 16}
optimizer: {name: adam, lr: 0.02}
YAML

# 1. data.limit 60 of a file sorted by class: 20 samples of each class, accuracy well
# above chance (the first 60 rows were all class 0: accuracy 1/3, the run failing).
expect_exit 0 "$PSTRAIN" train job.yaml --data.limit 60 --data.test sorted.csv --output lim
expect_in err.txt "data: 60 training, 0 validation, 1200 test samples"
! grep -q "no training sample\|single class" err.txt || fail "data.limit 60 lost a class"
acc=$(json_field lim/metrics.jsonl test accuracy)
expect_ge "$acc" 0.9 "test accuracy with data.limit 60"
# The same seed draws the same subset: the same model, to the bit.
expect_exit 0 "$PSTRAIN" train job.yaml --data.limit 60 --data.test sorted.csv --output lim2
cmp -s lim/model.safetensors lim2/model.safetensors || fail "data.limit is not reproducible"
# Distributed, every worker draws that subset too (2 x 30 rows).
expect_exit 0 "$PSTRAIN" local job.yaml --data.limit 60 --servers 1 --workers 2 \
  --consistency bsp --output limd
expect_in err.txt "worker\[0\] info: partition 0 of 2: 30 samples"
expect_in err.txt "worker\[1\] info: partition 1 of 2: 30 samples"

# 6. A missing lowest class (ids 1..3) and a missing highest class (ids 0..1 in training,
# 0..2 in the test file) are treated alike: accepted, with a warning naming the class.
expect_exit 0 "$PSTRAIN" train job.yaml --data.train shift.csv --model.layers.1.units 4 \
  --output low-missing
expect_in err.txt "warn: 1 of the 4 classes \(ids 0..3\) has no training sample: class 0$"
expect_exit 0 "$PSTRAIN" train job.yaml --data.train low.csv --data.test sorted.csv \
  --output high-missing
expect_in err.txt "warn: 1 of the 3 classes \(ids 0..2\) has no training sample: class 2$"
expect_in err.txt "1200 test samples"
# ... and a model with fewer outputs than the classes is refused in both cases.
expect_exit 2 "$PSTRAIN" train job.yaml --data.train shift.csv --output x
expect_in err.txt "the output has 3 units but the data has 4 classes"
expect_exit 2 "$PSTRAIN" train job.yaml --data.train low.csv --data.test sorted.csv \
  --model.layers.1.units 2 --output x
expect_in err.txt "the output has 2 units but the data has 3 classes"
# One class only: a warning.
expect_exit 0 "$PSTRAIN" train job.yaml --data.limit 1 --output one
expect_in err.txt "warn: the training data holds a single class \([0-9]\): the model can only learn to predict it"

# 8. Gzipped CSV: the same model, to the bit, as from the plain file; ';' and tabs: a hint.
gzip -c sorted.csv > sorted.csv.gz
expect_exit 0 "$PSTRAIN" train job.yaml --data.train sorted.csv.gz --data.limit 60 \
  --data.test sorted.csv.gz --output gz
cmp -s lim/model.safetensors gz/model.safetensors || fail "the gzipped CSV trained another model"
sed 's/,/;/g' sorted.csv > semi.csv
expect_exit 3 "$PSTRAIN" train job.yaml --data.train semi.csv --output x
expect_in err.txt "semi.csv:1: 1 field; need at least one feature and a label column \(the line has ';': set data.delimiter ';'\)$"
expect_exit 0 "$PSTRAIN" train job.yaml --data.train semi.csv --data.delimiter ';' --output semi

# 10. data.image: a model pretrained on 28 x 28 images, fine-tuned on 20 x 20 ones (the
# centres of Fashion-MNIST test images, written as IDX here).
F=/usr/share/datasets/fashion-mnist
if [ -f $F/t10k-images-idx3-ubyte.gz ]; then
  /usr/bin/python3 - <<'PY'
import gzip, struct
F = "/usr/share/datasets/fashion-mnist"
img = gzip.open(F + "/t10k-images-idx3-ubyte.gz").read()
lab = gzip.open(F + "/t10k-labels-idx1-ubyte.gz").read()
n = 3000
out = bytearray(struct.pack(">IIII", 0x803, n, 20, 20))
for i in range(n):
    for y in range(4, 24):
        out += img[16 + i * 784 + y * 28 + 4:16 + i * 784 + y * 28 + 24]
open("small-images.idx", "wb").write(out)
open("small-labels.idx", "wb").write(struct.pack(">II", 0x801, n) + lab[8:8 + n])
PY
  IDX=(--data.format idx --epochs 2 --data.scale minmax --data.validation_split 0.2
       --model.layers.1.units 10 --model.layers.0.units 32 --optimizer adam --lr 0.002
       --data.label "" --data.test "" )
  SMALL=(--data.train small-images.idx --data.train_labels small-labels.idx)
  expect_exit 0 "$PSTRAIN" train job.yaml "${IDX[@]}" --data.train $F/t10k-images-idx3-ubyte.gz \
    --data.train_labels $F/t10k-labels-idx1-ubyte.gz --output pre
  # Without data.image the sizes are refused, naming both.
  expect_exit 3 "$PSTRAIN" train job.yaml "${IDX[@]}" "${SMALL[@]}" --model.init_from pre/model.safetensors \
    --output ft
  expect_in err.txt "tensor 'dense_0.weight': shape \[32, 784\] but the model needs \[32, 400\]"
  for fit in pad resize; do
    expect_exit 0 "$PSTRAIN" train job.yaml "${IDX[@]}" "${SMALL[@]}" --data.image.height 28 \
      --data.image.width 28 --data.image.fit $fit --model.init_from pre/model.safetensors --output ft-$fit
    expect_in err.txt "samples of 784 features"
    acc=$(json_field ft-$fit/metrics.jsonl validation accuracy)
    expect_ge "$acc" 0.6 "validation accuracy of 20 x 20 images ${fit}ded to 28 x 28"
  done
  expect_exit 0 "$PSTRAIN" train job.yaml "${IDX[@]}" "${SMALL[@]}" --data.image.height 28 \
    --data.image.width 28 --print-config
  expect_in out.txt "^  image:$"
  expect_exit 2 "$PSTRAIN" train job.yaml --data.image.height 28 --data.image.width 28 --output x
  expect_in err.txt "data.image: only for IDX images"
  expect_exit 2 "$PSTRAIN" train job.yaml "${IDX[@]}" "${SMALL[@]}" --data.image.height 28 --output x
  expect_in err.txt "data.image: height and width must both be in \[1, 4096\], got 28 x 0"
fi
echo "ok"
