#!/usr/bin/env bash
# Crash-consistent checkpoints: processes SIGKILLed at random points while they write
# checkpoints leave, every time, a newest checkpoint that is complete and holds what was
# written for it, never a torn one, and the restart path finds and uses it.
#
# 1. Server shards: two writers (ranks 0 and 1 sharing one folder, as the servers of a job
#    do) save server-<rank>-clock-<c>.safetensors with increasing clocks and deterministic
#    contents the way ps/srv_ckpt.c does, and are killed together at a random moment
#    (tests/ckpt_crash_writer.c). After each kill the checker does what a restarting
#    server does (ckpt_list newest first, ckpt_state_load, its checks) and compares every
#    listed checkpoint with what was written for its clock; the newest must be the last
#    one the writer reported complete, or the one after (killed between rename and
#    report). The writers then restart after their newest, as a resumed server continues.
# 2. `pstrain train` with a checkpoint after every update, killed at random moments and
#    resumed with --resume each time: the newest ckpt-N loads whole (the checker, then
#    --resume itself, with no "not usable" warning), and the run finished by the last
#    --resume has exactly the weights of a run never interrupted.
#
# PSTRAIN_CRASH_POINTS (default 60) sets the number of kills in part 1 and
# PSTRAIN_CRASH_TRAIN_KILLS (default 8) in part 2; e.g. PSTRAIN_CRASH_POINTS=500 for a
# longer run. Kill delays come from $RANDOM; PSTRAIN_CRASH_SEED makes a run repeatable.
source "$(dirname "$0")/lib.sh"
WRITER=$(dirname "$PSTRAIN")/ckpt_crash_writer
[ -x "$WRITER" ] || fail "no $WRITER (built with pstrain)"
POINTS=${PSTRAIN_CRASH_POINTS:-60}
TRAIN_KILLS=${PSTRAIN_CRASH_TRAIN_KILLS:-8}
RANDOM=${PSTRAIN_CRASH_SEED:-$$}
echo "test_ckpt_crash: $POINTS writer kills, $TRAIN_KILLS train kills, seed ${PSTRAIN_CRASH_SEED:-$$}"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2> /dev/null; done
  wait 2> /dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# A random delay of 1 to MAX milliseconds, as seconds for sleep(1): the kill point.
delay() { printf '%d.%03d' $(( ${2:-0} / 1000 )) $(( RANDOM % $1 + 1 )); }

# ---- 1. Server shard checkpoints ------------------------------------------------------------
mkdir ck
last=(-1 -1) next=(0 100) torn=0
for ((i = 1; i <= POINTS; i++)); do
  pids=()
  for r in 0 1; do
    "$WRITER" write ck $r "${next[$r]}" 3 > "progress-$r.txt" 2> "writer-$r.txt" &
    pids+=($!)
  done
  sleep "$(delay 150)"
  kill -KILL "${pids[@]}" 2> /dev/null
  wait "${pids[@]}" 2> /dev/null
  for r in 0 1; do
    # A writer that stopped by itself failed: it was to run until killed.
    [ -s "writer-$r.txt" ] && { cat "writer-$r.txt" >&2; fail "writer $r failed"; }
    rep=$(tail -n 1 "progress-$r.txt")
    [ -n "$rep" ] && last[$r]=$rep
    newest=$("$WRITER" check ck $r "${last[$r]}" 2> check.txt) || {
      cat check.txt >&2; ls -l ck >&2
      fail "kill $i: server $r's checkpoints after the kill are not consistent"
    }
    torn=$((torn + $(tail -n 1 check.txt)))
    # Nothing complete yet (a round too short on a loaded machine): start where it did,
    # not at clock 0, or writer 1 (from 100) could never reach the check below.
    if [ "$newest" -ge 0 ]; then next[$r]=$((newest + 1)); last[$r]=$newest; fi
  done
done
pids=()
echo "part 1: $POINTS kills, newest clocks ${last[0]} and ${last[1]}, $torn unfinished writes left by the kills"
# Some writes completed (a loaded machine may complete few: no rate is asserted).
[ "${last[0]}" -ge 1 ] && [ "${last[1]}" -ge 101 ] \
  || fail "the writers completed no checkpoint (clocks ${last[0]}, ${last[1]})"
# Kills during a write must have happened, or part 1 tested only kills between writes.
[ "$torn" -ge 1 ] || fail "no kill landed inside a write in $POINTS kills"

# ---- 2. pstrain train, killed and resumed ------------------------------------------------------
JOB=$SRC/examples/binary-moons.yaml
T=(train "$JOB" --epochs 2)  # 640 training rows, batch 32: 40 updates
t0=$(date +%s%N)
expect_exit 0 "$PSTRAIN" "${T[@]}" --output ref
# Kill points within the time an uninterrupted run takes here (a resumed one takes less):
# up to 80% of it, at least 20 ms.
KILL_MS=$(( ($(date +%s%N) - t0) / 1250000 ))
[ "$KILL_MS" -ge 20 ] || KILL_MS=20

# Rounds: a fresh run, killed and resumed until one run finishes, whose model must then be
# the uninterrupted run's; rounds repeat until TRAIN_KILLS kills have happened.
resumed=0 kills=0 finished=0 tries=0 newest=-1
while [ "$kills" -lt "$TRAIN_KILLS" ]; do
  tries=$((tries + 1))
  [ "$tries" -le $((TRAIN_KILLS * 4)) ] || fail "pstrain train was killed $kills times in $tries tries"
  args=("${T[@]}" --output run --checkpoint.every_steps 1)
  # Resume when a checkpoint is complete; killed before its first one, a run starts afresh
  # (--resume of a folder holding only an unfinished write is "no checkpoint there").
  [ "$newest" -ge 0 ] && args+=(--resume run/checkpoints)
  "$PSTRAIN" "${args[@]}" > out.txt 2> err.txt &
  pids=($!)
  sleep "$(awk -v m="$KILL_MS" -v r="$RANDOM" 'BEGIN { printf "%.3f", (r % m + 1) / 1000 }')"
  if kill -KILL "${pids[0]}" 2> /dev/null; then killed=1; else killed=0; fi
  wait "${pids[0]}" 2> /dev/null
  code=$?
  pids=()
  grep -q "is not usable" err.txt && { tail -5 err.txt >&2; fail "resume met a damaged checkpoint"; }
  grep -q "resuming from" err.txt && resumed=$((resumed + 1))
  if [ "$killed" -eq 1 ] && [ "$code" -eq 137 ]; then
    kills=$((kills + 1))
    newest=-1
    [ -d run/checkpoints ] || continue
    newest=$("$WRITER" run run/checkpoints 2> check.txt) \
      || { cat check.txt >&2; fail "train kill $kills: the newest checkpoint does not load"; }
    continue
  fi
  [ "$code" -eq 0 ] || { tail -5 err.txt >&2; fail "pstrain train exited $code"; }
  /usr/bin/python3 "$SRC/tests/cli/compare_safetensors.py" ref/model.safetensors \
    run/model.safetensors 0 > /dev/null \
    || fail "killed and resumed training differs from the uninterrupted run"
  finished=$((finished + 1))
  rm -rf run
  newest=-1
done
# The last round, to its end.
expect_exit 0 "$PSTRAIN" "${T[@]}" --output run --checkpoint.every_steps 1 \
  $([ "$newest" -ge 0 ] && echo --resume run/checkpoints)
! grep -q "is not usable" err.txt || fail "the final resume met a damaged checkpoint"
/usr/bin/python3 "$SRC/tests/cli/compare_safetensors.py" ref/model.safetensors \
  run/model.safetensors 0 || fail "killed and resumed training differs from the uninterrupted run"
finished=$((finished + 1))
echo "part 2: $kills kills of pstrain train, $resumed runs resumed, $finished runs finished" \
  "with the uninterrupted run's weights"
echo "ok"
