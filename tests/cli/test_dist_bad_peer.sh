#!/usr/bin/env bash
# A hostile client cannot disturb a running job. While a bsp job trains, tests/hostile_client
# connects to server[0] and to the coordinator and sends random bytes, truncated messages,
# an envelope of another wire version, forged requests naming the job's workers (a PUSH
# outside the shard, a NaN gradient, DONE, INIT, a final PULL), a false frame length, too
# many frames and oversized frames. The job must finish as usual with the same weights, to
# the bit, as an undisturbed run (bsp with 2 workers is deterministic), and the logs must
# show every refusal. Then it floods both with FLOOD malformed or forged messages more
# (issue 16 item 5): the warnings name the sender's address, stop after LOG_LIMIT_BURST
# (16) a peer and say how many more came; the summaries count every refused message.
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
FLOOD=1000
"$HOSTILE" --flood $FLOOD "$srv" "$crd" > flood.txt 2>&1
frc=$?
kill -0 $job 2> /dev/null || echo "warning: the job ended before the hostile client did" >&2
wait $job
rc=$?
cat hostile.txt
[ $hrc -eq 0 ] || fail "hostile_client exited $hrc (a message not sent or a forged request not answered)"
cat flood.txt
[ $frc -eq 0 ] || fail "hostile_client --flood exited $frc"
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

# The flood. Every warning about the hostile peer names its address (and its routing id);
# those not printed are counted in "N more refused messages from 127.0.0.1 ..." lines, and
# printed + counted = refused, as the summaries say: server[0] refused the 14 messages of
# the attack and the FLOOD of the flood, the coordinator 7 and FLOOD.
expect_in flood.txt "flood: $FLOOD messages sent to the server, $FLOOD to the coordinator, 0 could not be sent"
expect_in err.txt "${S}refused PUSH from worker\[7\]: .* \(from 127\.0\.0\.1, id hostile-server\)\$"
! grep -q "(from \|more refused messages" clean.err || fail "the undisturbed run warned of a peer"
! grep -q "refused messages from peers" clean.err || fail "the undisturbed run counted refusals"
check_limited() { # WHO (log prefix regex) EXPECTED-REFUSALS
  local shown held lines
  shown=$(grep -c "$1 warn: .* (from 127\.0\.0\.1" err.txt)
  held=$(sed -n "s/.*$1 warn: \([0-9]*\) more refused messages from 127\.0\.0\.1.*/\1/p" err.txt |
         awk '{ n += $1 } END { print n + 0 }')
  lines=$(grep -c "$1 warn: " err.txt)
  echo "$1: $shown warnings shown, $held held back, $lines warning lines in all"
  [ $((shown + held)) -eq "$2" ] || fail "$1: $shown shown + $held held back, expected $2 refusals"
  [ "$held" -gt 0 ] || fail "$1: no warning was held back"
  [ "$lines" -le 40 ] || fail "$1: $lines warning lines for a flood of $FLOOD"
}
check_limited 'server\[0\]' $((14 + FLOOD))
check_limited 'coordinator' $((7 + FLOOD))
expect_in err.txt "server\[0\] info: done: .* $((14 + FLOOD)) messages refused \($((7 + FLOOD)) malformed\)"
expect_in err.txt "server\[1\] info: done: .* 0 messages refused \(0 malformed\)"
expect_in err.txt "coordinator info: refused messages from peers: $((14 + FLOOD)) by the servers, $((7 + FLOOD)) by the coordinator \($((2 + FLOOD / 2)) of them malformed\)"

# The servers applied exactly the undisturbed run's updates, and the model is identical.
for s in 0 1; do
  want=$(grep -o "server\[$s\] info: done: [0-9]* updates from [0-9]* pushes" clean.err)
  [ -n "$want" ] || fail "no summary of server[$s] in the undisturbed run"
  grep -Fq "$want" err.txt || fail "server[$s] did not end as undisturbed: '$want' not in err.txt"
done
$COMPARE clean/model.safetensors attacked/model.safetensors 0 \
  || fail "the attacked job's weights differ from the undisturbed run's"
echo "ok"
