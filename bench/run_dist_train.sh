#!/usr/bin/env bash
# bench/run_dist_train.sh -- distributed training throughput against single-process training.
#
# Trains the default job (Fashion-MNIST MLP 784-256-128-10, adam, batch 128) for E epochs
# (default 2) four ways, interleaved R rounds (default 5), the order rotating every round:
#   single    pstrain train
#   bsp       pstrain local --servers 1 --workers 1 --consistency bsp
#   asp       pstrain local --servers 1 --workers 1 --consistency asp
#   asp-pipe  the same with --cluster.pipeline true (the next step's gradient is computed
#             while the previous step's pull is in flight)
# and reads samples/s from each run's metrics.jsonl: the train records' samples over their
# seconds (the epochs' own clocks: data loading, validation and the final test are left
# out on both sides). Prints per-round figures and the medians of the ratios to single.
# Every process runs one BLAS thread (OPENBLAS_NUM_THREADS=1). Figures only: it never
# fails on them.
#
# usage: bench/run_dist_train.sh [--rounds N] [--epochs E] [--build DIR] [--smoke]
#   --rounds N  rounds (default 5)
#   --epochs E  epochs per run (default 2)
#   --build DIR CMake build directory holding pstrain (default: build)
#   --smoke     a check that it runs (ctest -L bench): 1 round of examples/binary-moons.yaml
#               (a few seconds, no data set needed) instead of the default job
# Build first:  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target pstrain
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=5
epochs=2
build="$root/build"
job=()   # pstrain's JOB.yaml argument: none, the default job
what="default job (Fashion-MNIST MLP, adam, batch 128)"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --epochs) epochs=${2:?--epochs needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --smoke) rounds=1; job=("$root/examples/binary-moons.yaml"); what="examples/binary-moons.yaml (smoke)"; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_dist_train.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
BENCH=run_dist_train.sh
source "$root/bench/lib.sh"
bench_ints --rounds/--epochs "$rounds" "$epochs"
pstrain="$build/pstrain"
bench_need_exe "$pstrain" pstrain "$build"
[ ${#job[@]} -gt 0 ] || bench_need_fmnist ""

kinds=(single bsp asp asp-pipe)
run() { # run KIND DIR
  # Checkpoints off: the figures are of training, not of writing files.
  local common=(--epochs "$epochs" --output "$2" --checkpoint.enabled false)
  case "$1" in
    single) "$pstrain" train "${job[@]}" "${common[@]}" ;;
    bsp) "$pstrain" local "${job[@]}" "${common[@]}" --servers 1 --workers 1 --consistency bsp ;;
    asp) "$pstrain" local "${job[@]}" "${common[@]}" --servers 1 --workers 1 --consistency asp ;;
    asp-pipe) "$pstrain" local "${job[@]}" "${common[@]}" --servers 1 --workers 1 --consistency asp \
                --cluster.pipeline true ;;
  esac > "$2.log" 2>&1 || { echo "run_dist_train.sh: $1 failed; its log:" >&2; cat "$2.log" >&2; exit 1; }
}
rate() { bench_train_rate "$1"; }
acc() {
  "$py" -c '
import json, sys
a = [json.loads(l).get("accuracy") for l in open(sys.argv[1]) if json.loads(l).get("split") == "test"]
print("%.4f" % a[-1] if a else "nan")' "$1/metrics.jsonl"
}
# ms per step computing and waiting for weights, from a distributed run's worker log
# ("epoch E: T s over N steps, C s computing, W s waiting for weights").
split() {
  awk '/ s computing, / { for (i = 1; i <= NF; i++) { if ($i == "over") n += $(i + 1);
         if ($i == "computing,") c += $(i - 2); if ($i == "waiting") w += $(i - 2) } }
       END { printf "%.2f/%.2f", 1000 * c / n, 1000 * w / n }' "$1"
}

echo "# pstrain distributed vs single-process training: $what, $epochs epochs"
echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:   nproc $ncores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "threads:   OPENBLAS_NUM_THREADS=1 in every process"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start)"
echo "rounds:    $rounds, each runs single, bsp, asp, asp-pipe once, the order rotating"
echo
printf '| %6s | %9s | %9s | %9s | %9s | %8s | %8s | %8s | %s | %s |\n' round single bsp asp asp-pipe \
  bsp/1 asp/1 pipe/1 "bsp ms/step computing/waiting" "test accuracy single/bsp/asp/pipe"
echo "|-------:|----------:|----------:|----------:|----------:|---------:|---------:|---------:|:---|:---|"
for r in $(seq 1 "$rounds"); do
  for j in 0 1 2 3; do
    k=${kinds[$(( (j + r - 1) % 4 ))]}
    run "$k" "$tmp/$k-$r"
  done
  s=$(rate "$tmp/single-$r"); b=$(rate "$tmp/bsp-$r"); a=$(rate "$tmp/asp-$r"); p=$(rate "$tmp/asp-pipe-$r")
  echo "$s $b $a $p" >> "$tmp/rates"
  awk -v r="$r" -v s="$s" -v b="$b" -v a="$a" -v p="$p" \
      -v sp="$(split "$tmp/bsp-$r.log")" -v acc="$(acc "$tmp/single-$r")/$(acc "$tmp/bsp-$r")/$(acc "$tmp/asp-$r")/$(acc "$tmp/asp-pipe-$r")" 'BEGIN {
    printf "| %6d | %9.0f | %9.0f | %9.0f | %9.0f | %8.3f | %8.3f | %8.3f | %s | %s |\n", r, s, b, a, p, b / s, a / s, p / s, sp, acc }'
  rm -rf "$tmp/single-$r" "$tmp/bsp-$r" "$tmp/asp-$r" "$tmp/asp-pipe-$r"
done
med() { awk "{ print $1 }" "$tmp/rates" | bench_median; }
awk -v s="$(med '$1')" -v b="$(med '$2')" -v a="$(med '$3')" -v p="$(med '$4')" \
    -v rb="$(med '$2 / $1')" -v ra="$(med '$3 / $1')" -v rp="$(med '$4 / $1')" 'BEGIN {
  printf "| median | %9.0f | %9.0f | %9.0f | %9.0f | %8.3f | %8.3f | %8.3f | | |\n", s, b, a, p, rb, ra, rp
  printf "\nmedian bsp/single      = %.3f   (target >= 0.90: %s)\n", rb, (rb >= 0.9 ? "met" : "missed")
  printf "median asp/single      = %.3f\n", ra
  printf "median asp-pipe/single = %.3f\n", rp }'
echo "Ratios are medians of the per-round ratios. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
