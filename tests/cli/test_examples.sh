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

# The CNN example (issue 18) on a small slice of Fashion-MNIST (1000 training and 500 test
# images, 2 epochs: seconds, not the full run's minutes): it trains, beats chance clearly,
# and `pstrain eval` rebuilds the image model from its checkpoint (input_shape) to the same
# test accuracy.
FM=/usr/share/datasets/fashion-mnist
if [ -f $FM/train-images-idx3-ubyte.gz ]; then
  /usr/bin/python3 "$SRC/tests/cli/fmnist_slice.py" "$FM" 1000 500 \
    || fail "could not cut the Fashion-MNIST slice"
  expect_exit 0 "$PSTRAIN" train "$SRC/examples/fashion-mnist-cnn.yaml" --epochs 2 \
    --train train-images.gz --data.train_labels train-labels.gz --test t10k-images.gz \
    --data.test_labels t10k-labels.gz --output out/cnn
  acc=$(json_field out/cnn/metrics.jsonl test accuracy)
  echo "fashion-mnist-cnn (1000 images, 2 epochs) test accuracy: $acc"
  expect_ge "$acc" 0.55 "fashion-mnist-cnn accuracy on the slice"
  expect_exit 0 "$PSTRAIN" eval out/cnn/model.safetensors t10k-images.gz --labels t10k-labels.gz
  expect_in out.txt "accuracy +$(printf '%.4f' "$acc")"
  # data.image resizes the images, and the conv layers see the new (1, 32, 32): the flatten
  # after two conv+pool stages gives (64, 6, 6) = 2304 features (28 x 28 gives 1600), and
  # the checkpoint records the resized input shape.
  expect_exit 0 "$PSTRAIN" train "$SRC/examples/fashion-mnist-cnn.yaml" --epochs 1 \
    --train train-images.gz --data.train_labels train-labels.gz --test t10k-images.gz \
    --data.test_labels t10k-labels.gz --data.image.height 32 --data.image.width 32 \
    --data.image.fit resize --output out/cnn32
  /usr/bin/python3 - out/cnn32/model.safetensors <<'PY' || fail "resized CNN checkpoint"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
w = [v["shape"] for k, v in h.items() if k.endswith("dense_0.weight")]
assert w == [[128, 2304]], w
assert "[1, 32, 32]" in json.dumps(h["__metadata__"]).replace('\\"', '"') or \
    '"input_shape":[1,32,32]' in h["__metadata__"]["pstrain.model"].replace(" ", ""), h["__metadata__"]
PY
  # The CNN distributed (pstrain local: 2 workers, 1 server, bsp) with batchnorm: its
  # running statistics are state the servers average over the workers (each clock's mean,
  # which every worker adopts; tests/cli/test_bn_dist.sh checks the server's side): worker
  # 0's final evaluation uses them, model.safetensors holds them (not the initial 0 and 1),
  # and `pstrain eval` of the model gives the same test accuracy.
  cat > cnn-bn.yaml <<'EOF'
name: cnn-bn-dist
seed: 42
data: {format: idx, train: train-images.gz, train_labels: train-labels.gz,
       test: t10k-images.gz, test_labels: t10k-labels.gz, num_classes: 10,
       validation_split: 0.1, scale: minmax}
model:
  layers:
    - {type: conv2d, filters: 8, kernel: 3}
    - {type: batchnorm}
    - {type: activation, activation: relu}
    - {type: max_pool2d, pool: 2}
    - {type: conv2d, filters: 16, kernel: 3, activation: relu}
    - {type: max_pool2d, pool: 2}
    - {type: flatten}
    - {type: dropout, rate: 0.25}
    - {units: 10, activation: softmax}
  loss: categorical_crossentropy
optimizer: {name: adam, lr: 0.002}
train: {batch_size: 32, epochs: 2}
cluster: {servers: 1, workers: 2, consistency: bsp}
EOF
  expect_exit 0 "$PSTRAIN" local cnn-bn.yaml --output out/cnn-dist
  expect_in err.txt "local info: job finished: all 4 processes exited 0"
  acc=$(json_field out/cnn-dist/metrics.jsonl test accuracy)
  echo "distributed CNN with batchnorm (2 workers, bsp) test accuracy: $acc"
  expect_ge "$acc" 0.3 "distributed CNN accuracy on the slice (chance: 0.1)"
  /usr/bin/python3 - out/cnn-dist/model.safetensors <<'PY' || fail "batchnorm statistics of the distributed CNN"
import json, struct, sys
import numpy as np
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    data = f.read()
def get(name):
    a, b = h[name]["data_offsets"]
    return np.frombuffer(data[a:b], dtype=np.float32)
mean, var = get("batchnorm_0.running_mean"), get("batchnorm_0.running_var")
assert np.abs(mean).max() > 1e-3 and np.abs(var - 1).max() > 1e-2, (mean, var)
assert (var > 0).all(), var
PY
  expect_exit 0 "$PSTRAIN" eval out/cnn-dist/model.safetensors t10k-images.gz --labels t10k-labels.gz
  expect_in out.txt "accuracy +$(printf '%.4f' "$acc")"
else
  echo "dataset-fashion-mnist not installed: skipping the CNN example"
fi

# The default job's file is examples/fashion-mnist.yaml: both must be the same job.
"$PSTRAIN" train --print-config > a.yaml
"$PSTRAIN" train "$SRC/examples/fashion-mnist.yaml" --print-config > b.yaml
cmp -s a.yaml b.yaml || fail "built-in default job differs from examples/fashion-mnist.yaml"
echo "ok"
