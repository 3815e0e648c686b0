#!/usr/bin/env bash
# Fine-tuning (docs/finetuning.md) on the moons example:
#  - model.init_from loads the pretrained body by name; a renamed head starts fresh;
#  - frozen layers end exactly as pretrained, in one process and distributed, and frozen
#    ranges are not sent (the worker says how much that saves);
#  - bsp with 1 worker equals single-process training, with W workers the averaged-gradient
#    reference (tests/bsp_reference.c), per-layer lr multipliers and a warmup + cosine
#    schedule included;
#  - bad input (missing file, reshaped layer, frozen layer the file lacks, no name in
#    common, negative lr_mult, unknown class) stops with one line and the right exit code,
#    and the pretrained checkpoint is left as it was.
source "$(dirname "$0")/lib.sh"
REF=$3
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"

cat > pre.yaml <<EOF
name: pre
seed: 7
data: {format: csv, train: $SRC/examples/data/moons.csv, label: label, header: yes,
       num_classes: 2, scale: standardize}
model:
  layers:
    - {units: 16, activation: tanh, name: body1}
    - {units: 16, activation: tanh, name: body2}
    - {units: 1, activation: sigmoid}
  loss: binary_crossentropy
optimizer: {name: adam, lr: 0.01}
train: {batch_size: 32, epochs: 5}
output: {dir: pre}
EOF
# The head becomes a 2-class softmax named "head" (so it is not loaded); body1 frozen,
# body2 at half the rate, the head at twice; labels swapped and 300 samples kept.
cat > ft.yaml <<EOF
name: ft
seed: 3
data: {format: csv, train: $SRC/examples/data/moons.csv, label: label, header: yes,
       num_classes: 2, scale: standardize, classes: [1, 0], limit: 300}
model:
  init_from: pre/model.safetensors
  layers:
    - {units: 16, activation: tanh, name: body1, trainable: false}
    - {units: 16, activation: tanh, name: body2, lr_mult: 0.5}
    - {units: 2, activation: softmax, name: head, lr_mult: 2}
optimizer: {name: adam, lr: 0.01, schedule: cosine, warmup_steps: 5}
train: {batch_size: 32, epochs: 3}
output: {dir: ft}
EOF

expect_exit 0 "$PSTRAIN" train pre.yaml
PRE_SUM=$(md5sum < pre/model.safetensors)

expect_exit 0 "$PSTRAIN" train ft.yaml
expect_in err.txt "data: 300 training"
expect_in err.txt "init_from pre/model.safetensors: 4 tensor\(s\) loaded; 2 freshly initialised \(head.weight, head.bias\); 2 skipped, not in the model \(dense_2.weight, dense_2.bias\)"
expect_in err.txt "frozen: 48 of 354 parameters are not trained"

# Frozen tensors are the pretrained ones, bit for bit; trained ones moved.
frozen_check() { # MODEL: body1 equal to pre's, body2 different
  /usr/bin/python3 - "$1" <<'PY' || fail "frozen layer check on $1"
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], "<f4")
            for k, v in h.items() if k != "__metadata__"}
pre, ft = load("pre/model.safetensors"), load(sys.argv[1])
for k in ("body1.weight", "body1.bias"):
    assert np.array_equal(pre[k], ft[k]), f"{k} changed"
assert not np.array_equal(pre["body2.weight"], ft["body2.weight"]), "body2 did not train"
assert ft["head.weight"].shape == (2 * 16,), ft["head.weight"].shape
PY
}
frozen_check ft/model.safetensors

# bsp with 1 worker on 2 servers: the same weights as one process.
expect_exit 0 "$PSTRAIN" local ft.yaml --consistency bsp --servers 2 --workers 1 --output dist1
expect_in err.txt "worker\[0\] info: frozen: 48 of 354 parameters; 0.4 kB per step not sent"
expect_in err.txt "server\[0\] info: frozen: 48 of the shard's"
$COMPARE ft/model.safetensors dist1/model.safetensors 0 \
  || fail "bsp fine-tuning with 1 worker differs from single-process fine-tuning"
frozen_check dist1/model.safetensors

# 3 workers on 3 servers: the averaged-gradient reference with the same groups.
expect_exit 0 "$PSTRAIN" local ft.yaml --consistency bsp --servers 3 --workers 3 --output dist3
expect_exit 0 "$REF" ft.yaml 3 ref3.safetensors cluster.consistency=bsp cluster.servers=3
$COMPARE ref3.safetensors dist3/model.safetensors 0 \
  || fail "bsp fine-tuning with 3 workers differs from the averaged-gradient reference"
frozen_check dist3/model.safetensors
# The reference itself tells a different multiplier apart.
expect_exit 0 "$REF" ft.yaml 3 other.safetensors cluster.consistency=bsp \
  model.layers.1.lr_mult=1
if $COMPARE other.safetensors dist3/model.safetensors 1e-5 > /dev/null; then
  fail "the comparison does not tell another lr_mult apart"
fi

# Asynchronous training keeps frozen layers too.
expect_exit 0 "$PSTRAIN" local ft.yaml --consistency asp --servers 2 --workers 2 --output async
frozen_check async/model.safetensors

# Bad input: one line naming the problem, the exit code of its kind, nothing written.
bad() { # CODE PATTERN ARGS...
  local code=$1 pattern=$2; shift 2
  expect_exit "$code" "$PSTRAIN" train ft.yaml --output bad "$@"
  expect_in err.txt "$pattern"
  [ "$(grep -c '^pstrain train:' err.txt)" -eq 1 ] || fail "not one error line: $*"
  [ ! -e bad/model.safetensors ] || fail "a model was written despite: $*"
}
bad 4 "pstrain train: model.init_from: nope.safetensors: cannot open" --model.init_from nope.safetensors
bad 3 "tensor 'body2.weight': shape \[16, 16\] but the model needs \[8, 16\]" --model.layers.1.units 8
bad 2 "model.layers.0: frozen, but pre/model.safetensors has no tensor 'bdy1.weight'" --model.layers.0.name bdy1
bad 3 "holds none of the model's parameters" --model.layers.0.name x --model.layers.0.trainable true --model.layers.1.name y
bad 2 "model.layers.1.lr_mult: must be >= 0" --model.layers.1.lr_mult -1
bad 2 "data.classes: entry 1: class 5, but data.num_classes is 2" --data.classes 1,5
bad 2 "model.layers.2.units: the output layer has 2 units but the length of data.classes is 1" --data.classes 1
bad 2 "model.layers: every dense layer is frozen" --model.layers.1.trainable false --model.layers.2.lr_mult 0
# Distributed: the same refusal, from the workers, and the job stops.
expect_exit 3 "$PSTRAIN" local ft.yaml --consistency bsp --model.layers.1.units 8 --output bad
expect_in err.txt "tensor 'body2.weight': shape \[16, 16\] but the model needs \[8, 16\]"
[ "$(md5sum < pre/model.safetensors)" = "$PRE_SUM" ] || fail "the pretrained checkpoint changed"
echo "ok"
