#!/usr/bin/env bash
# Processes started by hand find each other through the coordinator, configured by the
# environment variables users already have (ps-lite's DMLC_*, Kubernetes'
# JOB_COMPLETION_INDEX); a process running a different job is refused with a clear error.
source "$(dirname "$0")/lib.sh"
JOB="$SRC/examples/binary-moons.yaml"

start_coordinator() { # extra args...; sets CPID and PORT
  rm -f ep.txt
  "$PSTRAIN" coordinator "$JOB" --bind tcp://127.0.0.1:0 --ready-fd 3 "$@" 3> ep.txt 2> coord.log &
  CPID=$!
  for _ in $(seq 100); do [ -s ep.txt ] && break; sleep 0.1; done
  [ -s ep.txt ] || fail "coordinator did not report its endpoint"
  PORT=$(sed 's/.*://' ep.txt)
}

# ps-lite style: counts and the coordinator's address from DMLC_*, ranks from the
# Kubernetes index; 1 server, 2 workers.
export DMLC_NUM_SERVER=1 DMLC_NUM_WORKER=2
start_coordinator
export DMLC_PS_ROOT_URI=127.0.0.1 DMLC_PS_ROOT_PORT=$PORT
JOB_COMPLETION_INDEX=0 "$PSTRAIN" server "$JOB" 2> server.log & S=$!
JOB_COMPLETION_INDEX=0 "$PSTRAIN" worker "$JOB" --output out 2> w0.log & W0=$!
JOB_COMPLETION_INDEX=1 "$PSTRAIN" worker "$JOB" --output out 2> w1.log & W1=$!
for p in $CPID $S $W0 $W1; do
  timeout 60 tail --pid=$p -f /dev/null || { kill -9 $CPID $S $W0 $W1; fail "pid $p did not exit"; }
  wait $p || { tail -n 3 *.log >&2; fail "a process exited non-zero"; }
done
expect_in coord.log "all 1 servers and 2 workers joined"
expect_in coord.log "job finished; validation accuracy"
expect_in server.log "server\[0\] info: done:"
[ -s out/model.safetensors ] || fail "worker 0 wrote no model"

# A worker with another learning rate runs a different job: refused, exit 2, named.
start_coordinator
export DMLC_PS_ROOT_PORT=$PORT
"$PSTRAIN" server "$JOB" --rank 0 2> server.log & S=$!
JOB_COMPLETION_INDEX=0 "$PSTRAIN" worker "$JOB" --output out2 2> w0.log & W0=$!
# Let those two join first, so they are among the processes told the job is off.
for _ in $(seq 300); do grep -q "2 of 3" coord.log && break; sleep 0.1; done
expect_in coord.log "2 of 3"
JOB_COMPLETION_INDEX=1 "$PSTRAIN" worker "$JOB" --output out2 --lr 0.5 2> w1.log & W1=$!
code=0; timeout 60 tail --pid=$CPID -f /dev/null; wait $CPID || code=$?
[ $code -eq 2 ] || { cat coord.log >&2; fail "coordinator exit $code, expected 2"; }
expect_in coord.log "worker\[1\] runs a different job"
code=0; timeout 60 tail --pid=$W1 -f /dev/null; wait $W1 || code=$?
[ $code -eq 2 ] || { cat w1.log >&2; fail "refused worker exit $code, expected 2"; }
expect_in w1.log "coordinator refused registration: worker\[1\] runs a different job"
# The others had joined: they are told the job is off and stop at once, exit 2.
for p in $S $W0; do
  code=0; timeout 30 tail --pid=$p -f /dev/null || { kill -9 $p; fail "pid $p still waiting"; }
  wait $p || code=$?
  [ $code -eq 2 ] || fail "a process that had joined exited $code, expected 2"
done
expect_in server.log "job aborted by the coordinator"


# Started before the coordinator: they keep reconnecting until it is up (within the
# timeout), then register and train.
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DMLC_PS_ROOT_URI=127.0.0.1 DMLC_PS_ROOT_PORT=$PORT
JOB_COMPLETION_INDEX=0 "$PSTRAIN" server "$JOB" 2> late_s.log & S=$!
JOB_COMPLETION_INDEX=0 "$PSTRAIN" worker "$JOB" --output late 2> late_w0.log & W0=$!
JOB_COMPLETION_INDEX=1 "$PSTRAIN" worker "$JOB" --output late 2> late_w1.log & W1=$!
for _ in $(seq 100); do grep -q "registering" late_s.log && break; sleep 0.1; done
"$PSTRAIN" coordinator "$JOB" --bind tcp://127.0.0.1:$PORT 2> late_c.log & C=$!
for p in $C $S $W0 $W1; do
  timeout 60 tail --pid=$p -f /dev/null || { kill -9 $C $S $W0 $W1; fail "pid $p did not exit"; }
  wait $p || { tail -n 3 late_*.log >&2; fail "a process started before the coordinator failed"; }
done
expect_in late_c.log "job finished"

# Missing rank or coordinator: usage errors.
unset DMLC_PS_ROOT_URI DMLC_PS_ROOT_PORT
expect_exit 2 "$PSTRAIN" worker "$JOB" --rank 0; expect_in err.txt "--coordinator is required"
expect_exit 2 "$PSTRAIN" server "$JOB" --coordinator tcp://127.0.0.1:1; expect_in err.txt "--rank is required"
expect_exit 2 "$PSTRAIN" server "$JOB" --rank 5 --coordinator tcp://127.0.0.1:1
expect_in err.txt "the job has 1 servers"
echo "ok"
