#!/usr/bin/env bash
# bench/run_conv.sh -- conv training on one thread: pstrain vs PyTorch, the same CNN.
#
# The model of examples/fashion-mnist-cnn.yaml (conv 32 3x3 relu, maxpool 2, conv 64 3x3
# relu, maxpool 2, flatten, dropout 0.5, dense 128 relu, dense 10 softmax; Adam lr 1e-3,
# batch 128) trained on the first 128 x S Fashion-MNIST training images (default S = 60
# steps), both ways, interleaved R rounds (default 3, the order swapping every round):
#   pstrain  pstrain train on that slice (IDX, minmax to [0, 1], no validation, one epoch
#            of S steps, checkpoints off); samples/s from metrics.jsonl (the train
#            record's samples over its seconds: the epoch's own clock, batch gathering
#            included)
#   torch    bench/torch_cnn.py --steps S: the same layers in torch.nn, S timed steps after
#            3 warm-up ones
# Every process runs one thread (OPENBLAS_NUM_THREADS=1; torch.set_num_threads(1) alone
# leaves OpenBLAS's threads running). Figures only: it never fails on them.
#
# usage: bench/run_conv.sh [--rounds N] [--steps S] [--build DIR] [--smoke]
#   --rounds N   rounds (default 3)
#   --steps S    training steps of 128 images per run (default 60)
#   --build DIR  CMake build directory holding pstrain (default: build)
#   --smoke      a check that it runs (ctest -L bench): 1 round of 4 steps; exits 77
#                (skipped) without PyTorch or Fashion-MNIST
# Build first:  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target pstrain
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=3
steps=60
build="$root/build"
smoke=
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --steps) steps=${2:?--steps needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --smoke) smoke=1; rounds=1; steps=4; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_conv.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
BENCH=run_conv.sh
source "$root/bench/lib.sh"
bench_ints --rounds/--steps "$rounds" "$steps"
pstrain="$build/pstrain"
fm=$FMNIST
bench_need_exe "$pstrain" pstrain "$build"
bench_need_torch "$smoke"
bench_need_fmnist "$smoke"

# The slice torch_cnn.py trains on: the first 128 x (S + 3) images (its 3 warm-up steps
# too; pstrain takes the first 128 x S of them in its own shuffled order).
n=$((128 * steps))
(cd "$tmp" && "$py" "$root/tests/cli/fmnist_slice.py" "$fm" "$n" 0)

run_pstrain() { # DIR
  "$pstrain" train "$root/examples/fashion-mnist-cnn.yaml" --epochs 1 --train "$tmp/train-images.gz" \
    --data.train_labels "$tmp/train-labels.gz" --test "" --data.test_labels "" --data.validation_split 0 \
    --optimizer.schedule constant --checkpoint.enabled false --output "$1" > "$1.log" 2>&1 ||
    { echo "run_conv.sh: pstrain failed; its log:" >&2; cat "$1.log" >&2; exit 1; }
}
run_torch() { # FILE
  "$py" "$root/bench/torch_cnn.py" --steps "$steps" --data "$fm" > "$1" 2>&1 ||
    { echo "run_conv.sh: torch_cnn.py failed:" >&2; cat "$1" >&2; exit 1; }
}
torch_rate() { sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p' "$1"; }

echo "# conv training on one thread: pstrain vs PyTorch, examples/fashion-mnist-cnn.yaml's model"
echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:   nproc $ncores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r)"
echo "threads:   OPENBLAS_NUM_THREADS=1 in every process, torch.set_num_threads(1)"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start; other work on the machine shows in the spread of the rounds)"
echo "work:      $steps steps of batch 128 per run ($n Fashion-MNIST images), adam lr 0.001"
echo "rounds:    $rounds, pstrain and torch alternating first"
echo
printf '| %6s | %11s | %10s | %13s |\n' round "pstrain s/s" "torch s/s" "pstrain/torch"
echo "|-------:|------------:|-----------:|--------------:|"
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then
    run_pstrain "$tmp/p$r"; run_torch "$tmp/t$r.txt"
  else
    run_torch "$tmp/t$r.txt"; run_pstrain "$tmp/p$r"
  fi
  ps=$(bench_train_rate "$tmp/p$r"); ts=$(torch_rate "$tmp/t$r.txt")
  echo "$ps $ts" >> "$tmp/rates"
  awk -v r="$r" -v ps="$ps" -v ts="$ts" 'BEGIN {
    printf "| %6d | %11.1f | %10.1f | %13.2f |\n", r, ps, ts, ps / ts }'
  rm -rf "$tmp/p$r"
done
med() { awk "{ print $1 }" "$tmp/rates" | bench_median; }
awk -v ps="$(med '$1')" -v ts="$(med '$2')" -v q="$(med '$1 / $2')" 'BEGIN {
  printf "| median | %11.1f | %10.1f | %13.2f |\n", ps, ts, q
  printf "\nmedian pstrain/torch = %.2f   (samples/s: pstrain %.1f, torch %.1f)\n", q, ps, ts }'
echo "Ratios are medians of the per-round ratios. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
