#!/usr/bin/env bash
# bench/run_augment.sh -- data augmentation on a small-data run (issue 18): the CNN of
# examples/fashion-mnist-cnn.yaml trained on N Fashion-MNIST training images
# (data.limit: a seeded, stratified subset) for E epochs, without augmentation and with
# each augmentation setting below, for every seed; the full 10000-image test set judges
# each run. Same epochs, same subset (data.limit is drawn from the seed alone), same
# initial weights per seed: only data.augment differs.
#   none     no augmentation
#   shift    data.augment {shift: 2}
#   geom     {shift: 2, rotate: 10, flip: 0.5}  (a mirrored garment is still that garment)
#   all      geom + {noise: 0.05}               (features in [0, 1]: data.scale minmax)
# Prints one line per run and a mean per setting. Figures only: it never fails on them.
#
# usage: bench/run_augment.sh [--limit N] [--epochs E] [--seeds "S1 S2 ..."]
#                             [--settings "none geom ..."] [--job FILE] [--build DIR]
#   --limit N    training images (default 1000)
#   --epochs E   epochs (default 15)
#   --seeds L    job seeds (default "1 2 3")
#   --settings L which of the settings above, in this order (default "none shift geom all")
#   --job FILE   another image job instead of the CNN (examples/fashion-mnist.yaml: the MLP)
#   --build DIR  CMake build directory holding pstrain (default: build)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
limit=1000
epochs=15
seeds="1 2 3"
build="$root/build"
order="none shift geom all"
job="$root/examples/fashion-mnist-cnn.yaml"
while [ $# -gt 0 ]; do
  case "$1" in
    --limit) limit=${2:?--limit needs a value}; shift 2 ;;
    --epochs) epochs=${2:?--epochs needs a value}; shift 2 ;;
    --seeds) seeds=${2:?--seeds needs a list}; shift 2 ;;
    --settings) order=${2:?--settings needs a list}; shift 2 ;;
    --job) job=${2:?--job needs a file}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_augment.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
  { echo "run_augment.sh: Fashion-MNIST is not installed (dataset-fashion-mnist)" >&2; exit 77; }
export OPENBLAS_NUM_THREADS=1
work=$(mktemp -d /tmp/pstrain-augment.XXXXXX)
trap 'rm -rf "$work"' EXIT

declare -A setting=(
  [none]=""
  [shift]="--data.augment.shift 2"
  [geom]="--data.augment.shift 2 --data.augment.rotate 10 --data.augment.flip 0.5"
  [all]="--data.augment.shift 2 --data.augment.rotate 10 --data.augment.flip 0.5 --data.augment.noise 0.05"
)
echo "$(basename "$job"), $limit training images, $epochs epochs, test set 10000 images"
for s in $seeds; do
  for name in $order; do
    # shellcheck disable=SC2086
    "$build/pstrain" train "$job" --seed "$s" \
      --data.limit "$limit" --data.validation_split 0 --epochs "$epochs" \
      --checkpoint.enabled false ${setting[$name]} --output "$work/$name-$s" \
      > /dev/null 2> "$work/$name-$s.err" ||
      { tail -5 "$work/$name-$s.err" >&2; exit 1; }
    acc=$(/usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print([r for r in rows if r.get("split") == "test"][-1]["accuracy"])' "$work/$name-$s/metrics.jsonl")
    printf '%-6s seed %-3s test accuracy %.4f\n' "$name" "$s" "$acc"
    echo "$name $acc" >> "$work/all.txt"
  done
done
echo "mean over seeds ($seeds):"
for name in $order; do
  awk -v n="$name" '$1 == n { s += $2; k++ } END { printf "  %-6s %.4f  (%d runs)\n", n, s / k, k }' \
    "$work/all.txt"
done
