#!/usr/bin/env bash
# bench/run_gpt.sh -- a small GPT-2's training steps on one thread: pstrain vs PyTorch.
#
# The same model and step both ways (bench/bench_gpt.c: pstrain's GPT layers from
# core/gpt2.h; bench/torch_gpt.py: the GPT-2 of Hugging Face's layout in nn.Modules):
# L 4 layers, H 4 heads, C 256 channels, context T 256, byte-level vocabulary 256, batch
# 4, mean next-token cross-entropy, one Adam update per step, random token ids. R rounds
# (default 5), each one run of S steps (default 10) of each program, the order swapping
# every round. Prints each round's tokens/s, the medians, their ratio, and pstrain's
# FLOP/s against one thread's sgemm rate (bench_gpt.c's head says how both are counted).
# Every process runs one thread (OPENBLAS_NUM_THREADS=1). Figures only: it never fails
# on them.
#
# usage: bench/run_gpt.sh [--rounds R] [--steps S] [--build DIR] [--smoke]
#   --smoke   a check that it runs (ctest -L bench): 1 round of 2 steps of a 2-layer,
#             64-channel, context-32 model; exits 77 (skipped) without PyTorch
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=5 steps=10 build="$root/build" smoke=
size=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --steps) steps=${2:?--steps needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --smoke) smoke=1; rounds=1; steps=2
             size=(--layers 2 --heads 2 --embd 64 --context 32 --batch 2); shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_gpt.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for v in "$rounds" "$steps"; do
  case "$v" in ''|*[!0-9]*|0) echo "run_gpt.sh: --rounds/--steps: expected a positive integer" >&2; exit 2 ;; esac
done
bench="$build/bench_gpt"
[ -x "$bench" ] || { echo "run_gpt.sh: $bench not found; build it with cmake --build $build --target bench_gpt" >&2; exit 2; }
py=/usr/bin/python3   # Debian's interpreter, which has python3-torch
"$py" -c 'import torch' 2> /dev/null || { echo "run_gpt.sh: skipped: python3-torch is not installed (scripts/install-deps.sh --bench)"; exit 77; }
export OPENBLAS_NUM_THREADS=1
out=$(mktemp -d /tmp/run_gpt.XXXXXX)
trap 'rm -rf "$out"' EXIT
tps() { sed -n 's/^round .* tokens_per_s=\([0-9.]*\) .*/\1/p' "$1"; }
for r in $(seq "$rounds"); do
  runs=(pstrain torch)
  [ $((r % 2)) -eq 0 ] && runs=(torch pstrain)
  for w in "${runs[@]}"; do
    if [ "$w" = pstrain ]; then
      "$bench" "${size[@]}" --steps "$steps" --rounds 1 > "$out/p$r.txt"
    else
      "$py" "$root/bench/torch_gpt.py" "${size[@]}" --steps "$steps" --rounds 1 > "$out/t$r.txt"
    fi
  done
  p=$(tps "$out/p$r.txt") t=$(tps "$out/t$r.txt")
  echo "round $r pstrain $p tokens/s, torch $t tokens/s ($(grep -o 'gflop_per_s=[0-9.]*' "$out/p$r.txt" | head -1 | cut -d= -f2) GFLOP/s, sgemm $(sed -n 's/^sgemm gflop_per_s=//p' "$out/p$r.txt"))"
  echo "$p $t" >> "$out/all.txt"
done
grep "^info" "$out/p1.txt" | sed 's/^info/pstrain:/'
grep "^info" "$out/t1.txt" | sed 's/^info/torch:/'
"$py" - "$out/all.txt" "$out" << 'PY'
import glob, re, statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
p = statistics.median(r[0] for r in rows)
t = statistics.median(r[1] for r in rows)
ratios = sorted(r[0] / r[1] for r in rows)
print("median pstrain/torch = %.3f (rounds %s)" % (p / t, " ".join("%.3f" % x for x in ratios)))
print("median tokens/s: pstrain %.1f, torch %.1f" % (p, t))
g = [float(m.group(1)) for f in glob.glob(sys.argv[2] + "/p*.txt")
     for m in [re.search(r"gflop_per_s=([0-9.]+)", open(f).read())] if m]
b = [float(m.group(1)) for f in glob.glob(sys.argv[2] + "/p*.txt")
     for m in [re.search(r"^sgemm gflop_per_s=([0-9.]+)", open(f).read(), re.M)] if m]
print("median pstrain GFLOP/s %.2f of sgemm %.2f = %.3f"
      % (statistics.median(g), statistics.median(b), statistics.median(g) / statistics.median(b)))
PY
