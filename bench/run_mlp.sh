#!/usr/bin/env bash
# bench/run_mlp.sh -- single-process training throughput: pstrain vs sgemm-only vs PyTorch.
#
# Interleaves R rounds of [bench_mlp: one sgemm-only epoch + one pstrain epoch]
# [torch_mlp.py: one PyTorch epoch with zero_grad(set_to_none=True), one with zero_grad()],
# all on one thread, and prints per-round samples/s, the median ratios pstrain/torch and
# pstrain/sgemm-only, and peak RSS against the bytes training needs. Interleaving spreads
# the slow phases of a shared machine over all of them. Figures only: it never fails on them.
#
# usage: bench/run_mlp.sh [--rounds N] [--build DIR] [--data DIR] [--smoke]
#   --rounds N  rounds (default 5)
#   --build DIR CMake build directory holding bench_mlp (default: build)
#   --data DIR  Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist)
#   --smoke     a check that it runs (ctest -L bench): 1 round of 2048 samples; exits 77
#               (skipped) without PyTorch or the data set
# Build first:  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target bench_mlp
# shellcheck disable=SC2016  # the single-quoted $1, $2 ... below are awk columns
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=5
build="$root/build"
data=/usr/share/datasets/fashion-mnist
smoke=
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --data) data=${2:?--data needs a directory}; shift 2 ;;
    --smoke) smoke=--smoke; rounds=1; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_mlp.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
# One thread for every BLAS call (bench/lib.sh). OpenBLAS's pthreads build starts its
# threads when the library loads, and torch.set_num_threads(1) does not reach them: without
# the variable PyTorch quietly uses every core. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are
# left as found.
BENCH=run_mlp.sh
source "$root/bench/lib.sh"
bench_ints --rounds "$rounds"
bench="$build/bench_mlp"
bench_need_exe "$bench" bench_mlp "$build"
bench_need_torch "$smoke"
if [ -n "$smoke" ] && [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
  echo "run_mlp.sh: no Fashion-MNIST in $data (Debian's dataset-fashion-mnist)" >&2
  exit 77
fi

# value KEY FILE [LINE-PREFIX]: the value of KEY=... on the first line starting with PREFIX.
value() {
  awk -v k="$1" -v p="${3:-}" 'index($0, p) == 1 {
      for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' "$2"
}

echo "# pstrain single-process training benchmark: MLP 784-256-128-10, batch 128, SGD, 1 epoch"
echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:   nproc $ncores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r)"
echo "threads:   OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS, torch.set_num_threads(1)" \
     "(OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset})"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start; other work on the machine shows in the spread of the rounds)"
echo "rounds:    $rounds, interleaved: [bench_mlp: sgemm-only epoch, pstrain epoch]" \
     "[torch_mlp.py: one epoch of each of its two loops]"
echo

for r in $(seq 1 "$rounds"); do
  # PyTorch's two loops swap order every round, as pstrain and sgemm-only take turns with it.
  if [ $((r % 2)) -eq 1 ]; then variants=none,zero; else variants=zero,none; fi
  "$bench" --rounds 1 --data "$data" $smoke > "$tmp/c$r" || { echo "run_mlp.sh: bench_mlp failed" >&2; exit 1; }
  "$py" "$root/bench/torch_mlp.py" --rounds 1 --variants "$variants" --data "$data" $smoke > "$tmp/t$r" ||
    { echo "run_mlp.sh: torch_mlp.py failed" >&2; exit 1; }
  if [ "$r" -eq 1 ]; then
    echo "openblas:  core $(value openblas_core "$tmp/c1" info), $(value openblas_threads "$tmp/c1" info) thread(s)"
    echo "torch:     $(value torch_version "$tmp/t1" info), BLAS $(value blas "$tmp/t1" info)"
    echo
    echo "samples/s, one epoch each ($(value samples "$tmp/c1" info) samples, $(value steps "$tmp/c1" info) steps). torch: zero_grad(set_to_none=True);"
    echo "torch-z: zero_grad(), the 1.13 default. Test accuracy after the epoch (same init and seed"
    echo "in every round, so it repeats)."
    echo
    printf '| %10s | %10s | %8s | %8s | %8s | %13s | %13s | %15s | %11s | %8s | %10s |\n' round \
      "sgemm-only" pstrain torch torch-z "pstrain/sgemm" "pstrain/torch" "pstrain/torch-z" \
      "torch/sgemm" "pst test" "torch test"
    echo "|-----------:|-----------:|---------:|---------:|---------:|--------------:|--------------:|----------------:|------------:|---------:|-----------:|"
  fi
  sg=$(value sgemm_sps "$tmp/c$r" round)
  ps=$(value pstrain_sps "$tmp/c$r" round)
  th=$(value torch_sps "$tmp/t$r" round)
  tz=$(value torch_zero_sps "$tmp/t$r" round)
  pa=$(value test_acc "$tmp/c$r" round)
  ta=$(value torch_test_acc "$tmp/t$r" round)
  echo "$sg $ps $th $tz $(value sgemm_cpu_sps "$tmp/c$r" round) $(value pstrain_cpu_sps "$tmp/c$r" round)" \
       "$(value torch_cpu_sps "$tmp/t$r" round) $(value torch_zero_cpu_sps "$tmp/t$r" round)" >> "$tmp/rates"
  awk -v r="$r" -v sg="$sg" -v ps="$ps" -v th="$th" -v tz="$tz" -v pa="$pa" -v ta="$ta" 'BEGIN {
    printf "| %10d | %10.0f | %8.0f | %8.0f | %8.0f | %13.3f | %13.3f | %15.3f | %11.3f | %8.4f | %10.4f |\n",
      r, sg, ps, th, tz, ps / sg, ps / th, ps / tz, th / sg, pa, ta }'
done

# med EXPR: median over the rounds of an awk expression of the rates' columns ('$2 / $1').
med() { awk "{ print $1 }" "$tmp/rates" | bench_median; }
m_sg=$(med '$1'); m_ps=$(med '$2'); m_th=$(med '$3'); m_tz=$(med '$4')
r_ps=$(med '$2 / $1'); r_pt=$(med '$2 / $3'); r_pz=$(med '$2 / $4'); r_ts=$(med '$3 / $1')
awk -v sg="$m_sg" -v ps="$m_ps" -v th="$m_th" -v tz="$m_tz" -v a="$r_ps" -v b="$r_pt" -v c="$r_pz" \
    -v d="$r_ts" 'BEGIN {
  printf "| %10s | %10.0f | %8.0f | %8.0f | %8.0f | %13.3f | %13.3f | %15.3f | %11.3f | %8s | %10s |\n",
    "median", sg, ps, th, tz, a, b, c, d, "", "" }'
c_sg=$(med '$5'); c_ps=$(med '$6'); c_th=$(med '$7'); c_tz=$(med '$8')
q_ps=$(med '$6 / $5'); q_pt=$(med '$6 / $7'); q_pz=$(med '$6 / $8'); q_ts=$(med '$7 / $5')
awk -v sg="$c_sg" -v ps="$c_ps" -v th="$c_th" -v tz="$c_tz" -v a="$q_ps" -v b="$q_pt" -v c="$q_pz" \
    -v d="$q_ts" 'BEGIN {
  printf "| %10s | %10.0f | %8.0f | %8.0f | %8.0f | %13.3f | %13.3f | %15.3f | %11.3f | %8s | %10s |\n",
    "cpu median", sg, ps, th, tz, a, b, c, d, "", "" }'
echo
echo "Ratios are medians of the per-round ratios. \"cpu median\" counts samples per CPU second"
echo "of each process instead of per wall second: time the core spent on other jobs does not"
echo "count there. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
awk -v a="$r_pt" -v b="$r_ps" -v c="$r_pz" 'BEGIN {
  printf "median pstrain/torch       = %.3f   (target >= 1.25: %s)\n", a, (a >= 1.25 ? "met" : "missed")
  printf "median pstrain/torch-z     = %.3f   (against the zero_grad() loop)\n", c
  printf "median pstrain/sgemm-only  = %.3f   (target >= 0.90: %s)\n", b, (b >= 0.90 ? "met" : "missed") }'

last=$rounds
m() { value "$1" "$tmp/c$last" memory; }
echo
echo "memory (bench_mlp, last round; MiB = 2^20 bytes):"
echo "  needed for training:      $(m need_mib) MiB = params $(m params_mib) + grads $(m grads_mib)" \
     "+ optimizer state $(m optstate_mib) + activations and their gradients $(m acts_mib)" \
     "+ one input batch $(m batch_mib)"
echo "  the trainer's RSS growth: $(m trainer_rss_mib) MiB (creation and 50 warm-up steps)"
echo "  dataset (60000 + 10000 images as float32, and labels): $(m dataset_mib) MiB -- it dominates RSS"
echo "  RSS at start $(m rss_start_mib) MiB, after loading the data $(m rss_after_data_mib) MiB," \
     "at exit $(m rss_end_mib) MiB"
echo "  peak RSS (getrusage ru_maxrss): $(m peak_rss_mib) MiB; it stood at $(m peak_load_mib) MiB" \
     "already after loading (wk_data_load holds two copies of the training set for a moment)"
echo "  PyTorch peak RSS: $(value peak_rss_mib "$tmp/t$last" memory) MiB" \
     "(its dataset $(value dataset_mib "$tmp/t$last" memory) MiB, int64 labels)"
