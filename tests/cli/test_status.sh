#!/usr/bin/env bash
# `pstrain status RUN_DIR` asks a running job's coordinator (found through
# RUN_DIR/coordinator.endpoint) for every process's state: a table, or the JSON document;
# a worker killed mid-run shows as lost; after the job the file is gone (exit 4); an
# unreachable coordinator is exit 75 naming it; a bad option exit 2.
source "$(dirname "$0")/lib.sh"
M=("$SRC/examples/binary-moons.yaml" --consistency asp --servers 1 --workers 2 --epochs 50
   --cluster.heartbeat_timeout_s 2)
# Worker 0 slowed down so the job runs long enough to be asked.
PSTRAIN_TEST_SLOW_WORKER=0 PSTRAIN_TEST_STEP_DELAY_MS=50 \
  "$PSTRAIN" local "${M[@]}" --output "$WORK/run" > /dev/null 2> run.err &
job=$!
ok=""
for _ in $(seq 600); do
  if "$PSTRAIN" status run > table.txt 2> status.err && [ "$(grep -c ' alive ' table.txt)" -eq 3 ] &&
     grep -q "^worker\[0\] .* alive .*[0-9]/" table.txt; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || { cat table.txt status.err >&2; kill $job; fail "status never showed 3 live processes"; }
expect_in table.txt "^job binary-moons: training, asp, [0-9]+% done \(0 of 2 workers finished, 0 lost\)"
expect_in table.txt "^PROCESS +STATE +PID +HEARD +RESTARTS +EPOCH +STEP +LOSS"
expect_in table.txt "^server\[0\] +alive +[0-9]+ +[0-9.]+ s ago +0"
"$PSTRAIN" status --json run > status.json || fail "status --json failed"
/usr/bin/python3 - status.json <<'PY' || fail "status --json is not the status document"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["role"] == "coordinator" and d["phase"] == "training" and d["workers"] == 2
roles = sorted((p["role"], p["rank"], p["state"]) for p in d["processes"])
assert roles == [("server", 0, "alive"), ("worker", 0, "alive"), ("worker", 1, "alive")], roles
assert all(p["last_heard_s_ago"] < 2 and p["incarnation"] == 1 for p in d["processes"])
PY
# Worker 1 killed (the slow worker 0 keeps the job running): lost after the heartbeat
# timeout, and the job goes on without it. (Not worker 0: with cluster.max_restarts 0 its
# loss ends the job at once, and under load the job was gone before status could ask.)
# Then the job is stopped (SIGTERM: 143).
kill -KILL "$(pgrep -f "pstrain worker.*--rank 1 .*--output $WORK/run$")"
ok=""
for _ in $(seq 100); do
  "$PSTRAIN" status run > table.txt 2> /dev/null && grep -Eq "^worker\[1\] +lost " table.txt && { ok=1; break; }
  sleep 0.1
done
[ -n "$ok" ] || { cat table.txt run.err >&2; kill $job; fail "status never showed worker[1] lost"; }
expect_in table.txt "1 lost\)"
kill -TERM $job
wait $job
code=$?
[ $code -eq 143 ] || fail "the stopped job exited $code, expected 143"
expect_exit 4 "$PSTRAIN" status run
expect_in err.txt "run/coordinator.endpoint: No such file or directory"
expect_exit 75 "$PSTRAIN" status --coordinator tcp://127.0.0.1:1 --timeout 0.5
expect_in err.txt "no answer from the coordinator at tcp://127.0.0.1:1 within 0.5 s"
expect_exit 2 "$PSTRAIN" status --frobnicate
expect_in err.txt "unknown or incomplete option '--frobnicate'"
expect_exit 0 "$PSTRAIN" status --help
expect_in out.txt "usage: pstrain status"
