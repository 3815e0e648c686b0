#!/usr/bin/env bash
# TensorFlow's TF_CONFIG (what Kubeflow's TFJob injects) configures every role: rank from
# task.index, the coordinator from cluster.chief[0], counts from the lengths of cluster.ps
# and cluster.worker, a server's advertised address and port from its own entry. A real
# tiny job (2 servers, 2 workers) runs with nothing else set; bad TF_CONFIG is exit 2.
source "$(dirname "$0")/lib.sh"
JOB="$SRC/examples/binary-moons.yaml"

tf() { # TYPE INDEX: TF_CONFIG for this cluster
  printf '{"cluster": {"chief": ["127.0.0.1:%s"], "ps": ["127.0.0.1:%s", "127.0.0.1:0"],
    "worker": ["w0.invalid:1", "w1.invalid:1"]}, "task": {"type": "%s", "index": %s}}' \
    "$PORT" "$SPORT" "$1" "$2"
}
# A free port for server 0's entry (checked below to be the one it listens on).
SPORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The coordinator's port is not known before it binds: its --bind flag wins over its entry.
PORT=0
TF_CONFIG=$(tf chief 0) "$PSTRAIN" coordinator "$JOB" --bind tcp://127.0.0.1:0 --ready-fd 3 \
  3> ep.txt 2> coord.log & CPID=$!
for _ in $(seq 100); do [ -s ep.txt ] && break; sleep 0.1; done
[ -s ep.txt ] || { cat coord.log >&2; fail "coordinator did not report its endpoint"; }
PORT=$(sed 's/.*://' ep.txt)
TF_CONFIG=$(tf ps 0) "$PSTRAIN" server "$JOB" 2> s0.log & S0=$!
TF_CONFIG=$(tf ps 1) "$PSTRAIN" server "$JOB" 2> s1.log & S1=$!
TF_CONFIG=$(tf worker 0) "$PSTRAIN" worker "$JOB" --output out 2> w0.log & W0=$!
TF_CONFIG=$(tf worker 1) "$PSTRAIN" worker "$JOB" --output out 2> w1.log & W1=$!
for p in $CPID $S0 $S1 $W0 $W1; do
  timeout 60 tail --pid=$p -f /dev/null || { kill -9 $CPID $S0 $S1 $W0 $W1; fail "pid $p did not exit"; }
  wait $p || { tail -n 3 *.log >&2; fail "a process exited non-zero"; }
done
expect_in coord.log "all 2 servers and 2 workers joined"
expect_in coord.log "job finished; validation accuracy"
expect_in s0.log "listening on tcp://0\.0\.0\.0:$SPORT \(advertised as tcp://127\.0\.0\.1:$SPORT\)"
expect_in s1.log "server\[1\] info: done:"
[ -s out/model.safetensors ] || fail "worker 0 wrote no model"

# Flags and the other variables win over TF_CONFIG: --rank 1 with task.index 0 asks for
# a rank the 1-server job (PSTRAIN_NUM_SERVERS over len(ps) = 2) does not have.
PORT=1
TF_CONFIG=$(tf ps 0) PSTRAIN_NUM_SERVERS=1 expect_exit 2 "$PSTRAIN" server "$JOB" --rank 1
expect_in err.txt "--rank 1 but the job has 1 servers"

# Mistakes are one line naming TF_CONFIG, exit 2.
TF_CONFIG='{"cluster": {' expect_exit 2 "$PSTRAIN" worker "$JOB"
expect_in err.txt "^pstrain worker: TF_CONFIG is not a JSON object$"
TF_CONFIG='{"cluster": {}, "task": {"type": "worker"}}' expect_exit 2 "$PSTRAIN" worker "$JOB"
expect_in err.txt "TF_CONFIG needs .*index"
TF_CONFIG=$(tf worker 0) expect_exit 2 "$PSTRAIN" server "$JOB"
expect_in err.txt "TF_CONFIG: task.type is 'worker' but this is \`pstrain server\` \(task.type 'ps'\)"
TF_CONFIG=$(tf ps 0) expect_exit 2 "$PSTRAIN" coordinator "$JOB"
expect_in err.txt "task.type is 'ps' but this is \`pstrain coordinator\`"
TF_CONFIG=$(tf worker 2) expect_exit 2 "$PSTRAIN" worker "$JOB"
expect_in err.txt "TF_CONFIG: task.index 2 but cluster.worker has 2 entries"
TF_CONFIG='{"cluster": {"ps": ["nohost"]}, "task": {"type": "ps", "index": 0}}' \
  expect_exit 2 "$PSTRAIN" server "$JOB"
expect_in err.txt "TF_CONFIG: cluster lists must hold"
[ "$(wc -l < err.txt)" -eq 1 ] || fail "error is not one line"
echo "ok"
