#!/usr/bin/env bash
# SIGTERM and SIGINT stop training after the current step: exit 143 / 130, the metrics
# written so far kept, no hang.
source "$(dirname "$0")/lib.sh"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
  || { echo "dataset-fashion-mnist is not installed"; exit 77; }

for sig in TERM INT; do
  rm -rf out; : > log.txt
  "$PSTRAIN" train --epochs 1000 --train.log_every 20 --output out 2> log.txt &
  pid=$!
  # Wait (bounded) until training has reported a step, then signal.
  for _ in $(seq 600); do grep -q "step 20/" log.txt && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  grep -q "step 20/" log.txt || { kill -9 $pid; cat log.txt >&2; fail "training never reported a step"; }
  kill -$sig $pid
  code=0
  timeout 30 tail --pid=$pid -f /dev/null || { kill -9 $pid; fail "no exit 30 s after SIG$sig"; }
  wait $pid || code=$?
  want=$([ $sig = TERM ] && echo 143 || echo 130)
  [ "$code" -eq "$want" ] || { cat log.txt >&2; fail "SIG$sig: exit $code, expected $want"; }
  expect_in log.txt "stopped by signal"
  expect_in out/metrics.csv "^1,"
  expect_in out/metrics.jsonl '"interrupted":true'
done
echo "ok"
