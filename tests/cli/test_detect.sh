#!/usr/bin/env bash
# Dead-peer detection with the default heartbeat settings (500 ms, timeout 10 s): a
# process killed with SIGKILL closes its connections at once, and the coordinator declares
# it lost within 3 s of the kill (a closed heartbeat connection, confirmed by a missed
# heartbeat) instead of after the 10 s timeout -- a worker of `pstrain local` (the job goes
# on without it) and a server of a hand-started job (the job ends with 75).
source "$(dirname "$0")/lib.sh"
JOB="$SRC/examples/binary-moons.yaml"
O=(--consistency bsp --epochs 3000 --cluster.timeout_s 120)
ALL=()
trap 'kill -KILL "${ALL[@]}" 2>/dev/null; rm -rf "$WORK"' EXIT

now_ms() { date +%s%3N; }
# lost_within LOG PATTERN T0_MS LIMIT_MS: waits for PATTERN in LOG; fails unless the line's
# own time stamp is within LIMIT_MS of T0_MS.
lost_within() {
  local line="" t
  for _ in $(seq 150); do line=$(grep -E -m1 "$2" "$1") && break; sleep 0.1; done
  [ -n "$line" ] || { tail -5 "$1" >&2; fail "'$2' not in $1 15 s after the kill"; }
  t=$(/usr/bin/python3 -c "import datetime,sys; print(round(datetime.datetime.fromisoformat(sys.argv[1][:-1]).replace(tzinfo=datetime.timezone.utc).timestamp()*1000))" "${line%% *}")
  echo "detected after $((t - $3)) ms: ${line#* }"
  [ $((t - $3)) -le "$4" ] || fail "detected $((t - $3)) ms after the kill, expected <= $4 ms"
}

# ---- A worker of pstrain local ----------------------------------------------------------
"$PSTRAIN" local "$JOB" "${O[@]}" --output "$WORK/a" > /dev/null 2> a.err &
job=$!; ALL=($job)
for _ in $(seq 300); do grep -q "worker\[1\] info: training with" a.err && break; sleep 0.1; done
expect_in a.err "worker\[1\] info: training with"
sleep 1
pid=$(pgrep -f "pstrain worker.*--rank 1 .*--output $WORK/a\$" | head -1)
t0=$(now_ms); kill -KILL "$pid"
lost_within a.err "coordinator warn: worker\[1\] \(pid $pid\) is lost: no heartbeat for [0-9.]+ s and its connection is closed" "$t0" 3000
# The servers learn it from the next heartbeat answer.
for _ in $(seq 50); do grep -q "server\[0\] warn: worker\[1\] is lost" a.err && break; sleep 0.1; done
expect_in a.err "server\[0\] warn: worker\[1\] is lost"
kill -TERM $job; wait $job

# ---- A server of a hand-started job -----------------------------------------------------
"$PSTRAIN" coordinator "$JOB" --bind tcp://127.0.0.1:0 --ready-fd 3 "${O[@]}" 3> ep.txt 2> c.log &
C=$!; ALL=($C)
for _ in $(seq 100); do [ -s ep.txt ] && break; sleep 0.1; done
COORD=$(cat ep.txt)
"$PSTRAIN" server "$JOB" --rank 0 --coordinator "$COORD" "${O[@]}" 2> s0.log & S0=$!
"$PSTRAIN" server "$JOB" --rank 1 --coordinator "$COORD" "${O[@]}" 2> s1.log & S1=$!
"$PSTRAIN" worker "$JOB" --rank 0 --coordinator "$COORD" --output out "${O[@]}" 2> w0.log & W0=$!
"$PSTRAIN" worker "$JOB" --rank 1 --coordinator "$COORD" --output out "${O[@]}" 2> w1.log & W1=$!
ALL=($C $S0 $S1 $W0 $W1)
for _ in $(seq 300); do grep -q "training with" w1.log && break; sleep 0.1; done
expect_in w1.log "worker\[1\] info: training with"
sleep 1
t0=$(now_ms); kill -KILL $S1
lost_within c.log "coordinator error: server\[1\] \(pid $S1, .*\) is lost: no heartbeat for [0-9.]+ s and its connection is closed" "$t0" 3000
for p in $C $S0 $W0 $W1; do
  timeout 15 tail --pid=$p -f /dev/null || fail "pid $p still running 15 s after the server's loss"
done
echo "ok"
