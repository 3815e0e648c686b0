#!/usr/bin/env bash
# bench/run_faults.sh -- training under injected network faults against clean runs.
#
# Trains Fashion-MNIST (the default job, 1 epoch) with `pstrain local` two ways:
#   bsp   --servers 2 --workers 3 --consistency bsp
#   asp   --servers 2 --workers 2 --consistency asp
# each once clean and once per seed under PSTRAIN_FAULTS="drop=0.1,dup=0.05,seed=N"
# (net/faults.h: every process drops 10% and duplicates 5% of the messages it sends), the
# clean run and the faulty ones interleaved in every round. For each run it prints:
#   train s   the training part, from the first worker's 'training with' to the
#             coordinator's 'job finished' (log timestamps)
#   wall s    the whole `pstrain local`, start to exit (startup, data loading, shutdown)
#   ratios    of both against the clean run of the same kind in the same round
#   accuracy  the metrics.jsonl test record's
#   identical bsp only: the weights bit-identical to the clean run's (compare_safetensors.py)
#   resent    requests the workers sent again ('... N requests sent again', summed)
#   dropped   messages the fault injection dropped/duplicated, all processes summed
# and the medians of the ratios. Figures only: it fails only when a run fails (a nonzero
# exit, a worker that did not finish), which is what "never a hang" means here.
#
# usage: bench/run_faults.sh [--rounds N] [--seeds "1 2 3"] [--build DIR]
#   --rounds N    rounds (default 2)
#   --seeds LIST  fault seeds per round and kind (default "1 2 3")
#   --build DIR   CMake build directory holding pstrain (default: build)
#   --smoke       a check that it runs (ctest -L bench): 1 round, seed 1, 10 epochs of
#                 examples/binary-moons.yaml (seconds, no data set needed)
#   PSTRAIN_BENCH_FAULTS overrides the fault specification (without seed).
# Build first:  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target pstrain
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=2
seeds="1 2 3"
build="$root/build"
job=()   # pstrain's JOB.yaml argument: none, the default job
what="Fashion-MNIST default job"
epochs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --seeds) seeds=${2:?--seeds needs a list}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --smoke) rounds=1; seeds=1; epochs=10; job=("$root/examples/binary-moons.yaml")
             what="examples/binary-moons.yaml (smoke)"; shift ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_faults.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
BENCH=run_faults.sh
source "$root/bench/lib.sh"
bench_ints --rounds "$rounds"
for s in $seeds; do
  case "$s" in *[!0-9]*) echo "run_faults.sh: --seeds: '$s' is not an integer" >&2; exit 2 ;; esac
done
pstrain="$build/pstrain"
bench_need_exe "$pstrain" pstrain "$build"
[ ${#job[@]} -gt 0 ] || bench_need_fmnist ""
faults=${PSTRAIN_BENCH_FAULTS:-drop=0.1,dup=0.05}

args() { # args KIND
  case "$1" in
    bsp) echo --servers 2 --workers 3 --consistency bsp ;;
    asp) echo --servers 2 --workers 2 --consistency asp ;;
  esac
}
now_ms() { date +%s%3N; }
# run KIND DIR [SEED]: one job; DIR.log its stderr, DIR.wall its wall-clock seconds.
run() {
  local t0 t1 rc=0
  t0=$(now_ms)
  if [ -n "${3:-}" ]; then
    # shellcheck disable=SC2046
    PSTRAIN_FAULTS="$faults,seed=$3" "$pstrain" local "${job[@]}" --epochs "$epochs" $(args "$1") --output "$2" \
      > /dev/null 2> "$2.log" || rc=$?
  else
    # shellcheck disable=SC2046
    env -u PSTRAIN_FAULTS "$pstrain" local "${job[@]}" --epochs "$epochs" $(args "$1") --output "$2" \
      > /dev/null 2> "$2.log" || rc=$?
  fi
  t1=$(now_ms)
  echo "$(( t1 - t0 ))" | awk '{ printf "%.2f\n", $1 / 1000 }' > "$2.wall"
  if [ "$rc" -ne 0 ] || grep -q 'job finished without' "$2.log"; then
    echo "run_faults.sh: $1 ${3:+seed $3 }failed (exit $rc); the end of its log:" >&2
    tail -n 20 "$2.log" >&2
    exit 1
  fi
}
# Seconds from the first 'training with' to the coordinator's 'job finished' (ISO
# timestamps with milliseconds at the start of each line).
train_s() {
  "$py" - "$1" <<'EOF'
import sys
from datetime import datetime
t0 = t1 = None
for line in open(sys.argv[1]):
    ts = line.split(" ", 1)[0].rstrip("Z")
    if t0 is None and " info: training with " in line:
        t0 = datetime.fromisoformat(ts)
    if line.split(" ")[1:3] == ["coordinator", "info:"] and " job finished" in line:
        t1 = datetime.fromisoformat(ts)
print("%.2f" % (t1 - t0).total_seconds() if t0 and t1 else "nan")
EOF
}
acc() {
  "$py" -c '
import json, sys
a = [json.loads(l).get("accuracy") for l in open(sys.argv[1]) if json.loads(l).get("split") == "test"]
print("%.4f" % a[-1] if a else "nan")' "$1/metrics.jsonl"
}
resent() {
  grep -o '[0-9]* requests sent again' "$1" | awk '{ s += $1 } END { print s + 0 }'
}
faults_seen() { # dropped/duplicated, all processes
  grep -o 'fault injection: [0-9]* messages sent, [0-9]* dropped, [0-9]* duplicated' "$1" |
    awk '{ d += $6; u += $8 } END { printf "%d/%d\n", d, u }'
}

echo "# pstrain under injected faults ($faults): $what, $epochs epoch(s)"
echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:   nproc $(nproc), $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r)"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start)"
echo "runs:      bsp (2 servers, 3 workers), asp (2 servers, 2 workers); $rounds round(s), each"
echo "           a clean run then seeds $seeds under faults, per kind"
echo
printf '| %5s | %4s | %5s | %7s | %6s | %7s | %6s | %8s | %9s | %6s | %17s |\n' \
  round kind seed "train s" "ratio" "wall s" "ratio" accuracy identical resent "dropped/duplicated"
echo "|------:|:-----|------:|--------:|-------:|--------:|-------:|---------:|:----------|-------:|------------------:|"
for r in $(seq 1 "$rounds"); do
  for kind in bsp asp; do
    clean="$tmp/$kind-$r-clean"
    run "$kind" "$clean"
    ct=$(train_s "$clean.log"); cw=$(cat "$clean.wall")
    printf '| %5d | %4s | %5s | %7s | %6s | %7s | %6s | %8s | %9s | %6s | %17s |\n' \
      "$r" "$kind" clean "$ct" 1 "$cw" 1 "$(acc "$clean")" - "$(resent "$clean.log")" -
    for seed in $seeds; do
      d="$tmp/$kind-$r-$seed"
      run "$kind" "$d" "$seed"
      ft=$(train_s "$d.log"); fw=$(cat "$d.wall")
      same=-
      if [ "$kind" = bsp ]; then
        if "$py" "$root/tests/cli/compare_safetensors.py" "$clean/model.safetensors" \
             "$d/model.safetensors" 0 > /dev/null 2>&1; then same=yes; else same=NO; fi
      fi
      tr=$(awk -v a="$ft" -v b="$ct" 'BEGIN { printf "%.2f", a / b }')
      wr=$(awk -v a="$fw" -v b="$cw" 'BEGIN { printf "%.2f", a / b }')
      echo "$kind $tr $wr" >> "$tmp/ratios"
      printf '| %5d | %4s | %5s | %7s | %6s | %7s | %6s | %8s | %9s | %6s | %17s |\n' \
        "$r" "$kind" "$seed" "$ft" "$tr" "$fw" "$wr" "$(acc "$d")" "$same" \
        "$(resent "$d.log")" "$(faults_seen "$d.log")"
      rm -rf "$d"
    done
    rm -rf "$clean"
  done
done
echo
for kind in bsp asp; do
  t=$(awk -v k="$kind" '$1 == k { print $2 }' "$tmp/ratios" | bench_median)
  w=$(awk -v k="$kind" '$1 == k { print $3 }' "$tmp/ratios" | bench_median)
  mt=$(awk -v k="$kind" '$1 == k { print $2 }' "$tmp/ratios" | sort -g | tail -n 1)
  mw=$(awk -v k="$kind" '$1 == k { print $3 }' "$tmp/ratios" | sort -g | tail -n 1)
  echo "$kind: median faulty/clean training time $t (largest $mt), whole run $w (largest $mw)"
done
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
