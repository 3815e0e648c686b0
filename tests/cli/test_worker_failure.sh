#!/usr/bin/env bash
# Workers that die, are restarted, or are paused past the heartbeat timeout (real processes
# under `pstrain local`, killed with signals):
#  - SIGKILL, no restarts: the coordinator declares the worker lost after
#    cluster.heartbeat_timeout_s, the servers go on without it (asp and bsp), the job ends 0
#    and says who was lost; accuracy within 1 point of a clean run;
#  - SIGKILL with cluster.max_restarts 1: the launcher starts it again, it rejoins (a new
#    incarnation) at the servers' clock and finishes its partition;
#  - SIGSTOP past the timeout, then SIGCONT: the paused incarnation is refused (it cannot
#    touch the model) and exits 75 with a clear error; the job ends 0 without it; never
#    SIGCONT: the launcher stops it after the job has finished and still exits 0;
#  - worker 0 lost for good: the final model cannot be written: exit 75, said so;
#  - a NaN gradient: refused (cluster.nonfinite reject: the job fails, exit 1, naming it)
#    or skipped (nonfinite skip: the job ends 0 and counts it).
# After every case no process of the job is left.
source "$(dirname "$0")/lib.sh"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "dataset-fashion-mnist not installed: skipping"; exit 77
fi
F=(--epochs 2 --servers 2 --workers 3 --cluster.heartbeat_timeout_s 3 "${FM_SUBSET[@]}")

accuracy() { json_field "$1/metrics.jsonl" test accuracy; }
within_1pt() { # A B WHAT (1 point; ACC_TOL in lib.sh)
  /usr/bin/python3 -c "import sys; sys.exit(0 if abs($1 - $2) <= $ACC_TOL else 1)" \
    || fail "$3: test accuracy $2, clean run $1: more than $ACC_TOL apart"
}

for cons in asp bsp; do
  expect_exit 0 "$PSTRAIN" local "${F[@]}" --consistency $cons --output clean_$cons
  run_and_signal kill_$cons KILL worker 1 "${F[@]}" --consistency $cons
  [ $code -eq 0 ] || { tail -5 kill_$cons.err >&2; fail "$cons: job with a killed worker exited $code"; }
  expect_in kill_$cons.err "local warn: worker\[1\] \(pid [0-9]+\) killed by signal 9; the job goes on without it"
  expect_in kill_$cons.err "coordinator warn: worker\[1\] \(pid [0-9]+\) is lost: no heartbeat for [0-9.]+ s"
  expect_in kill_$cons.err "server\[0\] warn: worker\[1\] is lost"
  expect_in kill_$cons.err "local warn: job finished without worker\[1\]"
  within_1pt "$(accuracy clean_$cons)" "$(accuracy kill_$cons)" "$cons, worker killed"
done

# Restarted: it rejoins and finishes its partition.
run_and_signal restart KILL worker 2 "${F[@]}" --consistency bsp --cluster.max_restarts 1
[ $code -eq 0 ] || { tail -5 restart.err >&2; fail "job with a restarted worker exited $code"; }
expect_in restart.err "local warn: worker\[2\] \(pid [0-9]+\) killed by signal 9; starting it again \(restart 1 of 1\)"
expect_in restart.err "coordinator info: worker\[2\] rejoined as incarnation 2"
expect_in restart.err "server\[1\] info: worker\[2\] rejoined \(incarnation 2\) at clock [0-9]+"
expect_in restart.err "worker\[2\] info: rejoined as incarnation 2 at clock [0-9]+"
expect_in restart.err "coordinator info: worker\[2\] finished"
expect_in restart.err "local info: job finished: all 6 processes exited 0"
within_1pt "$(accuracy clean_bsp)" "$(accuracy restart)" "bsp, worker restarted"

# Paused past the timeout: given up, refused on resuming, exits 75; the job goes on.
run_and_signal paused STOP worker 1 "${F[@]}" --consistency asp
[ $code -eq 0 ] || { tail -5 paused.err >&2; fail "job with a paused worker exited $code"; }
expect_in paused.err "worker\[1\] error: .*(incarnation 1 was declared lost|which the coordinator declared lost)"
expect_in paused.err "local warn: worker\[1\] \(pid [0-9]+\) exited with code 75; the job goes on without it"
within_1pt "$(accuracy clean_asp)" "$(accuracy paused)" "asp, worker paused"

# Paused for good: once the job has finished the launcher waits its grace period, then
# stops the paused process; the job's exit code is still 0.
PSTRAIN_LOCAL_GRACE_S=2 run_and_signal paused_forever STOP-ONLY worker 1 "${F[@]}" --consistency asp
[ $code -eq 0 ] || { tail -5 paused_forever.err >&2; fail "job with a worker paused for good exited $code"; }
expect_in paused_forever.err "local warn: the job finished 2 s ago, but worker\[1\] \(pid [0-9]+\) still runs: stopping it"
expect_in paused_forever.err "local warn: job finished; 1 process\(es\) still running after it were stopped"

# Worker 0 writes the final model: losing it for good fails the job, retriably.
run_and_signal lost0 KILL worker 0 "${F[@]}" --consistency asp
[ $code -eq 75 ] || { tail -5 lost0.err >&2; fail "job that lost worker 0 exited $code, expected 75"; }
expect_in lost0.err "coordinator error: worker\[0\] was lost before it finished, so the final model was not written"

# NaN gradients (test hook: worker 1's gradient of step 3 gets a NaN).
M=("$SRC/examples/binary-moons.yaml" --consistency bsp --servers 2 --workers 2 --epochs 2)
PSTRAIN_TEST_NAN_WORKER=1 PSTRAIN_TEST_NAN_STEP=3 expect_exit 1 "$PSTRAIN" local "${M[@]}" --output nan_reject
expect_in err.txt "worker\[1\] error: server\[0\] refused request [0-9]+: push from worker 1: gradient 0 is nan \(rejected"
expect_in err.txt "server\[0\] warn: refused PUSH from worker\[1\]"
PSTRAIN_TEST_NAN_WORKER=1 PSTRAIN_TEST_NAN_STEP=3 expect_exit 0 "$PSTRAIN" local "${M[@]}" \
  --cluster.nonfinite skip --output nan_skip
expect_in err.txt "coordinator warn: 1 gradient chunk\(s\) with NaN/Inf were skipped"
expect_in err.txt "server\[0\] info: done: .* 1 non-finite gradients skipped"
/usr/bin/python3 - nan_skip/model.safetensors <<'PY' || fail "the skip run's model is not finite"
import json, struct, sys, math
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
data = b[8 + n:]
vals = struct.unpack("<%df" % (len(data) // 4), data)
sys.exit(0 if all(math.isfinite(v) for v in vals) else 1)
PY
