#!/usr/bin/env bash
# A job the coordinator ends retriably leaves a checkpoint of one clock: worker 0 (which
# writes the final model) killed with cluster.max_restarts 0 cannot come back, so the
# coordinator stops the job as for a signal -- the other workers stop at one clock, every
# server writes its checkpoint -- and exits 75; `--resume` then completes the job.
source "$(dirname "$0")/lib.sh"
JOB=$SRC/examples/binary-moons.yaml
# 2 workers of 320 rows, batch 32: 10 clocks an epoch, 300 in all.
L=(local "$JOB" --consistency bsp --servers 2 --workers 2 --epochs 30 --cluster.max_restarts 0)

# Worker 1 slowed (10 ms a step) so that the job is mid-run when worker 0 is killed.
PSTRAIN_TEST_SLOW_WORKER=1 PSTRAIN_TEST_STEP_DELAY_MS=10 \
  "$PSTRAIN" "${L[@]}" --output "$WORK/a" > /dev/null 2> a.err &
job=$!
pid=""
for _ in $(seq 300); do
  grep -q "worker\[0\] info: epoch 2/30" a.err &&
    pid=$(pgrep -f "pstrain worker.*--rank 0 .*--output $WORK/a\$" | head -1)
  [ -n "$pid" ] && break
  kill -0 $job 2> /dev/null || break
  sleep 0.1
done
[ -n "$pid" ] || { cat a.err >&2; fail "training never reached epoch 3"; }
kill -KILL "$pid"
timeout 25 tail --pid=$job -f /dev/null || { kill -9 $job; fail "no exit 25 s after worker 0 was killed"; }
code=0; wait $job || code=$?
if pgrep -f -- "--output $WORK/a\$" > /dev/null; then
  pgrep -af -- "--output $WORK/a\$" >&2; fail "processes left behind"
fi
[ $code -eq 75 ] || { tail -20 a.err >&2; fail "job that lost worker 0 exited $code, expected 75"; }
expect_in a.err "coordinator warn: worker\[0\] is lost and cluster.max_restarts is 0, so the final model cannot be written: stopping the job"
expect_in a.err "worker\[1\] info: stopped at clock [0-9]+ .*every push taken"
expect_in a.err "coordinator error: worker\[0\] was lost before it finished, so the final model was not written; the servers wrote checkpoints"
c0=$(ls a/checkpoints | sed -n 's/^server-0-clock-\([0-9]*\)\.safetensors$/\1/p')
c1=$(ls a/checkpoints | sed -n 's/^server-1-clock-\([0-9]*\)\.safetensors$/\1/p')
[ -n "$c0" ] && [ "$c0" = "$c1" ] && [ "$(echo "$c0" | wc -l)" -eq 1 ] \
  || { grep -v " info: " a.err | tail -15 >&2
       fail "servers wrote clocks '$c0' and '$c1', expected one and the same"; }
[ "$c0" -gt 20 ] && [ "$c0" -lt 300 ] || fail "checkpoint of clock $c0, not mid-run"
expect_in a.err "server\[0\] info: checkpoint of clock $c0:"
expect_in a.err "server\[1\] info: checkpoint of clock $c0:"
[ ! -f a/model.safetensors ] || fail "the job without worker 0 wrote model.safetensors"

expect_exit 0 "$PSTRAIN" "${L[@]}" --output a --resume a
expect_in err.txt "coordinator info: resuming from the servers' checkpoints of clock $c0"
[ -f a/model.safetensors ] || fail "the resumed job wrote no model.safetensors"
echo "ok"
