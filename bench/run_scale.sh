#!/usr/bin/env bash
# bench/run_scale.sh -- a model of more than 1e9 parameters on 4 servers and 1 worker.
#
# The job: a synthetic wide MLP, F inputs -> U ReLU units -> 2-way softmax, with
# F = 32768 and U = 30518: F*U + U + 2U + 2 = 1,000,105,380 parameters (4.0 GB as float32),
# SGD with momentum 0.9, bsp, 4 servers, 1 worker, batch 16 over 64 generated CSV rows:
# 4 steps in one epoch. `pstrain local` runs it; this script polls /proc every 0.2 s for
# the processes whose command line holds the run's unique folder, and reports
#   - each process's peak RSS (VmHWM) against the bytes its parameters, optimizer state
#     and buffers need: the worker the parameters and their gradients (2 x 4 B x P) plus
#     the data set and one input batch; a server its slice's weights and momentum
#     (2 x 4 B x slice); the coordinator holds no parameters;
#   - the time per step split into computing and communication, from the worker's
#     "epoch 1: ... computing, ... waiting for weights" line (a bsp step blocks only while
#     it waits for the weights; everything else is computing).
# It stops the run (SIGTERM to pstrain local, which stops every process) if MemAvailable
# falls below 2 GiB, and refuses to start with less than the job needs plus 2 GiB.
# Figures only: it never fails on them.
#
# usage: bench/run_scale.sh [--build DIR] [--units U] [--features F] [--keep]
#   --build DIR    CMake build directory holding pstrain (default: build)
#   --units U      hidden units (default 30518)
#   --features F   input features (default 32768)
#   --keep         keep the run folder (data, job, logs, model of 4 GB)
#   --smoke        a check that it runs (ctest -L bench): 2048 features -> 2048 units
#                  (4,200,450 parameters: every process lives long enough for the 0.2 s
#                  polls to see it), a few seconds and ~200 MiB
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build"
units=30518
features=32768
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --units) units=${2:?--units needs a value}; shift 2 ;;
    --features) features=${2:?--features needs a value}; shift 2 ;;
    --keep) keep=1; shift ;;
    --smoke) units=2048; features=2048; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_scale.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
pstrain="$build/pstrain"
[ -x "$pstrain" ] || { echo "run_scale.sh: $pstrain not found (build it first)" >&2; exit 1; }
py=/usr/bin/python3
servers=4
rows=64
batch=16

tmp=$(mktemp -d /tmp/pstrain-scale-XXXXXX)
launcher=
cleanup() {
  if [ -n "$launcher" ] && kill -0 "$launcher" 2>/dev/null; then kill -TERM "$launcher" 2>/dev/null || true; wait "$launcher" 2>/dev/null || true; fi
  if [ "$keep" = 1 ]; then echo "run folder kept: $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# Sizes: parameters, each server's slice (coord_shard_map: blocks of 16 floats, split
# evenly by block), and what each process needs.
read -r P need_worker data_bytes batch_bytes slices < <("$py" - "$features" "$units" "$servers" "$rows" "$batch" <<'EOF'
import sys
F, U, S, rows, B = map(int, sys.argv[1:])
P = F * U + U + U * 2 + 2
blocks = (P + 15) // 16
off = [min(blocks * s // S * 16, P) for s in range(S + 1)]
data = rows * F * 4 + rows * 4          # features (float32) and labels (int32)
batch = B * F * 4 + B * (U + 2) * 4 * 2  # input batch, activations and their gradients
print(P, 8 * P + data + batch, data, batch, ",".join(str(off[s + 1] - off[s]) for s in range(S)))
EOF
)
need_servers=0
IFS=, read -r -a slice <<< "$slices"
for s in "${slice[@]}"; do need_servers=$((need_servers + 8 * s)); done
need_total=$((need_worker + need_servers))
avail_kb=$(awk '/MemAvailable/ { print $2 }' /proc/meminfo)
if [ $((avail_kb * 1024)) -lt $((need_total + 2 * 1024 * 1024 * 1024)) ]; then
  echo "run_scale.sh: the job needs $((need_total >> 20)) MiB plus a 2 GiB margin; MemAvailable is $((avail_kb >> 10)) MiB" >&2
  exit 1
fi

# Data: rows x features in [-1, 1] with 3 decimals, label = row parity; seeded.
"$py" - "$tmp/data.csv" "$rows" "$features" <<'EOF'
import random, sys
path, rows, F = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(7)
with open(path, "w") as f:
    for r in range(rows):
        f.write(",".join("%.3f" % (rnd.random() * 2 - 1) for _ in range(F)))
        f.write(",%d\n" % (r % 2))
EOF
cat > "$tmp/job.yaml" <<EOF
name: scale-1b
seed: 1
data:
  format: csv
  train: data.csv
  header: no
  num_classes: 2
model:
  layers:
    - {units: $units, activation: relu}
    - {units: 2, activation: softmax}
  loss: categorical_crossentropy
optimizer:
  name: momentum
  lr: 0.001
  momentum: 0.9
train:
  batch_size: $batch
  epochs: 1
  threads: 1
  shuffle: false
output:
  dir: $tmp/out
cluster:
  servers: $servers
  workers: 1
  consistency: bsp
  timeout_s: 600
checkpoint:
  enabled: false   # measured: training; the end-of-run shard files would be 8 GB here
EOF

echo "# pstrain at scale: $P parameters, $servers servers, 1 worker, bsp, momentum SGD"
echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:   nproc $(nproc), $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) (MemAvailable at start $((avail_kb >> 10)) MiB)"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start)"
echo "model:     $features -> $units relu -> 2 softmax; $rows rows, batch $batch: $((rows / batch)) steps"
echo

BENCH=run_scale.sh
source "$root/bench/watch.sh"
bench_run_watched

grep -E "job finished|epoch 1:|done at clock|parameters|shard \[" "$tmp/run.log" | sed 's/^/    /'
echo
echo "wall time of the whole run (start, data, init, 4 steps, final pull, 4 GB model file): $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f s", b - a }')"
echo "lowest MemAvailable seen: $((min_avail >> 10)) MiB"
echo
MiB() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
printf '| %-11s | %14s | %14s | %6s | %s |\n' process "peak RSS MiB" "needed MiB" ratio "needed for"
echo "|:------------|---------------:|---------------:|-------:|:---|"
for pid in "${!role[@]}"; do echo "${role[$pid]} $pid ${hwm[$pid]}"; done | sort | while read -r r pid kb; do
  peak=$((kb * 1024))
  case "$r" in
    worker*) need=$need_worker; what="params + grads $(MiB $((8 * P))) + data $(MiB "$data_bytes") + batch and activations $(MiB "$batch_bytes")" ;;
    server*) i=${r#server[}; i=${i%]}; need=$((8 * ${slice[$i]})); what="weights + momentum of ${slice[$i]} parameters" ;;
    *) need=0; what="no parameters" ;;
  esac
  if [ "$need" -gt 0 ]; then ratio=$(awk -v p="$peak" -v n="$need" 'BEGIN { printf "%.3f", p / n }'); else ratio="-"; fi
  printf '| %-11s | %14s | %14s | %6s | %s |\n' "$r" "$(MiB $peak)" "$(MiB $need)" "$ratio" "$what"
done
echo
awk '/epoch 1: / {
  for (i = 1; i <= NF; i++) { if ($i == "over") steps = $(i + 1); if ($i == "computing,") comp = $(i - 2); if ($i == "waiting") wait = $(i - 2); if ($i == "s" && $(i + 1) == "over") tot = $(i - 1) }
  printf "per step: %.2f s = %.2f s computing + %.2f s communication (push, server update, pull; %.0f%% of the step)\n", tot / steps, comp / steps, wait / steps, 100 * wait / tot }' "$tmp/run.log"
