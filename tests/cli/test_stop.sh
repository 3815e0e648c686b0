#!/usr/bin/env bash
# A stopped distributed job (SIGTERM or Ctrl-C to `pstrain local`) leaves a checkpoint of
# one clock on every server, with the default checkpoint settings (no periodic ones), and
# `--resume` continues it: under bsp to exactly the weights of an undisturbed run. The
# stop is bounded; a second Ctrl-C stops at once. The coordinator's stop alone (a
# hand-started job interrupted there) reaches every worker through the membership.
source "$(dirname "$0")/lib.sh"
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"
JOB=$SRC/examples/binary-moons.yaml
# 2 workers of 320 rows, batch 32: 10 clocks an epoch, 300 in all.
L=(local "$JOB" --consistency bsp --servers 2 --workers 2 --epochs 30)

expect_exit 0 "$PSTRAIN" "${L[@]}" --output ref

# start_slow OUT: the job with worker 1 slowed (10 ms a step: timing only, bsp's result is
# the same), in the background as $job; returns once worker 0 is in its third epoch.
start_slow() {
  PSTRAIN_TEST_SLOW_WORKER=1 PSTRAIN_TEST_STEP_DELAY_MS=10 \
    "$PSTRAIN" "${L[@]}" --output "$WORK/$1" > /dev/null 2> "$1.err" &
  job=$!
  for _ in $(seq 300); do
    grep -q "worker\[0\] info: epoch 2/30" "$1.err" && return 0
    kill -0 $job 2> /dev/null || break
    sleep 0.1
  done
  cat "$1.err" >&2; fail "$1: training never reached epoch 3"
}

# wait_job OUT LIMIT_S: waits for $job at most LIMIT_S seconds; sets $code.
wait_job() {
  timeout "$2" tail --pid=$job -f /dev/null || { kill -9 $job; fail "$1: no exit $2 s after the stop"; }
  code=0; wait $job || code=$?
  if pgrep -f -- "--output $WORK/$1\$" > /dev/null; then
    pgrep -af -- "--output $WORK/$1\$" >&2; fail "$1: processes left behind"
  fi
}

# one_clock OUT: prints the one clock every server wrote (fails unless exactly one, on both).
one_clock() {
  local c0 c1
  c0=$(ls "$1/checkpoints" | sed -n 's/^server-0-clock-\([0-9]*\)\.safetensors$/\1/p')
  c1=$(ls "$1/checkpoints" | sed -n 's/^server-1-clock-\([0-9]*\)\.safetensors$/\1/p')
  [ -n "$c0" ] && [ "$c0" = "$c1" ] && [ "$(echo "$c0" | wc -l)" -eq 1 ] \
    || { grep -v " info: " "$1.err" | tail -15 >&2
         fail "$1: servers wrote clocks '$c0' and '$c1', expected one and the same"; }
  echo "$c0"
}

# ---- SIGTERM to the launcher mid-training -------------------------------------------
start_slow a
kill -TERM $job
wait_job a 20
[ $code -eq 143 ] || { tail -20 a.err >&2; fail "stopped job exited $code, expected 143"; }
clock=$(one_clock a)
[ "$clock" -ge 20 ] && [ "$clock" -lt 300 ] || fail "stop checkpoint of clock $clock, not mid-run"
expect_in a.err "coordinator warn: job stopped \(signal 15\) with workers at clocks"
expect_in a.err "server\[0\] info: checkpoint of clock $clock:"
expect_in a.err "server\[1\] info: checkpoint of clock $clock:"
[ ! -f a/model.safetensors ] || fail "a stopped job wrote model.safetensors"
expect_exit 0 "$PSTRAIN" "${L[@]}" --output a --resume a
expect_in err.txt "coordinator info: resuming from the servers' checkpoints of clock $clock"
$COMPARE ref/model.safetensors a/model.safetensors 0 \
  || fail "bsp stopped by SIGTERM at clock $clock and resumed differs from the undisturbed run"

# ---- Ctrl-C (SIGINT to the launcher), then a second one: the second stops at once ----
start_slow b
kill -INT $job
wait_job b 20
[ $code -eq 130 ] || { tail -20 b.err >&2; fail "Ctrl-C: exit $code, expected 130"; }
one_clock b > /dev/null
start_slow c
kill -INT $job; kill -INT $job
wait_job c 5
[ $code -eq 130 ] || { tail -20 c.err >&2; fail "two Ctrl-C: exit $code, expected 130"; }

# ---- The coordinator alone stopped: it announces the stop, every worker stops ---------
start_slow d
kill -TERM "$(pgrep -f "pstrain coordinator.*--output $WORK/d\$" | head -1)"
wait_job d 20
[ $code -eq 143 ] || { tail -20 d.err >&2; fail "coordinator's stop: exit $code, expected 143"; }
clock=$(one_clock d)
expect_in d.err "coordinator warn: stopped by signal 15: every worker stops after its current step"
expect_exit 0 "$PSTRAIN" "${L[@]}" --output d --resume d
$COMPARE ref/model.safetensors d/model.safetensors 0 \
  || fail "bsp stopped at the coordinator (clock $clock) and resumed differs"
echo "ok"
