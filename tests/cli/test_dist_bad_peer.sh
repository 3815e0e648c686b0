#!/usr/bin/env bash
# A hostile client cannot disturb a running job. While a bsp job trains, tests/hostile_client
# connects to server[0] and to the coordinator and sends random bytes, truncated messages,
# an envelope of another wire version, forged requests naming the job's workers (a PUSH
# outside the shard, a NaN gradient, DONE, INIT, a final PULL), a false frame length, too
# many frames and oversized frames. The job must finish as usual with the same weights, to
# the bit, as an undisturbed run (bsp with 2 workers is deterministic), and the logs must
# show every refusal.
source "$(dirname "$0")/lib.sh"
HOSTILE=$4
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"
JOB=(local "$SRC/examples/binary-moons.yaml" --consistency bsp --servers 2 --workers 2
     --epochs 30)

expect_exit 0 "$PSTRAIN" "${JOB[@]}" --output clean
mv err.txt clean.err

# The same job with worker[1] slowed by 10 ms a step (300 steps: about 3 s), so that it is
# still training while the hostile client sends (a fraction of a second).
PSTRAIN_TEST_SLOW_WORKER=1 PSTRAIN_TEST_STEP_DELAY_MS=10 \
  "$PSTRAIN" "${JOB[@]}" --output attacked > out.txt 2> err.txt &
job=$!
# When worker[0] has finished epoch 1, both workers have pushed to both servers (bsp), so
# the servers know which connection each worker uses.
for _ in $(seq 200); do
  grep -q 'worker\[0\] info: epoch 1/' err.txt && break
  kill -0 $job 2> /dev/null || break
  sleep 0.05
done
srv=$(sed -n 's/.*server\[0\] info: listening on \(tcp:[^ ]*\) .*/\1/p' err.txt)
crd=$(sed -n 's/.*coordinator info: listening on \(tcp:[^ ]*\) .*/\1/p' err.txt)
if [ -z "$srv" ] || [ -z "$crd" ] || ! grep -q 'worker\[0\] info: epoch 1/' err.txt; then
  kill $job 2> /dev/null; wait $job
  tail -20 err.txt >&2
  fail "the job did not get to epoch 1 (server[0] '$srv', coordinator '$crd')"
fi

"$HOSTILE" "$srv" "$crd" > hostile.txt 2>&1
hrc=$?
kill -0 $job 2> /dev/null || echo "warning: the job ended before the hostile client did" >&2
wait $job
rc=$?
cat hostile.txt
[ $hrc -eq 0 ] || fail "hostile_client exited $hrc (a message not sent or a forged request not answered)"
expect_in hostile.txt "server: 8 of 8 forged requests answered with an ERROR"
# A message of another wire version is answered, naming both versions (issue 19, item 13).
expect_in hostile.txt "server: ERROR for request 0: refused a message of wire version 99: this server speaks wire version [0-9]+"
expect_in hostile.txt "coordinator: ERROR for request 0: refused a message of wire version 99: this coordinator speaks wire version [0-9]+"
expect_in hostile.txt "coordinator: 1 of 1 wrong-version messages answered with an ERROR"
if [ $rc -ne 0 ]; then
  tail -30 err.txt >&2
  fail "the attacked job exited $rc, expected 0"
fi
expect_in err.txt "local info: job finished: all 5 processes exited 0"
! grep -E "worker\[[01]\] (warn|error)" err.txt || fail "a worker noticed the hostile client"

# server[0] refused each forged request and dropped each malformed message.
S='server\[0\] warn: '
expect_in err.txt "${S}refused PUSH from worker\[0\]: PUSH claims to be worker\[0\] from another connection"
expect_in err.txt "${S}refused PUSH from worker\[1\]: PUSH claims to be worker\[1\] from another connection"
expect_in err.txt "${S}refused PUSH from worker\[7\]: PUSH from unknown peer worker\[7\]"
expect_in err.txt "${S}refused DONE from worker\[1\]: DONE claims to be worker\[1\]"
expect_in err.txt "${S}refused INIT from worker\[0\]"
expect_in err.txt "${S}refused PULL from worker\[0\]"
[ "$(grep -c "${S}refused" err.txt)" -eq 7 ] || fail "expected 7 refusals by server[0]"
expect_in err.txt "${S}dropped a malformed message: .*does not parse"
expect_in err.txt "${S}dropped a malformed message: PUSH: wire: 0 payload frames arrived, header says 1"
expect_in err.txt "${S}dropped a malformed message: wire: version 99, this build speaks [0-9]+; answered with an ERROR naming both versions"
expect_in err.txt "${S}dropped a malformed message: PUSH: wire: frame 1 has 16 bytes, header says 1073741824"
expect_in err.txt "${S}dropped a malformed message: net: message of more than 8 frames dropped"
# The coordinator ignored the forged DONEs (believing them would end the job early).
C='coordinator warn: '
expect_in err.txt "${C}ignoring DONE claiming to be worker\[0\] from another connection"
expect_in err.txt "${C}ignoring DONE claiming to be worker\[1\] from another connection"
expect_in err.txt "${C}ignoring PROGRESS claiming to be worker\[1\] from another connection"
expect_in err.txt "${C}dropped a malformed message: wire: version 99, this build speaks [0-9]+; answered with an ERROR naming both versions"
expect_in err.txt "${C}ignoring HELLO from server\[0\]"
expect_in err.txt "${C}ignoring BYE from server\[1\]"

# The servers applied exactly the undisturbed run's updates, and the model is identical.
for s in 0 1; do
  want=$(grep -o "server\[$s\] info: done: [0-9]* updates from [0-9]* pushes" clean.err)
  [ -n "$want" ] || fail "no summary of server[$s] in the undisturbed run"
  grep -Fq "$want" err.txt || fail "server[$s] did not end as undisturbed: '$want' not in err.txt"
done
$COMPARE clean/model.safetensors attacked/model.safetensors 0 \
  || fail "the attacked job's weights differ from the undisturbed run's"
echo "ok"
