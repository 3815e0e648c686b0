#!/usr/bin/env bash
# ssp really bounds staleness: with one worker slowed down, the fast workers run ahead of
# it by exactly s clocks and never more (each server reports the largest gap it allowed
# when answering a pull, the workers the largest they were told); asp, by contrast, lets
# them run far ahead.
source "$(dirname "$0")/lib.sh"
JOB=(local "$SRC/examples/binary-moons.yaml" --servers 2 --workers 3 --epochs 10)
export PSTRAIN_TEST_SLOW_WORKER=2 PSTRAIN_TEST_STEP_DELAY_MS=15

for s in 1 3; do
  expect_exit 0 "$PSTRAIN" "${JOB[@]}" --consistency ssp --staleness $s --output ssp$s
  [ "$(grep -c "server\[[01]\] info: done: .*largest clock gap served $s," err.txt)" -eq 2 ] \
    || { grep "largest" err.txt >&2; fail "ssp $s: servers did not report a largest gap of exactly $s"; }
  expect_in err.txt "coordinator info: all servers stopped; .* largest clock gap served $s\$"
  for w in 0 1; do
    expect_in err.txt "worker\[$w\] info: done at clock .* largest clock gap $s,"
  done
  echo "ssp staleness $s: largest gap $s"
done

expect_exit 0 "$PSTRAIN" "${JOB[@]}" --consistency asp --output asp
gap=$(sed -n 's/.*coordinator info: all servers stopped; .* largest clock gap served \([0-9]*\)$/\1/p' err.txt)
echo "asp: largest gap $gap"
[ -n "$gap" ] && [ "$gap" -gt 3 ] || fail "asp: expected the fast workers to run ahead by more than 3 clocks, got '$gap'"
echo "ok"
