#!/usr/bin/env bash
# bench/run_kill_matrix.sh -- SIGKILL one process of a `pstrain local` job at a sampled
# moment and see whether the job survives (issue 15 item 5, the kill matrix).
#
# Runs examples/binary-moons.yaml (or the default Fashion-MNIST job on a subset) with
# 2 servers, 2 workers, cluster.max_restarts 2, checkpoints every 10 steps, a 3 s
# heartbeat timeout and a 20 s network timeout (cluster.timeout_s: every bounded wait
# ends well before the 60 s this script allows a run), once undisturbed per consistency
# (the reference), then --kills N runs per role, each killing one process -- role x
# consistency (asp/ssp/bsp) x moment:
#   startup   the process is killed (SIGKILL) 0-50 ms after it appears, before any
#             worker's 'training with' (a run where training had begun is marked late)
#   mid       a random 20-70 % of the reference's training time after the first 'training
#             with'. A push and a pull overlap within every step and last well under a
#             millisecond here; from outside they cannot be told apart, so mid-push and
#             mid-pull are one moment (no test hook pauses a process inside either)
#   ckpt      right after the 1st-3rd 'checkpoint of clock' line (a server: its own)
#   shutdown  right after worker 0's final 'test:'/'validation:' line (it is writing the
#             final model; a worker killed then is always worker 0, the others are gone)
# The cells are drawn with --seed: each role goes through all 12 consistency x moment
# cells in a shuffled order before any repeats, with a random rank. For each run it prints:
#   exit      the job's exit code; done: exit 0 and every worker finished
#   acc, d pt the final test/validation accuracy (metrics.jsonl) and its difference to the
#             reference of the same consistency, in points
#   detect s  the kill to the first log line naming the killed pid (the launcher's
#             'killed by signal 9; starting it again' or the coordinator's 'is lost')
#   back s    the kill to the coordinator's 'rejoined as' / 'restarted as incarnation'
#   regain s  mid/ckpt kills: the kill to the first 'progress:' line from which the job's
#             steps/s over the next >= 0.5 s are >= 90 % of the reference's (no: never;
#             -: training ended within 0.5 s of the kill)
# then the matrix of completed/killed per cell, and per role: completions, the exit codes
# of the others, accuracy difference, detection, back and regain (median/largest). Figures only: the coordinator is not restarted (issue 15 item 1), so its
# kills end the job, and are reported so. It fails only when a run hangs (past 5x the
# reference's wall time, 60 s at least) or leaves a process behind.
#
# usage: bench/run_kill_matrix.sh [--kills N] [--seed S] [--roles LIST] [--epochs E]
#                                 [--fmnist] [--logs DIR] [--build DIR] [--smoke]
#   --kills N     kills per role (default 12: every consistency x moment cell once)
#   --seed S      the sampling seed (default 1); the same seed draws the same cells
#   --roles LIST  the roles to kill (default "worker server coordinator")
#   --epochs E    epochs per run (default 20 moons, 8 Fashion-MNIST)
#   --fmnist      the default Fashion-MNIST job on --data.limit 12000 instead of moons
#   --logs DIR    keep every kill run's log there (kill-N.log; default: none kept)
#   --build DIR   CMake build directory holding pstrain (default: build)
#   --smoke       a check that it runs (ctest -L bench): bsp only, 8 epochs, one kill per
#                 role (worker mid, server ckpt, coordinator mid)
# Moons steps are slowed to 20 ms (PSTRAIN_TEST_STEP_DELAY_MS) so that a run lasts seconds.
# Build first:  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target pstrain
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
kills=12
seed=1
roles="worker server coordinator"
epochs=""
fmnist=0
smoke=0
build="$root/build"
logs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills=${2:?--kills needs a value}; shift 2 ;;
    --seed) seed=${2:?--seed needs a value}; shift 2 ;;
    --roles) roles=${2:?--roles needs a list}; shift 2 ;;
    --epochs) epochs=${2:?--epochs needs a value}; shift 2 ;;
    --fmnist) fmnist=1; shift ;;
    --logs) logs=${2:?--logs needs a directory}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,48p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_kill_matrix.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
BENCH=run_kill_matrix.sh
source "$root/bench/lib.sh"
bench_ints --kills "$kills"
case "$seed" in ''|*[!0-9]*) echo "$BENCH: --seed: expected an integer, got '$seed'" >&2; exit 2 ;; esac
[ -n "$epochs" ] && bench_ints --epochs "$epochs"
for r in $roles; do
  case "$r" in worker|server|coordinator) ;;
    *) echo "$BENCH: --roles: '$r' is not worker, server or coordinator" >&2; exit 2 ;; esac
done
[ -n "$roles" ] || { echo "$BENCH: --roles: empty" >&2; exit 2; }
pstrain="$build/pstrain"
bench_need_exe "$pstrain" pstrain "$build"
[ "$fmnist" = 1 ] && bench_need_fmnist ""
if [ -n "$logs" ]; then
  mkdir -p "$logs" || { echo "$BENCH: --logs: cannot create '$logs'" >&2; exit 2; }
  logs=$(cd "$logs" && pwd)
fi

S=2 W=2
conss="asp ssp bsp"
if [ "$fmnist" = 1 ]; then
  job=(--data.limit 12000); what="Fashion-MNIST default job, 12000 images"
  epochs=${epochs:-8}; unset PSTRAIN_TEST_SLOW_WORKER PSTRAIN_TEST_STEP_DELAY_MS
else
  job=("$root/examples/binary-moons.yaml"); what="examples/binary-moons.yaml, steps slowed to 20 ms"
  epochs=${epochs:-20}; export PSTRAIN_TEST_SLOW_WORKER=all PSTRAIN_TEST_STEP_DELAY_MS=20
fi
if [ "$smoke" = 1 ]; then
  conss=bsp; kills=1; epochs=8; what="$what (smoke)"
fi
opts=("${job[@]}" --epochs "$epochs" --servers "$S" --workers "$W" --cluster.max_restarts 2
      --checkpoint.every_steps 10 --cluster.heartbeat_timeout_s 3 --cluster.timeout_s 20)

now_ms() { date +%s%3N; }

# The plan: one line "ROLE RANK CONSISTENCY MOMENT FRACTION K DELAY_MS" per kill, roles
# interleaved (the machine's load falls on all alike).
plan() {
  "$py" - "$seed" "$kills" "$smoke" "$conss" "$roles" "$S" "$W" << 'PY'
import random, sys
seed, kills, smoke = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
conss, roles = sys.argv[4].split(), sys.argv[5].split()
ranks = {"worker": int(sys.argv[7]), "server": int(sys.argv[6]), "coordinator": 1}
rng = random.Random(seed)
moments = ["startup", "mid", "ckpt", "shutdown"]
fixed = {"worker": "mid", "server": "ckpt", "coordinator": "mid"}
order = {}
for role in roles:
    cells = []
    while len(cells) < kills:
        c = [(k, m) for k in conss for m in moments]
        rng.shuffle(c)
        cells += c
    order[role] = cells[:kills]
for i in range(kills):
    for role in roles:
        cons, moment = order[role][i]
        if smoke:
            moment = fixed[role]
        rank = rng.randrange(ranks[role])
        if role == "worker" and moment == "shutdown":
            rank = 0  # the only worker still running then
        print(role, rank, cons, moment, "%.3f" % rng.uniform(0.2, 0.7), rng.randint(1, 3),
              rng.randint(0, 50))
PY
}

# What the analysis reads from a run's log: the first 'training with', the coordinator's
# 'job finished', the progress lines (time, steps done), and after the kill (KILL_MS, pid
# PID of ROLE[RANK]) the first line naming the pid, the coordinator's 'is lost' and its
# rejoin line. Prints "train_s t0_ms rate" for a reference (no KILL_MS), else
# "at_s late detect_s back_s regain_s".
analyse() { # LOG [REF_RATE KILL_MS ROLE RANK PID MOMENT]
  "$py" - "$@" << 'PY'
import re, sys
from datetime import datetime, timezone
log = sys.argv[1]
def ms(line):
    try:
        t = datetime.fromisoformat(line.split(" ", 1)[0].rstrip("Z")).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return t.timestamp() * 1000
t0 = t1 = None
prog = []
lines = []
for line in open(log, errors="replace"):
    t = ms(line)
    if t is None:
        continue
    lines.append((t, line))
    if t0 is None and re.search(r"^\S+ worker\[\d+\] info: training with ", line):
        t0 = t
    if " coordinator info: job finished" in line:
        t1 = t
    m = re.search(r" local info: progress: .* step (\d+)/(\d+) ", line)
    if m:
        prog.append((t, int(m.group(1)), int(m.group(2))))
def rate_from(i, window=500.0):
    # steps/s from progress line i over the next >= window ms (None: too near the end)
    for j in range(i + 1, len(prog)):
        if prog[j][0] - prog[i][0] >= window:
            return (prog[j][1] - prog[i][1]) * 1000.0 / (prog[j][0] - prog[i][0])
    return None
if len(sys.argv) == 2:  # a reference
    tr = [p for p in prog if 0 < p[1] < p[2]]
    rate = ((tr[-1][1] - tr[0][1]) * 1000.0 / (tr[-1][0] - tr[0][0])
            if len(tr) > 1 and tr[-1][0] > tr[0][0] else float("nan"))
    print("%.3f %d %.1f" % ((t1 - t0) / 1000 if t0 and t1 else float("nan"), t0 or 0, rate))
    sys.exit(0)
ref_rate, kill, role, rank, pid, moment = (float(sys.argv[2]), float(sys.argv[3]), sys.argv[4],
                                           sys.argv[5], sys.argv[6], sys.argv[7])
def first(pred):
    for t, line in lines:
        if t >= kill - 1 and pred(line):
            return "%.2f" % max(0.0, (t - kill) / 1000)
    return "-"
name = "coordinator" if role == "coordinator" else "%s[%s]" % (role, rank)
at = "%.2f" % ((kill - t0) / 1000) if t0 else "-"
late = "late" if moment == "startup" and t0 and t0 <= kill else ""
detect = first(lambda l: re.match(r"\S+ (local|coordinator) \w+: .*\(pid %s\b" % pid, l))
back = first(lambda l: re.match(r"\S+ coordinator \w+: %s (rejoined as|restarted as) incarnation"
                                % re.escape(name), l))
regain = "-"
if moment in ("mid", "ckpt") and ref_rate == ref_rate and t1:
    for i, p in enumerate(prog):
        if p[0] < kill or p[1] >= p[2]:
            continue
        r = rate_from(i)
        if r is not None:
            regain = "no"  # a window to judge by: from here on "no" unless one is fast
        if r is not None and r >= 0.9 * ref_rate:
            regain = "%.2f" % ((p[0] - kill) / 1000)
            break
print(at, late or "-", detect, back, regain)
PY
}

acc() { # DIR: the final test or validation accuracy
  "$py" -c '
import json, sys
try:
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
except OSError:
    rows = []
a = [r["accuracy"] for r in rows if r.get("split") in ("test", "validation") and "accuracy" in r]
print("%.4f" % a[-1] if a else "-")' "$1/metrics.jsonl"
}

# kill_at LOG JOB ROLE RANK DIR MOMENT FRACTION TRAIN_S K DELAY_MS: watches LOG (every
# 5 ms) until the moment, then sends SIGKILL to ROLE[RANK] of the job whose --output is
# DIR (found in /proc; a zombie counts as gone). Prints "KILL_MS PID", or "- WHY" when the
# moment never came (the job JOB ended first) or the process had gone.
kill_at() {
  "$py" - "$@" << 'PY'
import os, re, signal, sys, time
log, job, role, rank, out, moment = sys.argv[1:7]
frac, train_s, k, delay = float(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10])
job = int(job)
def alive(pid):
    try:
        st = open("/proc/%d/stat" % pid).read()
    except OSError:
        return False
    return st[st.rindex(")") + 2] != "Z"
def pid_of():
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            a = [x.decode(errors="replace") for x in open("/proc/%s/cmdline" % d, "rb").read().split(b"\0") if x]
        except OSError:
            continue
        if (len(a) > 3 and os.path.basename(a[0]) == "pstrain" and a[1] == role and a[-2:] == ["--output", out]
                and (role == "coordinator" or ("--rank" in a and a[a.index("--rank") + 1] == rank))
                and alive(int(d))):
            return int(d)
    return None
now = lambda: time.time() * 1000
ckpt = re.compile(r"server\[%s\] info: checkpoint of clock [1-9]" % (rank if role == "server" else r"\d+"))
test = re.compile(r"worker\[0\] info: (test|validation): ")
train = re.compile(r"worker\[\d+\] info: training with ")
off, buf, t_train, nckpt, tested, at = 0, b"", None, 0, False, None
while True:
    try:
        with open(log, "rb") as f:
            f.seek(off); data = f.read(); off += len(data)
    except OSError:
        data = b""
    buf += data
    *lines, buf = buf.split(b"\n")
    for l in lines:
        l = l.decode(errors="replace")
        if t_train is None and train.search(l):
            t_train = now()
        nckpt += bool(ckpt.search(l))
        tested |= bool(test.search(l))
    if moment == "startup" and at is None and pid_of():
        at = now() + delay
    elif moment == "mid" and t_train is not None:
        at = t_train + frac * train_s * 1000
    elif (moment == "ckpt" and nckpt >= k) or (moment == "shutdown" and tested):
        at = now()
    if at is not None and now() >= at:
        pid = pid_of()
        if pid is None:
            print("- exited"); sys.exit(0)
        t = now()
        os.kill(pid, signal.SIGKILL)
        print("%d %d" % (t, pid)); sys.exit(0)
    if not alive(job):
        print("- no-" + moment); sys.exit(0)
    time.sleep(0.005)
PY
}

limit_s=60
# run DIR CONS [ROLE RANK MOMENT FRACTION K DELAY_MS]: one job, its stderr in DIR.log;
# sets rc, and for a kill kill_ms, kpid (empty: the moment never came or the process
# had gone), wall_ms.
run() {
  local dir=$1 cons=$2 role=${3:-} rank=${4:-} moment=${5:-} frac=${6:-} k=${7:-} delay=${8:-}
  local t0 job
  kill_ms="" kpid="" why=""
  t0=$(now_ms)
  timeout -s TERM "$limit_s" "$pstrain" local "${opts[@]}" --consistency "$cons" --output "$dir" \
    > /dev/null 2> "$dir.log" &
  job=$!
  if [ -n "$role" ]; then
    read -r kill_ms kpid < <(kill_at "$dir.log" $job "$role" "$rank" "$dir" "$moment" "$frac" \
                             "$ref_train_s" "$k" "$delay")
    [ "$kill_ms" = - ] && { why=$kpid; kpid=""; kill_ms=""; }
  fi
  rc=0; wait $job || rc=$?
  wall_ms=$(( $(now_ms) - t0 ))
  if pgrep -f -- "--output $dir\$" > /dev/null; then
    echo "$BENCH: $dir: processes left behind:" >&2; pgrep -af -- "--output $dir\$" >&2
    kill -KILL $(pgrep -f -- "--output $dir\$") 2> /dev/null || true
    bad=1
  fi
  if [ "$rc" = 124 ]; then
    echo "$BENCH: $dir: still running after $limit_s s (a hang); the end of its log:" >&2
    tail -n 15 "$dir.log" >&2
    bad=1
  fi
}

bad=0
echo "# pstrain kill matrix: $what, $epochs epochs, $S servers, $W workers"
echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:   nproc $ncores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r)"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start)"
echo "options:   ${opts[*]#"$root/"}"
echo "sampling:  --seed $seed, $kills kill(s) per role ($roles), consistencies $conss"
echo
declare -A ref_acc ref_rate ref_train
printf '| %-9s | %5s | %7s | %6s | %9s |\n' reference exit "train s" acc "steps/s"
echo "|:----------|------:|--------:|-------:|----------:|"
max_wall=0
for cons in $conss; do
  d="$tmp/ref-$cons"
  run "$d" "$cons"
  if [ "$rc" -ne 0 ]; then
    echo "$BENCH: the $cons reference failed (exit $rc); the end of its log:" >&2
    tail -n 20 "$d.log" >&2; exit 1
  fi
  read -r tr _ rate < <(analyse "$d.log")
  ref_acc[$cons]=$(acc "$d"); ref_rate[$cons]=$rate; ref_train[$cons]=$tr
  [ "$wall_ms" -gt "$max_wall" ] && max_wall=$wall_ms
  printf '| %-9s | %5s | %7s | %6s | %9s |\n' "$cons" "$rc" "$tr" "${ref_acc[$cons]}" "$rate"
  rm -rf "$d"
done
limit_s=$(( max_wall * 5 / 1000 )); [ "$limit_s" -lt 60 ] && limit_s=60
echo
hdr='| %3s | %-11s | %4s | %-4s | %-8s | %6s | %4s | %-4s | %6s | %6s | %8s | %6s | %8s |\n'
# shellcheck disable=SC2059
printf "$hdr" "#" role rank cons moment "at s" exit "done" acc "d pt" "detect s" "back s" "regain s"
echo "|----:|:------------|-----:|:-----|:---------|-------:|-----:|:-----|-------:|-------:|---------:|-------:|---------:|"
n=0
while read -r role rank cons moment frac k delay; do
  n=$((n + 1))
  d="$tmp/kill-$n"
  ref_train_s=${ref_train[$cons]}
  run "$d" "$cons" "$role" "$rank" "$moment" "$frac" "$k" "$delay"
  [ -n "$logs" ] && cp "$d.log" "$logs/kill-$n.log"
  # A zombie or a process on its way out takes the signal without effect: a kill is one
  # the launcher saw.
  if [ -n "$kpid" ] && ! grep -q "(pid $kpid) killed by signal 9" "$d.log"; then
    kpid=""; why="had exited"
  fi
  if [ -z "$kpid" ]; then
    # shellcheck disable=SC2059
    printf "$hdr" "$n" "$role" "$rank" "$cons" "$moment" - "$rc" - - - "not killed" "($why)" -
    echo "$role $cons $moment nokill" >> "$tmp/results"
    rm -rf "$d" "$d.log"; continue
  fi
  read -r at late detect back regain < <(analyse "$d.log" "${ref_rate[$cons]}" "$kill_ms" "$role" "$rank" "$kpid" "$moment")
  done_=no
  [ "$rc" = 0 ] && ! grep -q 'job finished without' "$d.log" && done_=yes
  a=$(acc "$d"); dpt=-
  [ "$done_" = yes ] && [ "$a" != - ] && dpt=$(awk -v a="$a" -v b="${ref_acc[$cons]}" 'BEGIN { printf "%+.2f", (a - b) * 100 }')
  m=$moment; [ "$late" = late ] && m="$moment*"
  # shellcheck disable=SC2059
  printf "$hdr" "$n" "$role" "$rank" "$cons" "$m" "$at" "$rc" "$done_" "$a" "$dpt" "$detect" "$back" "$regain"
  echo "$role $cons $moment $rc $done_ $dpt $detect $back $regain" >> "$tmp/results"
  rm -rf "$d" "$d.log"
done < <(plan)
echo
echo "(* a startup kill that came after training had begun; exit 137: the job ended with"
echo " the killed process's SIGKILL; not killed: the moment never came or the process had exited)"
echo
# The matrix: completed/killed per cell (.: not drawn or never killed).
printf '| %-11s | %-8s |' role moment
for cons in $conss; do printf ' %5s |' "$cons"; done; echo
printf '|:%s|:%s|' ------------ ---------
for cons in $conss; do printf '%s:|' ------; done; echo
for role in $roles; do
  for moment in startup mid ckpt shutdown; do
    printf '| %-11s | %-8s |' "$role" "$moment"
    for cons in $conss; do
      printf ' %5s |' "$(awk -v r="$role" -v c="$cons" -v m="$moment" '
        $1 == r && $2 == c && $3 == m && $4 != "nokill" { n++; ok += ($5 == "yes") }
        END { print n ? ok "/" n : "." }' "$tmp/results")"
    done
    echo
  done
done
echo
for role in $roles; do
  awk -v r="$role" '$1 == r && $4 != "nokill"' "$tmp/results" > "$tmp/role" || true
  total=$(wc -l < "$tmp/role"); ok=$(awk '$5 == "yes"' "$tmp/role" | wc -l)
  codes=$(awk '$5 != "yes" { print $4 }' "$tmp/role" | sort | uniq -c | awk '{ printf "%s%sx exit %s", s, $1, $2; s = ", " }')
  figs() { # COLUMN: "median M (largest L)" of the numeric values
    local v med mx
    v=$(awk -v c="$1" '$c ~ /^[-+]?[0-9.]+$/ { v = $c + 0; print (v < 0 ? -v : v) }' "$tmp/role")
    med=$(printf '%s' "$v" | bench_median)
    mx=$(printf '%s' "$v" | sort -g | tail -n 1)
    echo "median $med (largest ${mx:-nan})"
  }
  echo "$role: completed $ok/$total${codes:+ (not completed: $codes)}"
  echo "$role: accuracy |d| $(figs 6) pt, detection $(figs 7) s, back $(figs 8) s, regain 90 % $(figs 9) s"
  never=$(awk '$9 == "no"' "$tmp/role" | wc -l)
  [ "$never" -gt 0 ] && echo "$role: $never run(s) never regained 90 % of the reference's steps/s"
done
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
exit "$bad"
