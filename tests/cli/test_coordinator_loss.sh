#!/usr/bin/env bash
# Processes started by hand (pstrain coordinator / server / worker, no launcher to stop
# them) when a peer dies mid-training with SIGKILL:
#  - the coordinator: every server and worker notices its heartbeats go unanswered and exits
#    75 within cluster.heartbeat_timeout_s plus a few seconds, naming the coordinator;
#  - a server: the coordinator ends the job with 75 naming it, and tells the others, which
#    exit 75 with its reason (none waits out cluster.timeout_s);
#  - the coordinator in the last heartbeat timeout of training: a worker waiting for DONE's
#    acknowledgement notices by heartbeat as well, and names what it awaited.
# No process is left behind in either case.
source "$(dirname "$0")/lib.sh"
JOB="$SRC/examples/binary-moons.yaml"
HB=3 # cluster.heartbeat_timeout_s
# Long enough (~20 s unloaded) that the kill falls in the middle of training; the
# network timeout far above the heartbeat one, so only heartbeats can explain a quick exit.
O=(--train "$SRC/examples/data/moons.csv" --cluster.servers 2 --cluster.workers 2
   --consistency bsp --epochs 3000 --cluster.heartbeat_ms 250 --cluster.heartbeat_timeout_s $HB
   --cluster.timeout_s 120)
ALL=()
trap 'kill -KILL "${ALL[@]}" 2>/dev/null; rm -rf "$WORK"' EXIT

start_job() { # DIR: sets C S0 S1 W0 W1 and COORD
  local d=$1
  mkdir -p "$d"
  "$PSTRAIN" coordinator "$JOB" --bind tcp://127.0.0.1:0 --ready-fd 3 "${O[@]}" \
    3> "$d/ep.txt" 2> "$d/c.log" & C=$!
  for _ in $(seq 100); do [ -s "$d/ep.txt" ] && break; sleep 0.1; done
  [ -s "$d/ep.txt" ] || fail "$d: coordinator did not report its endpoint"
  COORD=$(cat "$d/ep.txt")
  "$PSTRAIN" server "$JOB" --rank 0 --coordinator "$COORD" "${O[@]}" 2> "$d/s0.log" & S0=$!
  "$PSTRAIN" server "$JOB" --rank 1 --coordinator "$COORD" "${O[@]}" 2> "$d/s1.log" & S1=$!
  "$PSTRAIN" worker "$JOB" --rank 0 --coordinator "$COORD" --output "$d/out" "${O[@]}" \
    2> "$d/w0.log" & W0=$!
  "$PSTRAIN" worker "$JOB" --rank 1 --coordinator "$COORD" --output "$d/out" "${O[@]}" \
    2> "$d/w1.log" & W1=$!
  ALL=($C $S0 $S1 $W0 $W1)
  local i t
  for i in 0 1; do
    for ((t = 0; t < 600; t++)); do
      grep -q "worker\[$i\] info: training with" "$d/w$i.log" 2>/dev/null && break
      kill -0 $C 2>/dev/null || break
      sleep 0.1
    done
    expect_in "$d/w$i.log" "worker\[$i\] info: training with"
  done
  sleep 1 # well into training
  kill -0 $C $S0 $S1 $W0 $W1 2>/dev/null || fail "$d: the job ended before the kill (too short?)"
}

# exit_of PID SECONDS WHAT: waits at most SECONDS for it, sets $code (never hangs).
exit_of() {
  if ! timeout "$2" tail --pid="$1" -f /dev/null; then
    kill -KILL "${ALL[@]}" 2>/dev/null
    fail "$3 (pid $1) still running $2 s after the kill"
  fi
  code=0; wait "$1" || code=$?
}
nothing_left() { # DIR
  local p
  for p in "${ALL[@]}"; do kill -0 "$p" 2>/dev/null && fail "$1: pid $p left running"; done
  pgrep -f -- "--output $WORK/$1/out" > /dev/null && fail "$1: worker processes left behind"
  return 0
}

# 1. The coordinator is killed: everyone else exits 75 on their own, naming it.
start_job coord
kill -KILL $C
wait $C 2>/dev/null
for who in S0:s0:server:0 S1:s1:server:1 W0:w0:worker:0 W1:w1:worker:1; do
  IFS=: read -r var log role rank <<< "$who"
  name="$role\[$rank\]"
  exit_of "${!var}" $((HB + 10)) "$name"
  [ $code -eq 75 ] || { tail -5 coord/$log.log >&2; fail "coordinator killed: $name exit $code, expected 75"; }
  expect_in coord/$log.log "$name error: .*coordinator $COORD has not answered heartbeats for [0-9.]+ s"
done
nothing_left coord

# 2. Server 1 is killed: the coordinator ends the job (75, naming it) and tells the others.
start_job srv
kill -KILL $S1
wait $S1 2>/dev/null
exit_of $C $((HB + 10)) coordinator
[ $code -eq 75 ] || { tail -5 srv/c.log >&2; fail "server killed: coordinator exit $code, expected 75"; }
expect_in srv/c.log "coordinator error: server\[1\] \(pid $S1, tcp://[0-9.]+:[0-9]+\) is lost: no heartbeat for [0-9.]+ s"
for who in S0:s0:server:0 W0:w0:worker:0 W1:w1:worker:1; do
  IFS=: read -r var log role rank <<< "$who"
  name="$role\[$rank\]"
  exit_of "${!var}" 10 "$name"
  [ $code -eq 75 ] || { tail -5 srv/$log.log >&2; fail "server killed: $name exit $code, expected 75"; }
  expect_in srv/$log.log "$name error: .*job aborted by the coordinator: server\[1\] .*is lost"
done
nothing_left srv

# 3. The coordinator is lost in the last heartbeat_timeout_s of training: the workers that
# then wait for DONE's acknowledgement notice by heartbeat too (not after timeout_s) and
# say what they awaited. Worker 1 sleeps 100 ms a step (10 steps an epoch); the
# coordinator dies at the end of its epoch 2 of 3, so it reaches DONE before a heartbeat
# could have told it.
d=late
mkdir -p $d
OL=(--train "$SRC/examples/data/moons.csv" --cluster.servers 1 --cluster.workers 2
    --consistency asp --epochs 3 --cluster.heartbeat_ms 250 --cluster.heartbeat_timeout_s $HB
    --cluster.timeout_s 120)
"$PSTRAIN" coordinator "$JOB" --bind tcp://127.0.0.1:0 --ready-fd 3 "${OL[@]}" \
  3> $d/ep.txt 2> $d/c.log & C=$!
for _ in $(seq 100); do [ -s $d/ep.txt ] && break; sleep 0.1; done
COORD=$(cat $d/ep.txt)
"$PSTRAIN" server "$JOB" --rank 0 --coordinator "$COORD" "${OL[@]}" 2> $d/s0.log & S0=$!
"$PSTRAIN" worker "$JOB" --rank 0 --coordinator "$COORD" --output "$WORK/$d/out" "${OL[@]}" \
  2> $d/w0.log & W0=$!
PSTRAIN_TEST_SLOW_WORKER=1 PSTRAIN_TEST_STEP_DELAY_MS=100 "$PSTRAIN" worker "$JOB" --rank 1 \
  --coordinator "$COORD" --output "$WORK/$d/out" "${OL[@]}" 2> $d/w1.log & W1=$!
ALL=($C $S0 $W0 $W1)
for _ in $(seq 600); do grep -q "worker\[1\] info: epoch 2:" $d/w1.log && break; sleep 0.05; done
expect_in $d/w1.log "worker\[1\] info: epoch 2:"
kill -KILL $C
wait $C 2>/dev/null
exit_of $W1 $((HB + 8)) "worker[1]"
[ $code -eq 75 ] || { tail -5 $d/w1.log >&2; fail "late coordinator loss: worker[1] exit $code, expected 75"; }
expect_in $d/w1.log "worker\[1\] error: waiting for the acknowledgement of DONE: coordinator $COORD has not answered heartbeats"
exit_of $W0 $((HB + 8)) "worker[0]"
exit_of $S0 $((HB + 8)) "server[0]"
nothing_left $d
echo "ok"
