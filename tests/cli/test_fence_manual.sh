#!/usr/bin/env bash
# A hung server among processes started by hand (no launcher to kill it: Kubernetes, the
# cluster script's hosts): stopped with SIGSTOP past cluster.heartbeat_timeout_s, it is
# fenced by the coordinator (a new incarnation may take its rank); resumed with SIGCONT,
# its first heartbeat is refused, it answers no worker and exits 75 saying it was
# replaced; a new `pstrain server --rank 1` (what a restart policy starts) takes the rank,
# recovers from the checkpoint, and the job ends 0.
source "$(dirname "$0")/lib.sh"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "dataset-fashion-mnist not installed: skipping"; exit 77
fi
O=(--epochs 2 --servers 2 --workers 2 --cluster.heartbeat_timeout_s 3 --consistency bsp
   --cluster.max_restarts 1 --checkpoint.every_steps 10 --output "$WORK/m")
ALL=()
trap 'kill -KILL "${ALL[@]}" 2>/dev/null; rm -rf "$WORK"' EXIT

"$PSTRAIN" coordinator --bind tcp://127.0.0.1:0 --ready-fd 3 "${O[@]}" 3> ep.txt 2> c.log & C=$!
for _ in $(seq 100); do [ -s ep.txt ] && break; sleep 0.1; done
[ -s ep.txt ] || fail "coordinator did not report its endpoint"
COORD=$(cat ep.txt)
"$PSTRAIN" server --rank 0 --coordinator "$COORD" "${O[@]}" 2> s0.log & S0=$!
"$PSTRAIN" server --rank 1 --coordinator "$COORD" "${O[@]}" 2> s1.log & S1=$!
"$PSTRAIN" worker --rank 0 --coordinator "$COORD" "${O[@]}" 2> w0.log & W0=$!
"$PSTRAIN" worker --rank 1 --coordinator "$COORD" "${O[@]}" 2> w1.log & W1=$!
ALL=($C $S0 $S1 $W0 $W1)

# wait_log FILE PATTERN SECONDS
wait_log() {
  for ((t = 0; t < $3 * 10; t++)); do grep -Eq -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  tail -5 "$1" >&2; fail "'$2' not in $1 within $3 s"
}
# exit_of PID SECONDS WHAT: waits at most SECONDS for it, sets $code (never hangs).
exit_of() {
  timeout "$2" tail --pid="$1" -f /dev/null || fail "$3 (pid $1) still running after $2 s"
  code=0; wait "$1" || code=$?
}

wait_log w0.log "worker\[0\] info: training with" 60
wait_log s1.log "server\[1\] info: checkpoint of clock" 30
kill -STOP $S1
wait_log c.log "coordinator warn: server\[1\] \(pid $S1, .*\) is not answering: no heartbeat for [0-9.]+ s; fenced: incarnation 1 is refused from now on, incarnation 2 may take its rank" 15
kill -CONT $S1
exit_of $S1 10 "the resumed server"
[ $code -eq 75 ] || { tail -5 s1.log >&2; fail "resumed fenced server exited $code, expected 75"; }
expect_in s1.log "server\[1\] warn: this process did not run for [0-9.]+ s \(stopped\?\): asking the coordinator whether it may go on"
expect_in s1.log "server\[1\] error: .*server\[1\]: replaced by incarnation 2 while stopped; exiting 75"
# Its late heartbeat was refused, and it answered nothing after it woke.
expect_in c.log "coordinator warn: refused HEARTBEAT of server\[1\] incarnation 1: replaced by incarnation 2 while stopped"
# What a restart policy does: a fresh process of the same rank.
"$PSTRAIN" server --rank 1 --coordinator "$COORD" "${O[@]}" 2> s1b.log & S1=$!
ALL+=($S1)
for p in $C $S0 $S1 $W0 $W1; do
  exit_of $p 60 "a process of the job"
  [ $code -eq 0 ] || { tail -5 *.log >&2; fail "pid $p exited $code after the replacement, expected 0"; }
done
expect_in c.log "coordinator warn: server\[1\] restarted as incarnation 2"
expect_in s1b.log "server\[1\] warn: restarted \(incarnation 2\): recovering the shard from the checkpoint of clock [0-9]+"
expect_in c.log "coordinator info: job finished"
