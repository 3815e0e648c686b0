#!/usr/bin/env bash
# bench/run_torch_lib.sh -- PyTorch trained through pstrain servers against torch DDP.
#
# examples/library/torch_fmnist.py (the Fashion-MNIST MLP 784-256-128-10, batch 128,
# momentum SGD lr 0.05 m 0.9, 2 workers on every second training image each) three ways,
# interleaved R rounds (default 5), the order rotating every round:
#   bsp   pstrain local examples/library/torch-job.yaml -- torch_fmnist.py  (1 server)
#   asp   the same job with cluster.consistency asp
#   ddp   torch_fmnist.py --ddp: torch DistributedDataParallel, gloo, 2 processes
# All on this machine's cores (2 here), every process one thread (OPENBLAS_NUM_THREADS=1,
# torch.set_num_threads(1)). A run's samples/s is both workers' samples over the slower
# worker's training loop (from after the join / DDP's set-up to its last step: torch's
# import, data loading and the test evaluation are left out on all three). Prints each
# round, the medians of bsp/ddp and asp/ddp (ratios measured in the same round) and each
# run's test accuracy. Figures only: it never fails on them.
#
# usage: bench/run_torch_lib.sh [--rounds R] [--epochs E] [--limit N] [--model mlp|cnn]
#                               [--build DIR] [--smoke]
#   --limit N  samples per worker (default 0: all 30000)
#   --smoke    a check that it runs (ctest -L bench): 1 round, 1 epoch of 1000 samples per
#              worker; exits 77 (skipped) without PyTorch or the data set
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=5 epochs=2 limit=0 model=mlp build="$root/build"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --epochs) epochs=${2:?--epochs needs a value}; shift 2 ;;
    --limit) limit=${2:?--limit needs a value}; shift 2 ;;
    --model) model=${2:?--model needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --smoke) rounds=1 epochs=1 limit=1000; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_torch_lib.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for v in "$rounds" "$epochs"; do
  case "$v" in ''|*[!0-9]*|0) echo "run_torch_lib.sh: --rounds/--epochs: expected a positive integer" >&2; exit 2 ;; esac
done
case "$limit" in ''|*[!0-9]*) echo "run_torch_lib.sh: --limit: expected a number" >&2; exit 2 ;; esac
case "$model" in mlp|cnn) ;; *) echo "run_torch_lib.sh: --model: mlp or cnn" >&2; exit 2 ;; esac
pstrain="$build/pstrain" lib="$build/libpstrain.so"
[ -x "$pstrain" ] && [ -f "$lib" ] || { echo "run_torch_lib.sh: $pstrain or $lib not found; build with cmake --build $build" >&2; exit 2; }
py=/usr/bin/python3   # Debian's interpreter, which has python3-torch
"$py" -c 'import torch, torch.distributed as d, yaml; assert d.is_gloo_available()' 2> /dev/null ||
  { echo "run_torch_lib.sh: skipped: python3-torch (with gloo) or python3-yaml is not installed"; exit 77; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
  { echo "run_torch_lib.sh: skipped: no Fashion-MNIST (dataset-fashion-mnist)"; exit 77; }
ncores=$(nproc) # before OMP_NUM_THREADS=1, which nproc obeys
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PSTRAIN_LIBRARY="$lib"
out=$(mktemp -d /tmp/run_torch_lib.XXXXXX)
trap 'rm -rf "$out"' EXIT
script="$root/examples/library/torch_fmnist.py"
args=(--model "$model" --epochs "$epochs" --limit "$limit")
for c in bsp asp; do
  sed -e "s#dir: runs/torch-fmnist#dir: $out/run-$c#" -e "s#consistency: bsp#consistency: $c#" \
    "$root/examples/library/torch-job.yaml" > "$out/$c.yaml"
done
grep -q "consistency: asp" "$out/asp.yaml" || { echo "run_torch_lib.sh: the job file changed" >&2; exit 1; }

run() { # way round -> its output in $out/WAY-ROUND.txt
  local f="$out/$1-$2.txt" r
  if [ "$1" = ddp ]; then
    rm -f "$out/ddp-init"
    for r in 0 1; do
      PSTRAIN_RANK=$r "$py" "$script" "$out/bsp.yaml" --ddp "$out/ddp-init" "${args[@]}" > "$f.$r" 2>&1 &
    done
    wait || { cat "$f".* >&2; echo "run_torch_lib.sh: a DDP process failed" >&2; exit 1; }
    cat "$f".* > "$f"
  else
    "$pstrain" local "$out/$1.yaml" -- "$py" "$script" "$out/$1.yaml" "${args[@]}" >> "$f" 2>&1 ||
      { tail -n 20 "$f" >&2; echo "run_torch_lib.sh: pstrain local ($1) failed" >&2; exit 1; }
  fi
}
ways=(bsp asp ddp)
for r in $(seq "$rounds"); do
  for k in 0 1 2; do run "${ways[$(( (k + r - 1) % 3 ))]}" "$r"; done
done
echo "model $model, $epochs epoch(s) of $( [ "$limit" = 0 ] && echo all || echo "$limit" ) samples per worker, 2 workers, $ncores cores, one thread per process"
"$py" - "$out" "$rounds" << 'PY'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def figures(path):
    text = open(path).read()
    w = re.findall(r"^worker \d+: (\d+) epochs of (\d+) samples in ([0-9.]+) s", text, re.M)
    if len(w) != 2:
        sys.stderr.write(text)
        sys.exit("run_torch_lib.sh: %s: expected 2 worker lines" % path)
    sps = sum(int(e) * int(n) for e, n, _ in w) / max(float(s) for *_, s in w)
    acc = re.search(r"^test accuracy ([0-9.]+)", text, re.M)
    return sps, float(acc.group(1)) if acc else float("nan")
rows = {w: [figures("%s/%s-%d.txt" % (out, w, r)) for r in range(1, rounds + 1)]
        for w in ("bsp", "asp", "ddp")}
for r in range(rounds):
    print("round %d samples/s: bsp %.0f, asp %.0f, ddp %.0f" % ((r + 1,) + tuple(rows[w][r][0] for w in ("bsp", "asp", "ddp"))))
for w in ("bsp", "asp"):
    ratios = sorted(rows[w][r][0] / rows["ddp"][r][0] for r in range(rounds))
    print("median %s/ddp = %.3f (rounds %s)" % (w, statistics.median(ratios), " ".join("%.3f" % x for x in ratios)))
print("median samples/s: bsp %.0f, asp %.0f, ddp %.0f" % tuple(statistics.median(x[0] for x in rows[w]) for w in ("bsp", "asp", "ddp")))
print("median test accuracy: bsp %.4f, asp %.4f, ddp %.4f" % tuple(statistics.median(x[1] for x in rows[w]) for w in ("bsp", "asp", "ddp")))
PY
