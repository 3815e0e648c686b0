#!/usr/bin/env bash
# A hung peer under `pstrain local` with cluster.max_restarts 1: a server or a worker
# stopped with SIGSTOP (never resumed) past cluster.heartbeat_timeout_s is fenced by the
# coordinator (its incarnation is refused from then on), killed by the launcher one second
# later (it cannot answer) and replaced by a new process of the same rank -- the server
# recovers its shard from its newest checkpoint, the worker rejoins -- and the job ends 0
# with the accuracy of an undisturbed run (within 1 point). ROLE picks which (argument 5:
# server or worker; registered as test_fence_server and test_fence_worker).
source "$(dirname "$0")/lib.sh"
ROLE=${5:-server}
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "dataset-fashion-mnist not installed: skipping"; exit 77
fi
F=(--epochs 2 --servers 2 --workers 2 --cluster.heartbeat_timeout_s 3 --consistency bsp
   --cluster.max_restarts 1 --checkpoint.every_steps 10)

accuracy() { json_field "$1/metrics.jsonl" test accuracy; }

expect_exit 0 "$PSTRAIN" local "${F[@]}" --output clean
# A server is stopped once it has a checkpoint to recover from (else: exit 3, its
# parameters are lost -- test_server_failure).
READY=
[ $ROLE = server ] && READY="server\[1\] info: checkpoint of clock"
READY=$READY run_and_signal hung STOP-ONLY $ROLE 1 "${F[@]}"
E=hung.err
[ $code -eq 0 ] || { tail -8 $E >&2; fail "job with a hung $ROLE exited $code"; }
if [ $ROLE = server ]; then
  expect_in $E "coordinator warn: server\[1\] \(pid [0-9]+, tcp://[0-9.:]+\) is not answering: no heartbeat for [0-9.]+ s; fenced: incarnation 1 is refused from now on, incarnation 2 may take its rank \(restart 1 of 1"
  expect_in $E "coordinator warn: server\[1\]: incarnation 2 takes the rank of the fenced one"
  expect_in $E "server\[1\] warn: restarted \(incarnation 2\): recovering the shard from the checkpoint of clock [0-9]+"
  expect_in $E "worker\[0\] info: server\[1\] restarted: reconnected to tcp://"
else
  expect_in $E "coordinator warn: worker\[1\] \(pid [0-9]+\) is lost: no heartbeat for 3 s.*; incarnation 1 is refused from now on"
  expect_in $E "coordinator info: worker\[1\] rejoined as incarnation 2"
  expect_in $E "worker\[1\] info: rejoined as incarnation 2 at clock [0-9]+"
fi
expect_in $E "local warn: $ROLE\[1\] \(pid [0-9]+\) has been stopped for [0-9.]+ s: it cannot answer and the coordinator has fenced it; sending SIGKILL"
expect_in $E "local warn: $ROLE\[1\] \(pid [0-9]+\) killed by signal 9; starting it again \(restart 1 of 1\)"
expect_in $E "local info: job finished: all 5 processes exited 0"
a=$(accuracy clean); b=$(accuracy hung)
/usr/bin/python3 -c "import sys; sys.exit(0 if abs($a - $b) <= 0.01 else 1)" \
  || fail "test accuracy $b with a hung $ROLE replaced, $a undisturbed"
