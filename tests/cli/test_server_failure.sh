#!/usr/bin/env bash
# A parameter server killed with SIGKILL mid-training (real processes under `pstrain local`):
#  - cluster.max_restarts 1 and checkpoints every 10 steps: the launcher starts it again,
#    it recovers its shard from its newest checkpoint and learns the workers' clocks from
#    their requests (sent again); the workers reconnect to its new endpoint; the job ends 0,
#    the server reports the recovery time and how many steps of updates were lost (at most
#    the checkpoint interval), accuracy within 1 point of a clean run (bsp and asp); a
#    later resume from its checkpoints warns that they lack those updates;
#  - no restarts: the job ends at once with the server's status (137), nothing left;
#  - restarted without any checkpoint: it says its parameters are lost and the job fails
#    (exit 3), nothing hangs.
source "$(dirname "$0")/lib.sh"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "dataset-fashion-mnist not installed: skipping"; exit 77
fi
F=(--epochs 2 --servers 2 --workers 2 --cluster.heartbeat_timeout_s 5 "${FM_SUBSET[@]}")

accuracy() { json_field "$1/metrics.jsonl" test accuracy; }

for cons in bsp asp; do
  expect_exit 0 "$PSTRAIN" local "${F[@]}" --consistency $cons --output clean_$cons
  READY="server\[1\] info: checkpoint of clock" run_and_signal restart_$cons KILL server 1 "${F[@]}" --consistency $cons --cluster.max_restarts 1 \
    --checkpoint.every_steps 10
  E=restart_$cons.err
  [ $code -eq 0 ] || { tail -8 $E >&2; fail "$cons: job with a restarted server exited $code"; }
  expect_in $E "local warn: server\[1\] \(pid [0-9]+\) killed by signal 9; starting it again"
  expect_in $E "coordinator warn: server\[1\] restarted as incarnation 2"
  expect_in $E "server\[1\] warn: restarted \(incarnation 2\): recovering the shard from the checkpoint of clock [0-9]+"
  expect_in $E "worker\[0\] info: server\[1\] restarted: reconnected to tcp://"
  lost=$(sed -n 's/.*server\[1\] warn: recovered in [0-9.]* s at clock [0-9]*: the updates of \([0-9]*\) step(s).*/\1/p' $E)
  [ -n "$lost" ] || fail "$cons: no recovery report"
  # Checkpoints every 10 clocks: bsp loses at most 10 steps; asp counts each worker's.
  [ "$lost" -le 20 ] || fail "$cons: $lost steps lost, more than the checkpoint interval allows"
  expect_in $E "local info: job finished: all 5 processes exited 0"
  # Its later checkpoints lack those updates: resuming from them says so (bsp; the
  # resumed run has nothing left to train).
  if [ $cons = bsp ] && [ "$lost" -gt 0 ]; then
    expect_exit 0 "$PSTRAIN" local "${F[@]}" --consistency $cons --cluster.max_restarts 1 \
      --checkpoint.every_steps 10 --output restart_$cons --resume restart_$cons
    expect_in err.txt "server\[1\] warn: .*server-1-clock-[0-9]+\.safetensors lacks the updates of $lost step\(s\) that a restart of this server lost: the model resumed from it combines shards at different steps"
  fi
  a=$(accuracy clean_$cons); b=$(accuracy restart_$cons)
  /usr/bin/python3 -c "import sys; sys.exit(0 if abs($a - $b) <= $ACC_TOL else 1)" \
    || fail "$cons: test accuracy $b with a restarted server, $a clean"
done

run_and_signal norestart KILL server 0 "${F[@]}" --consistency asp
[ $code -eq 137 ] || fail "job whose server was killed (no restarts) exited $code, expected 137"
expect_in norestart.err "local error: server\[0\] \(pid [0-9]+\) killed by signal 9"

run_and_signal nockpt KILL server 0 "${F[@]}" --consistency asp --cluster.max_restarts 1 \
  --checkpoint.enabled false
[ $code -eq 3 ] || { tail -5 nockpt.err >&2; fail "restarted server without checkpoints: exit $code, expected 3"; }
expect_in nockpt.err "server\[0\] error: server\[0\] restarted but has no complete checkpoint in .* its parameters are lost"
