#!/usr/bin/env bash
# data.augment (issue 18) on a slice of Fashion-MNIST (400 training, 200 test images):
#  - the CNN example trains with every transform on, and a second run of the same job
#    ends in the same checkpoint, byte for byte (seeded per rank, epoch and row);
#  - the transforms change the training (another checkpoint than without them; another
#    job seed, another one) but not evaluation: `pstrain eval` of the checkpoint gives
#    the test accuracy the run reported;
#  - two workers (pstrain local, bsp) train with it too;
#  - bad input (augmentation of CSV data, a negative flip probability, a rotation out of
#    range, a shift as large as the image) stops with one line naming the key, exit 2.
source "$(dirname "$0")/lib.sh"

FM=/usr/share/datasets/fashion-mnist
[ -f $FM/train-images-idx3-ubyte.gz ] || { echo "Fashion-MNIST not installed: skipped"; exit 77; }
/usr/bin/python3 "$SRC/tests/cli/fmnist_slice.py" "$FM" 400 200 \
  || fail "could not cut the Fashion-MNIST slice"
DATA=(--train train-images.gz --data.train_labels train-labels.gz --test t10k-images.gz
      --data.test_labels t10k-labels.gz --data.validation_split 0 --epochs 2
      --checkpoint.enabled false)
AUG=(--data.augment.shift 2 --data.augment.flip 0.5 --data.augment.rotate 10
     --data.augment.noise 0.05)
JOB=$SRC/examples/fashion-mnist-cnn.yaml

expect_exit 0 "$PSTRAIN" train "$JOB" "${DATA[@]}" "${AUG[@]}" --output a1
expect_exit 0 "$PSTRAIN" train "$JOB" "${DATA[@]}" "${AUG[@]}" --output a2
cmp -s a1/model.safetensors a2/model.safetensors || fail "two augmented runs differ"
expect_in a1/job.yaml "augment:"
expect_exit 0 "$PSTRAIN" train "$JOB" "${DATA[@]}" --output plain
cmp -s a1/model.safetensors plain/model.safetensors && fail "augmentation changed nothing"
expect_exit 0 "$PSTRAIN" train "$JOB" "${DATA[@]}" "${AUG[@]}" --seed 43 --output a3
cmp -s a1/model.safetensors a3/model.safetensors && fail "another seed, the same run"
acc=$(json_field a1/metrics.jsonl test accuracy)
echo "augmented CNN (400 images, 2 epochs) test accuracy: $acc"
expect_ge "$acc" 0.2 "augmented CNN accuracy on the slice (chance: 0.1)"
expect_exit 0 "$PSTRAIN" eval a1/model.safetensors t10k-images.gz --labels t10k-labels.gz
expect_in out.txt "accuracy +$(printf '%.4f' "$acc")"

# Distributed: every worker augments its own batches (its rank in the seed).
expect_exit 0 "$PSTRAIN" local "$JOB" "${DATA[@]}" "${AUG[@]}" --epochs 1 \
  --cluster.workers 2 --cluster.servers 1 --cluster.consistency bsp --output dist
[ -f dist/model.safetensors ] || fail "distributed augmented run wrote no model"

# Bad input: one line naming the key, exit 2.
bad() { # WHAT PATTERN ARGS...
  local what=$1 pat=$2; shift 2
  expect_exit 2 "$PSTRAIN" train "$@"
  expect_in err.txt "$pat"
  [ "$(grep -c 'pstrain train:' err.txt)" -eq 1 ] || fail "$what: not one error line"
}
bad csv "data.augment: only for images" "$SRC/examples/binary-moons.yaml" \
  --data.augment.flip 0.5 --output bad
bad flip "data.augment.flip: must be a probability in \[0, 1\], got -0.5" "$JOB" "${DATA[@]}" \
  --data.augment.flip -0.5 --output bad
bad rotate "data.augment.rotate: must be in \[0, 45\] degrees" "$JOB" "${DATA[@]}" \
  --data.augment.rotate 90 --output bad
bad noise "data.augment.noise:" "$JOB" "${DATA[@]}" --data.augment.noise -1 --output bad
bad shift "data.augment.shift: 28 pixels is not smaller than the 28 x 28 images" "$JOB" \
  "${DATA[@]}" --data.augment.shift 28 --output bad
bad key "data.augment" "$JOB" "${DATA[@]}" --data.augment.mirror 1 --output bad
echo "ok"
