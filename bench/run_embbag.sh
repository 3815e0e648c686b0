#!/usr/bin/env bash
# bench/run_embbag.sh -- an embedding_bag job on one thread: pstrain vs PyTorch.
#
# Writes a generated libsvm data set once (bench/torch_embbag.py --write-data: Zipf-like
# ids over 2^B ids, ~L ids per row with values, N rows; default 2^24, 40, 200000) and
# trains the same model on it both ways, interleaved R rounds (default 3, the order
# swapping every round):
#   pstrain  pstrain train: embedding_bag (dim 16, sum, weighted by the values) -> dense 1
#            -> sigmoid, binary cross-entropy, batch 256, adam lr 0.01 on the dense head and
#            on the table (sparse: adam)
#   torch    bench/torch_embbag.py: nn.EmbeddingBag(2^B, 16, mode="sum", sparse=True) with
#            per_sample_weights -> nn.Linear(16, 1), BCEWithLogitsLoss, batch 256,
#            torch.optim.SparseAdam on the table and Adam on the head, lr 0.01
# samples/s: pstrain's from metrics.jsonl (the train records' samples over their seconds,
# the epochs' own clocks, as run_dist_train.sh reads them), torch's from timing its
# epochs' loops (batch gathering included on both sides). lookups/s = samples/s x the
# data's entries per row (each entry is one row read forward and one gradient row added
# backward; the updates are one per distinct id of a batch). Every process runs one
# thread (OPENBLAS_NUM_THREADS=1; torch.set_num_threads(1) alone leaves OpenBLAS's threads
# running). Figures only: it never fails on them.
#
# usage: bench/run_embbag.sh [--rounds N] [--epochs E] [--rows N] [--id-bits B] [--build DIR]
#                            [--smoke]
#   --rounds N   rounds (default 3)
#   --epochs E   epochs per run (default 2)
#   --rows N     rows of the data set (default 200000)
#   --id-bits B  ids drawn from 2^B (default 24); torch's table has 2^B rows
#   --build DIR  CMake build directory holding pstrain (default: build)
#   --smoke      a check that it runs (ctest -L bench): 1 round, 1 epoch of 5000 rows over
#                2^16 ids; exits 77 (skipped) without PyTorch
# Build first:  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target pstrain
# shellcheck disable=SC2016  # the single-quoted $1, $2 ... below are awk columns
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=3
epochs=2
rows=200000
bits=24
build="$root/build"
smoke=
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --epochs) epochs=${2:?--epochs needs a value}; shift 2 ;;
    --rows) rows=${2:?--rows needs a value}; shift 2 ;;
    --id-bits) bits=${2:?--id-bits needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --smoke) smoke=1; rounds=1; epochs=1; rows=5000; bits=16; shift ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_embbag.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
BENCH=run_embbag.sh
source "$root/bench/lib.sh"
bench_ints --rounds/--epochs/--rows/--id-bits "$rounds" "$epochs" "$rows" "$bits"
pstrain="$build/pstrain"
bench_need_exe "$pstrain" pstrain "$build"
bench_need_torch "$smoke"

"$py" "$root/bench/torch_embbag.py" --write-data "$tmp/data" --rows "$rows" --id-bits "$bits" \
  > "$tmp/gen.txt"
cat > "$tmp/job.yaml" << EOF
name: embbag-bench
data: {format: libsvm, train: $tmp/data/train.svm, sparse: true, num_classes: 2}
model:
  layers:
    - {type: embedding_bag, name: emb, dim: 16, combiner: sum}
    - {units: 1, activation: sigmoid}
  loss: binary_crossentropy
optimizer: {name: adam, lr: 0.01}
sparse: {optimizer: adam, lr: 0.01}
train: {epochs: $epochs, batch_size: 256}
EOF

run_pstrain() { # DIR
  # Checkpoints off: the figures are of training, not of writing files.
  "$pstrain" train "$tmp/job.yaml" --output "$1" --checkpoint.enabled false > "$1.log" 2>&1 ||
    { echo "run_embbag.sh: pstrain failed; its log:" >&2; cat "$1.log" >&2; exit 1; }
}
run_torch() { # FILE
  "$py" "$root/bench/torch_embbag.py" --data "$tmp/data" --epochs "$epochs" > "$1" 2>&1 ||
    { echo "run_embbag.sh: torch_embbag.py failed:" >&2; cat "$1" >&2; exit 1; }
}
# pstrain's samples/s and last train loss: bench_train_rate DIR loss; torch's from its epoch lines.
torch_rate() {
  awk '$1 == "epoch" { for (i = 2; i <= NF; i++) { split($i, kv, "=");
         if (kv[1] == "samples") n += kv[2]; if (kv[1] == "seconds") s += kv[2];
         if (kv[1] == "loss") l = kv[2] } }
       END { printf "%.1f %.5f\n", n / s, l }' "$1"
}

per_row=$(sed -n 's/.*(\([0-9.]*\) per row).*/\1/p' "$tmp/gen.txt")
echo "# embedding_bag on one thread: pstrain vs PyTorch EmbeddingBag + SparseAdam, $epochs epoch(s)"
echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:   nproc $ncores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "threads:   OPENBLAS_NUM_THREADS=1 in every process, torch.set_num_threads(1)"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start; other work on the machine shows in the spread of the rounds)"
echo "data:      $(cut -d: -f2- "$tmp/gen.txt" | sed 's/^ *//')"
echo "model:     embedding_bag dim 16 (sum, weighted) -> dense 1 -> sigmoid, BCE, batch 256, adam lr 0.01 (table and head)"
echo "rounds:    $rounds, pstrain and torch alternating first"
echo
printf '| %6s | %10s | %10s | %13s | %13s | %13s | %s |\n' round "pstrain s/s" "torch s/s" \
  "pstrain lk/s" "torch lk/s" "pstrain/torch" "last-epoch loss pstrain/torch"
echo "|-------:|-----------:|-----------:|--------------:|--------------:|--------------:|:---|"
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then
    run_pstrain "$tmp/p$r"; run_torch "$tmp/t$r.txt"
  else
    run_torch "$tmp/t$r.txt"; run_pstrain "$tmp/p$r"
  fi
  read -r ps pl <<< "$(bench_train_rate "$tmp/p$r" loss)"
  read -r ts tl <<< "$(torch_rate "$tmp/t$r.txt")"
  echo "$ps $ts" >> "$tmp/rates"
  awk -v r="$r" -v ps="$ps" -v ts="$ts" -v pr="$per_row" -v pl="$pl" -v tl="$tl" 'BEGIN {
    printf "| %6d | %10.0f | %10.0f | %13.3g | %13.3g | %13.2f | %.4f / %.4f |\n",
      r, ps, ts, ps * pr, ts * pr, ps / ts, pl, tl }'
  rm -rf "$tmp/p$r"
done
med() { awk "{ print $1 }" "$tmp/rates" | bench_median; }
awk -v ps="$(med '$1')" -v ts="$(med '$2')" -v q="$(med '$1 / $2')" -v pr="$per_row" 'BEGIN {
  printf "| median | %10.0f | %10.0f | %13.3g | %13.3g | %13.2f | |\n", ps, ts, ps * pr, ts * pr, q
  printf "\nmedian pstrain/torch = %.2f   (target >= 2: %s)\n", q, (q >= 2 ? "met" : "missed")
  printf "median lookups/s: pstrain %.4g, torch %.4g (samples/s x %s entries per row)\n", ps * pr, ts * pr, pr }'
echo "Ratios are medians of the per-round ratios. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
