#!/usr/bin/env bash
# `pstrain mpi` under mpirun: ranks become coordinator, servers and workers, find the
# coordinator through MPI, and train over ZeroMQ exactly as `pstrain local` does (bsp: the
# same weights, bit for bit). MPMD launches choose roles by flag; a bad flag on one rank
# fails the whole launch; SIGTERM stops every rank.
source "$(dirname "$0")/lib.sh"
# Sanitizer build: Open MPI's libraries keep allocations until exit, and without frame
# pointers in them LeakSanitizer's fast unwinder stops there, so suppressions cannot match;
# unwinding fully on every malloc made this test 6x slower (45 s). Leak checking is off
# here instead: `pstrain mpi` runs the coordinator, server and worker code that every
# `pstrain local` test checks for leaks; AddressSanitizer's other checks stay on. No effect
# on a release build.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
command -v mpirun > /dev/null || { echo "mpirun is not installed"; exit 77; }
JOB="$SRC/examples/binary-moons.yaml"
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"
# Loopback only (no network needed), as root, more ranks than cores, no core pinning.
MPIRUN=(timeout 60 mpirun --allow-run-as-root --oversubscribe --bind-to none
        --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
COMMON=(--consistency bsp --epochs 3)

# SPMD: 5 ranks, 2 servers -> 1 coordinator, 2 servers, 2 workers.
expect_exit 0 "${MPIRUN[@]}" -np 5 "$PSTRAIN" mpi "$JOB" --servers 2 "${COMMON[@]}" --output spmd
expect_in err.txt "coordinator info: all 2 servers and 2 workers joined"
expect_in err.txt "coordinator info: job finished; validation accuracy"
expect_in err.txt "coordinator endpoint for the other ranks: tcp://127.0.0.1:[0-9]+"
expect_exit 0 "$PSTRAIN" local "$JOB" --servers 2 --workers 2 "${COMMON[@]}" --output local
$COMPARE local/model.safetensors spmd/model.safetensors 0 \
  || fail "mpi with 2 servers and 2 workers differs from local"

# MPMD: roles by flag, counts from the launch (1 server, 3 workers; the job says 2 and 2).
expect_exit 0 "${MPIRUN[@]}" -np 3 "$PSTRAIN" mpi "$JOB" --role worker "${COMMON[@]}" --output mpmd \
  : -np 1 "$PSTRAIN" mpi "$JOB" --role server "${COMMON[@]}" \
  : -np 1 "$PSTRAIN" mpi "$JOB" --role coordinator "${COMMON[@]}"
expect_in err.txt "coordinator info: all 1 servers and 3 workers joined"
expect_in err.txt "coordinator info: job finished; validation accuracy"
expect_exit 0 "$PSTRAIN" local "$JOB" --servers 1 --workers 3 "${COMMON[@]}" --output local13
$COMPARE local13/model.safetensors mpmd/model.safetensors 0 \
  || fail "mpi MPMD with 1 server and 3 workers differs from local"

# A bad flag on one rank: every rank stops before training; mpirun fails.
code=0
"${MPIRUN[@]}" -np 4 "$PSTRAIN" mpi "$JOB" --servers 1 "${COMMON[@]}" \
  : -np 1 "$PSTRAIN" mpi "$JOB" --servers 1 "${COMMON[@]}" --no-such-flag 1 \
  > out.txt 2> err.txt || code=$?
[ $code -ne 0 ] && [ $code -ne 124 ] || { tail err.txt >&2; fail "bad flag: mpirun exit $code"; }
expect_in err.txt "pstrain mpi\[4\]: .*no-such-flag"
grep -q "joined" err.txt && fail "training started despite a bad flag"
# Too few ranks for the servers asked for: a usage error, not a hang.
code=0
"${MPIRUN[@]}" -np 3 "$PSTRAIN" mpi "$JOB" --servers 2 > out.txt 2> err.txt || code=$?
[ $code -ne 0 ] && [ $code -ne 124 ] || fail "3 ranks, 2 servers: mpirun exit $code"
expect_in err.txt "3 ranks make 1 coordinator\(s\), 2 server\(s\) and 0 worker\(s\)"

# SIGTERM to the ranks (what a batch scheduler cancelling the job sends): each stops after
# its current step and exits 143, and so does mpirun.
"${MPIRUN[@]}" -np 4 "$PSTRAIN" mpi "$JOB" --servers 1 --epochs 100000 --output term \
  > out.txt 2> err.txt &
MP=$!
for _ in $(seq 600); do grep -q "joined" err.txt && break; sleep 0.1; done
grep -q "joined" err.txt || { kill $MP; fail "the SIGTERM run never started"; }
RANKS=$(pgrep -P "$(pgrep -P $MP)")
[ "$(echo $RANKS | wc -w)" -eq 4 ] || { kill $MP; fail "expected 4 rank processes: $RANKS"; }
kill -TERM $RANKS
code=0; timeout 30 tail --pid=$MP -f /dev/null || { kill -9 $MP; fail "no exit after SIGTERM"; }
wait $MP || code=$?
[ $code -eq 143 ] || { grep -v " info: " err.txt | tail -30 >&2; fail "SIGTERM: mpirun exit $code, expected 143"; }
# The first rank to exit 143 makes mpirun end the others (its default); none is left.
expect_in err.txt "(coordinator|server\[0\]|worker\[[01]\]) warn: stopped by signal 15"
for r in $RANKS; do
  timeout 10 tail --pid=$r -f /dev/null || fail "rank process $r outlived mpirun by 10 s"
done
echo "ok"
