#!/usr/bin/env bash
# bench/run_async_quality.sh -- does asynchronous training converge as well as bsp?
#
# Trains the default job (Fashion-MNIST MLP 784-256-128-10, batch 128) with W workers
# (default 2) and 1 server for E epochs (default 2), with momentum SGD (lr 0.05, mu 0.9)
# and Adam (lr 0.001), under
#   bsp                     the reference
#   ssp (staleness 2), asp  plain
#   ... +slr                cluster.staleness_lr (lr / (1 + staleness))
#   ... +dc                 cluster.delay_compensation 2 (DC-ASGD-a, lambda0 2)
#   ... +mom                cluster.async_momentum (momentum rules only)
# R rounds (default 1) with different seeds, and prints every run's final test accuracy
# and each configuration's mean gap to bsp's (points; negative: worse than bsp). The
# issue's target is a gap within 1 point. Every process runs one BLAS thread. Figures only:
# it never fails on them. Asynchrony depends on scheduling, so a loaded machine moves them.
#
# usage: bench/run_async_quality.sh [--workers W] [--epochs E] [--rounds R] [--build DIR]
#                                   [--smoke]
#   --smoke  a check that it runs (ctest -L bench): examples/binary-moons.yaml, 1 epoch,
#            momentum only, a few configurations
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
workers=2
epochs=2
rounds=1
build="$root/build"
job=()
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers=${2:?--workers needs a value}; shift 2 ;;
    --epochs) epochs=${2:?--epochs needs a value}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --smoke) smoke=1; epochs=1; job=("$root/examples/binary-moons.yaml"); shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_async_quality.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for v in "$workers" "$epochs" "$rounds"; do
  case "$v" in ''|*[!0-9]*|0) echo "run_async_quality.sh: expected a positive integer, got '$v'" >&2; exit 2 ;; esac
done
pstrain="$build/pstrain"
[ -x "$pstrain" ] || { echo "run_async_quality.sh: $pstrain not found (build first)" >&2; exit 1; }
if [ ${#job[@]} -eq 0 ] && [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "run_async_quality.sh: the default job needs Debian's dataset-fashion-mnist package" >&2
  exit 1
fi
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

optims=("momentum" "adam")
configs=("bsp" "ssp" "ssp+slr" "ssp+dc" "ssp+mom" "asp" "asp+slr" "asp+dc" "asp+mom" "asp+slr+mom")
if [ "$smoke" = 1 ]; then optims=("momentum"); configs=("bsp" "asp" "asp+slr" "asp+dc" "asp+mom"); fi

run() { # run OPTIM CONFIG SEED DIR -> prints the final test (or validation) accuracy
  local o=$1 c=$2 seed=$3 dir=$4 args=()
  case "$o" in
    momentum) args+=(--optimizer momentum --optimizer.lr 0.05 --optimizer.momentum 0.9) ;;
    adam) args+=(--optimizer adam --optimizer.lr 0.001) ;;
  esac
  case "$c" in
    bsp*) args+=(--consistency bsp) ;;
    ssp*) args+=(--consistency ssp --cluster.staleness 2) ;;
    asp*) args+=(--consistency asp) ;;
  esac
  case "$c" in *+slr*) args+=(--cluster.staleness_lr true) ;; esac
  case "$c" in *+dc*) args+=(--cluster.delay_compensation 2) ;; esac
  case "$c" in *+mom*) args+=(--cluster.async_momentum true) ;; esac
  # Exit 1 (a model judged no better than chance) still has its accuracy to report.
  "$pstrain" local "${job[@]}" --servers 1 --workers "$workers" --epochs "$epochs" --seed "$seed" \
    --checkpoint.enabled false --output "$dir" "${args[@]}" > "$dir.log" 2>&1 || [ $? -eq 1 ] ||
    { echo "run_async_quality.sh: $o $c failed; its log:" >&2; tail -20 "$dir.log" >&2; exit 1; }
  /usr/bin/python3 -c '
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
t = [r["accuracy"] for r in a if r.get("split") in ("test", "validation") and "accuracy" in r]
print("%.4f" % t[-1] if t else "nan")' "$dir/metrics.jsonl"
}

echo "# asynchronous vs bsp final accuracy: ${job[*]:-default job}, $workers workers, 1 server, $epochs epochs"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); load $(cut -d' ' -f1-3 /proc/loadavg) at start; cores $(getconf _NPROCESSORS_ONLN)"
echo
for o in "${optims[@]}"; do
  printf '| %-8s |' "$o"; for c in "${configs[@]}"; do printf ' %-11s |' "$c"; done; echo
  printf '|:---|'; for _ in "${configs[@]}"; do printf -- '---:|'; done; echo
  for r in $(seq 1 "$rounds"); do
    printf '| seed %-3d |' "$((41 + r))"
    for c in "${configs[@]}"; do
      a=$(run "$o" "$c" $((41 + r)) "$tmp/$o-$c-$r")
      echo "$o $c $r $a" >> "$tmp/acc"
      printf ' %-11s |' "$a"
      rm -rf "$tmp/$o-$c-$r"
    done
    echo
  done
  printf '| gap, pt  |'
  for c in "${configs[@]}"; do
    awk -v o="$o" -v c="$c" '$1 == o && $2 == "bsp" { b[$3] = $4 } $1 == o && $2 == c { v[$3] = $4 }
      END { n = 0; s = 0; for (r in v) { s += 100 * (v[r] - b[r]); n++ } printf " %+-11.2f |", s / n }' "$tmp/acc"
  done
  echo
  echo
done
awk '{ print $1, $2 }' "$tmp/acc" | sort -u | while read -r o c; do
  awk -v o="$o" -v c="$c" '$1 == o && $2 == "bsp" { b[$3] = $4 } $1 == o && $2 == c { v[$3] = $4 }
    END { n = 0; s = 0; for (r in v) { s += 100 * (v[r] - b[r]); n++ }
          printf "gap %s %s = %.2f pt\n", o, c, s / n }' "$tmp/acc"
done
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
