#!/usr/bin/env bash
# bench/run_scale_gpt.sh -- a 124M-parameter GPT-2 (random init) fine-tuned with AdamW on 4
# servers and 1-2 workers (issue 13's scale run); bench/run_scale.sh is its MLP twin.
#
# The model: GPT-2 small's shape, n_layer 12, n_head 12, n_embd 768, n_positions 1024,
# vocab 50257: P = 124,439,808 parameters (0.50 GB as float32), the head tied to wte.
# Data: byte-level text windows (ids < 256 of the 50257) of this repository's docs; bsp,
# AdamW (lr 1e-4, weight decay 0.01, clip 1.0), batch B per worker, context T, S steps.
# `pstrain local` runs it; this script polls /proc every 0.2 s for the processes whose
# command line holds the run's unique folder, and reports
#   - each process's peak RSS (VmHWM) against what it needs: a server its shard's
#     weights and AdamW's two moments (3 x 4 B x shard, the shard read from the server's
#     "shard [lo, hi)" line); a worker the parameters and their gradients (2 x 4 B x P)
#     plus activations, counted from the layers' workspaces: per token and block
#     ln_1 2C, attention 8C + H*T (qkv, a, dqkv, da, probabilities), res C, ln_2 2C,
#     mlp_fc 2 x 4C (pre-activation and output), mlp_proj C, res C: 24C + H*T floats,
#     plus the head's logits and their gradient 2V and the embeddings 2C
#     (N*T*(L*(24C + H*T) + 2V + 2C) x 4 B); the coordinator holds no parameters;
#   - the time per step split into computing and communication, from worker 0's
#     "epoch 1: ..., computing, ... waiting for weights" line (a bsp step blocks only while
#     it waits for the weights; everything else is computing).
# It stops the run if MemAvailable falls below 2 GiB and refuses to start with less than
# the job needs plus 2 GiB. Figures only: it never fails on them.
#
# usage: bench/run_scale_gpt.sh [--build DIR] [--workers W] [--batch B] [--context T]
#                               [--steps S] [--keep] [--smoke]
#   --workers W  1 or 2 (default 1)      --batch B    per worker (default 2)
#   --context T  tokens (default 64)     --steps S    steps per worker (default 3)
#   --smoke      a check that it runs (ctest -L bench): n_layer 2, n_head 4, n_embd 256,
#                vocab 2048, context 32, 6 steps (2.1M parameters: every process lives
#                long enough for the 0.2 s polls to see it), a few seconds
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build"
L=12 H=12 C=768 NP=1024 V=50257
workers=1 batch=2 ctx=64 steps=3 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --workers) workers=${2:?}; shift 2 ;;
    --batch) batch=${2:?}; shift 2 ;;
    --context) ctx=${2:?}; shift 2 ;;
    --steps) steps=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    --smoke) L=2 H=4 C=256 NP=64 V=2048 ctx=32 steps=6; shift ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_scale_gpt.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
pstrain="$build/pstrain"
[ -x "$pstrain" ] || { echo "run_scale_gpt.sh: $pstrain not found (build it first)" >&2; exit 1; }
servers=4

tmp=$(mktemp -d /tmp/pstrain-scale-gpt-XXXXXX)
launcher=
cleanup() {
  if [ -n "$launcher" ] && kill -0 "$launcher" 2>/dev/null; then kill -TERM "$launcher" 2>/dev/null || true; wait "$launcher" 2>/dev/null || true; fi
  if [ "$keep" = 1 ]; then echo "run folder kept: $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# P = V C + NP C + L (12 C^2 + 13 C) + 2 C (core/gpt2.h's tensors)
P=$((V * C + NP * C + L * (12 * C * C + 13 * C) + 2 * C))
act=$((batch * ctx * (L * (24 * C + H * ctx) + 2 * V + 2 * C) * 4))
need_worker=$((8 * P + act))
need_total=$((workers * need_worker + 12 * P))
avail_kb=$(awk '/MemAvailable/ { print $2 }' /proc/meminfo)
if [ $((avail_kb * 1024)) -lt $((need_total + 2 * 1024 * 1024 * 1024)) ]; then
  echo "run_scale_gpt.sh: the job needs $((need_total >> 20)) MiB plus a 2 GiB margin; MemAvailable is $((avail_kb >> 10)) MiB" >&2
  exit 1
fi

# Text: exactly workers x steps x batch windows of ctx + 1 bytes (the docs, repeated).
windows=$((workers * steps * batch))
cat "$root"/docs/*.md > "$tmp/docs.txt"
/usr/bin/python3 - "$tmp/docs.txt" "$tmp/corpus.txt" $((windows * (ctx + 1))) <<'PY'
import sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = open(src, "rb").read()
open(dst, "wb").write((b * (n // len(b) + 1))[:n])
PY
cat > "$tmp/job.yaml" <<YAML
name: scale-gpt2
seed: 1
data:
  format: text
  train: corpus.txt
  context: $ctx
model:
  gpt2: {n_layer: $L, n_head: $H, n_embd: $C, n_positions: $NP, vocab_size: $V}
optimizer:
  name: adamw
  lr: 0.0001
  weight_decay: 0.01
  clip_norm: 1.0
train:
  batch_size: $batch
  epochs: 1
  threads: 1
  shuffle: false
output:
  dir: $tmp/out
cluster:
  servers: $servers
  workers: $workers
  consistency: bsp
  timeout_s: 600
checkpoint:
  enabled: false   # measured: training, not the 0.5 GB model file at the end
YAML

echo "# pstrain at scale: GPT-2 $P parameters, $servers servers, $workers worker(s), bsp, AdamW"
echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:   nproc $(nproc), $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) (MemAvailable at start $((avail_kb >> 10)) MiB)"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start)"
echo "model:     n_layer $L, n_head $H, n_embd $C, n_positions $NP, vocab $V; context $ctx, batch $batch per worker, $steps steps"
echo

BENCH=run_scale_gpt.sh
source "$root/bench/watch.sh"
bench_run_watched

grep -E "job finished|epoch 1:|done at clock|parameters|shard \[" "$tmp/run.log" | sed 's/^/    /'
echo
echo "wall time of the whole run (start, data, init, $steps steps, final pull): $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f s", b - a }')"
echo "lowest MemAvailable seen: $((min_avail >> 10)) MiB"
echo
MiB() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
# server rank -> shard size, from "server[r] ... shard [lo, hi) of P parameters"
declare -A shard
while read -r r n; do shard[$r]=$n; done < <(sed -n 's/.*server\[\([0-9]*\)\].*shard \[\([0-9]*\), \([0-9]*\)).*/\1 \2 \3/p' "$tmp/run.log" | awk '{ print $1, $3 - $2 }')
printf '| %-11s | %14s | %14s | %6s | %s |\n' process "peak RSS MiB" "needed MiB" ratio "needed for"
echo "|:------------|---------------:|---------------:|-------:|:---|"
for pid in "${!role[@]}"; do echo "${role[$pid]} $pid ${hwm[$pid]}"; done | sort | while read -r r pid kb; do
  peak=$((kb * 1024))
  case "$r" in
    worker*) need=$need_worker; what="params + grads $(MiB $((8 * P))) + activations $(MiB "$act")" ;;
    server*) i=${r#server[}; i=${i%]}; n=${shard[$i]:-$((P / servers))}; need=$((12 * n)); what="weights + AdamW m, v of $n parameters" ;;
    *) need=0; what="no parameters" ;;
  esac
  if [ "$need" -gt 0 ]; then ratio=$(awk -v p="$peak" -v n="$need" 'BEGIN { printf "%.3f", p / n }'); else ratio="-"; fi
  printf '| %-11s | %14s | %14s | %6s | %s |\n' "$r" "$(MiB $peak)" "$(MiB $need)" "$ratio" "$what"
done
echo
awk '/epoch 1: / && !done {
  for (i = 1; i <= NF; i++) { if ($i == "over") steps = $(i + 1); if ($i == "computing,") comp = $(i - 2); if ($i == "waiting") wait = $(i - 2); if ($i == "s" && $(i + 1) == "over") tot = $(i - 1) }
  printf "per step: %.2f s = %.2f s computing + %.2f s communication (push, server update, pull; %.0f%% of the step)\n", tot / steps, comp / steps, wait / steps, 100 * wait / tot; done = 1 }' "$tmp/run.log"
