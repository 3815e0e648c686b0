#!/usr/bin/env bash
# deploy/cluster/pstrain-cluster's restart policy for workers, on this machine: the remote
# shell is a local one (it records the host it was asked for and runs `bash -s` here).
#  - cluster.max_restarts 1 in the job file: a worker killed (SIGKILL) is started again on
#    its host with its rank, rejoins, and the job ends 0;
#  - --max-restarts 0: a killed worker is not started again; the job goes on without it
#    and ends 0, saying so;
#  - a permanent failure (exit 1, a refused NaN gradient) stops the job with its code, with
#    restarts left (--cluster.max_restarts 2 among the overrides).
# No process of the job is left behind.
source "$(dirname "$0")/lib.sh"
CLUSTER="$SRC/deploy/cluster/pstrain-cluster"
cat > rsh <<EOF
#!/bin/sh
echo "\$1" >> "$WORK/rsh-hosts"
shift
exec "\$@"
EOF
chmod +x rsh
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > hosts <<EOF
h1 127.0.0.1 coordinator,server
h2 127.0.0.1 server,worker
h3 127.0.0.1 worker,worker
EOF
# The example job with a restart budget and a short heartbeat timeout.
cp "$SRC/examples/binary-moons.yaml" job.yaml
cat >> job.yaml <<EOF
cluster:
  max_restarts: 1   # what pstrain-cluster reads
  heartbeat_ms: 250
  heartbeat_timeout_s: 3
EOF
O=(--train "$SRC/examples/data/moons.csv" --consistency bsp --epochs 600)
RUN=""
trap '[ -n "$RUN" ] && kill -TERM $RUN 2>/dev/null; wait; rm -rf "$WORK"' EXIT

# run_and_kill DIR WORKER CLUSTER-ARGS... -- OVERRIDES: starts the run, SIGKILLs the worker
# once it trains, waits for the run (at most 120 s) and sets $code.
run_and_kill() {
  local d=$1 w=$2 pid=""; shift 2
  "$CLUSTER" run hosts job.yaml --logs "$d" --rsh "$WORK/rsh" --pstrain "$PSTRAIN" --port "$PORT" --grace 3 "$@" \
    2> "$d.err" & RUN=$!
  for _ in $(seq 1200); do
    grep -q "worker\[$w\] info: training with" "$d/worker-$w.log" 2>/dev/null &&
      pid=$(sed -n "s/^worker-$w [^ ]* //p" "$d/procs")
    [ -n "$pid" ] && break
    kill -0 $RUN 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$pid" ] || { cat "$d.err" >&2; fail "$d: worker $w never started training"; }
  sleep 0.3
  kill -KILL "$pid"
  timeout 120 tail --pid=$RUN -f /dev/null || fail "$d: the run did not end"
  code=0; wait $RUN || code=$?
  RUN=""
  pgrep -f -- "$(cat "$d/tag"):" > /dev/null && fail "$d: processes left behind"
  return 0
}

# 1. Restarted (budget from the job file): rejoins and finishes.
run_and_kill r1 2 -- "${O[@]}" --output "$WORK/o1"
[ $code -eq 0 ] || { tail -5 r1.err r1/*.log >&2; fail "restarted worker: run exit $code, expected 0"; }
expect_in r1.err "worker restarts: 1"
expect_in r1.err "pstrain-cluster: worker-2 exited 137; starting it again on h3 \(restart 1 of 1\)"
expect_in r1/worker-2.log "worker\[2\] info: rejoined as incarnation 2 at clock [0-9]+"
expect_in r1/coordinator-0.log "worker\[2\] rejoined as incarnation 2"
expect_in r1/coordinator-0.log "worker\[2\] finished"
expect_in r1.err "job finished, exit 0"
[ "$(grep -c '^h3$' rsh-hosts)" -eq 3 ] || fail "h3 should have been asked for 3 processes (2 + the restart)"
"$CLUSTER" status r1 > status.txt
expect_in status.txt "worker-2 +h3 +exit 0 \(restarted 1x\)"
[ -s o1/model.safetensors ] || fail "restarted run: no model written"

# 2. No restarts (--max-restarts 0 over the job file's 1): the job goes on without it.
run_and_kill r2 1 --max-restarts 0 -- "${O[@]}" --output "$WORK/o2"
[ $code -eq 0 ] || { tail -5 r2.err r2/*.log >&2; fail "worker left behind: run exit $code, expected 0"; }
expect_in r2.err "pstrain-cluster: worker-1 exited 137; the job goes on without it"
expect_in r2/coordinator-0.log "worker\[1\] \(pid [0-9]+\) is lost: no heartbeat for [0-9.]+ s"
expect_in r2.err "job finished without worker-1"
grep -q "starting it again" r2.err && fail "restarted with --max-restarts 0"
[ -s o2/model.safetensors ] || fail "run without worker 1: no model written"

# 3. A permanent failure (exit 1) stops the job, however many restarts are left.
code=0
PSTRAIN_TEST_NAN_WORKER=1 PSTRAIN_TEST_NAN_STEP=3 timeout 120 "$CLUSTER" run hosts job.yaml \
  --logs r3 --rsh "$WORK/rsh" --pstrain "$PSTRAIN" --port "$PORT" --grace 3 -- "${O[@]}" --cluster.max_restarts 2 \
  --output "$WORK/o3" 2> r3.err || code=$?
[ $code -eq 1 ] || { tail -5 r3.err >&2; fail "NaN gradient: run exit $code, expected 1"; }
expect_in r3.err "worker restarts: 2"
expect_in r3.err "worker-1 exited 1; stopping the others"
grep -q "starting it again" r3.err && fail "a worker that exited 1 was started again"

# Bad value: a usage error.
expect_exit 2 "$CLUSTER" run hosts job.yaml --max-restarts x
expect_in err.txt "max restarts must be a number"
echo "ok"
