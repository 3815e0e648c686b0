#!/usr/bin/env bash
# A parameter server SIGKILLed and started again at the SAME address (as a container's
# restart policy or a Kubernetes pod does; here a fixed --port), processes started by hand:
# the workers' old connections reconnect to the new process by themselves, so it recovers
# from their requests before the workers hear of the restart; then each opens a fresh
# connection under the same routing id (wk_kv_reconnect). The server must take the fresh
# connection over (ZMQ_ROUTER_HANDOVER): without it ZeroMQ dropped every message of the
# fresh one silently and the job hung until the workers' timeout (exit 75). bsp, 2 servers,
# 2 workers (worker 1 slowed so the kill lands mid-run), the kill right after server 1's
# checkpoint of clock 40; three rounds (the race was lost about 2 times in 3).
source "$(dirname "$0")/lib.sh"
JOB="$SRC/examples/binary-moons.yaml"
F=(--epochs 20 --consistency bsp --cluster.max_restarts 1 --checkpoint.every_steps 10
   --cluster.heartbeat_timeout_s 10 --cluster.timeout_s 20)
export PSTRAIN_NUM_SERVERS=2 PSTRAIN_NUM_WORKERS=2
for round in 1 2 3; do
  D=$WORK/r$round; mkdir -p $D
  rm -f ep.txt
  "$PSTRAIN" coordinator "$JOB" --bind tcp://127.0.0.1:0 --ready-fd 3 "${F[@]}" --output $D/job \
    3> ep.txt 2> $D/coord.log & C=$!
  for _ in $(seq 200); do [ -s ep.txt ] && break; sleep 0.05; done
  [ -s ep.txt ] || fail "round $round: the coordinator did not report its endpoint"
  EP=$(cat ep.txt)
  SP=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  srv() { exec "$PSTRAIN" server "$JOB" --rank $1 "${@:2}" --coordinator $EP "${F[@]}" --output $D/job; }
  srv 0 2> $D/s0.log & S0=$!
  srv 1 --port $SP 2> $D/s1.log & S1=$!
  "$PSTRAIN" worker "$JOB" --rank 0 --coordinator $EP "${F[@]}" --output $D/job 2> $D/w0.log & W0=$!
  PSTRAIN_TEST_SLOW_WORKER=1 PSTRAIN_TEST_STEP_DELAY_MS=20 \
    "$PSTRAIN" worker "$JOB" --rank 1 --coordinator $EP "${F[@]}" --output $D/job 2> $D/w1.log & W1=$!
  for _ in $(seq 6000); do
    grep -q "checkpoint of clock 40" $D/s1.log && break
    kill -0 $S1 2> /dev/null || break
    sleep 0.005
  done
  grep -q "checkpoint of clock 40" $D/s1.log || { kill -9 $C $S0 $S1 $W0 $W1; fail "round $round: no checkpoint of clock 40"; }
  kill -KILL $S1; wait $S1 2> /dev/null
  srv 1 --port $SP 2> $D/s1b.log & S1=$!
  for p in $C $S0 $S1 $W0 $W1; do
    timeout 90 tail --pid=$p -f /dev/null || { kill -9 $C $S0 $S1 $W0 $W1 2> /dev/null; fail "round $round: pid $p did not exit"; }
    wait $p; c=$?
    [ $c -eq 0 ] || { tail -n 4 $D/*.log >&2; fail "round $round: pid $p exited $c"; }
  done
  expect_in $D/s1b.log "server\[1\] warn: recovered in [0-9.]+ s at clock [0-9]+"
  expect_in $D/w1.log "worker\[1\] info: server\[1\] restarted: reconnected to tcp://127.0.0.1:$SP"
  expect_in $D/coord.log "job finished; validation accuracy"
done
