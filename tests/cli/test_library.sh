#!/usr/bin/env bash
# libpstrain as an outside program sees it: `cmake --install` into a temporary prefix
# puts the library, include/pstrain/pstrain.h and pstrain.pc; the library exports the
# public header's functions alone (nm -D); examples/library/linreg.c, compiled and linked
# through pkg-config only, runs as the workers of a library job (examples/library/job.yaml:
# no model, no data) against a hand-started coordinator and server: one worker under bsp
# ends with exactly plain SGD's weights, two workers under asp finish. pstrain's own
# worker refuses such a job in one line.
source "$(dirname "$0")/lib.sh"
BUILD=$(dirname "$PSTRAIN")
JOB="$SRC/examples/library/job.yaml"
cmake --install "$BUILD" --prefix "$WORK/inst" > install.log || fail "cmake --install failed"
export PKG_CONFIG_PATH="$WORK/inst/lib/pkgconfig"
[ -f "$WORK/inst/include/pstrain/pstrain.h" ] || fail "no installed header"
LIB=$(ls "$WORK"/inst/lib/libpstrain.so) || fail "no installed libpstrain.so"

# Exported: exactly the functions the header marks PST_API.
nm -D --defined-only "$LIB" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sort > exported.txt
sed -n 's/^PST_API [^(]*[ *]\(pst_[a-z_]*\)(.*/\1/p' "$SRC/include/pstrain/pstrain.h" | sort > declared.txt
[ -s declared.txt ] || fail "no PST_API function found in the header"
diff declared.txt exported.txt > nm.diff || { cat nm.diff >&2; fail "exports differ from the header"; }

# The outside program: pkg-config's flags only (an ASan build's library needs the
# sanitizer runtime in the program too).
SAN=""
ldd "$LIB" | grep -q libasan && SAN="-fsanitize=address,undefined"
cc -std=c11 -Wall -Wextra -Werror $SAN "$SRC/examples/library/linreg.c" \
   $(pkg-config --cflags pstrain) $(pkg-config --libs pstrain) -lm -o linreg \
   || fail "the example does not build against the installed library"
export LD_LIBRARY_PATH="$WORK/inst/lib"

start_job() { # extra args for coordinator and server...; sets CPID SPID EP
  rm -f ep.txt
  "$PSTRAIN" coordinator "$JOB" --bind tcp://127.0.0.1:0 --ready-fd 3 "$@" 3> ep.txt 2> coord.log &
  CPID=$!
  for _ in $(seq 100); do [ -s ep.txt ] && break; sleep 0.1; done
  [ -s ep.txt ] || fail "coordinator did not report its endpoint"
  EP=$(cat ep.txt)
  "$PSTRAIN" server "$JOB" --rank 0 --coordinator "$EP" "$@" 2> server.log & SPID=$!
}
wait_all() { # pids...
  for p in "$@"; do
    timeout 60 tail --pid=$p -f /dev/null || { kill -9 "$@"; fail "pid $p did not exit"; }
    wait $p || { tail -n 5 *.log >&2; fail "a process exited non-zero"; }
  done
}

start_job --output out1
PSTRAIN_RANK=0 PSTRAIN_COORDINATOR=$EP ./linreg "$JOB" --check --output.dir out1 > w0.out 2> w0.log & W0=$!
wait_all $W0 $SPID $CPID
expect_in w0.out "largest difference to plain SGD: 0$"
expect_in coord.log "model of 9 parameters"
expect_in coord.log "job finished"
expect_in server.log "50 updates from 50 pushes"

export PSTRAIN_NUM_WORKERS=2
start_job --consistency asp --output out2
for r in 0 1; do
  PSTRAIN_RANK=$r PSTRAIN_COORDINATOR=$EP ./linreg "$JOB" --cluster.consistency asp \
    --output.dir out2 > w$r.out 2> w$r.log & eval W$r=\$!
done
wait_all $W0 $W1 $SPID $CPID
expect_in w1.out "rank 1: 50 steps"
expect_in server.log "100 updates from 100 pushes"
unset PSTRAIN_NUM_WORKERS

# A worker that disagrees with the job (another lr): refused by the coordinator, a line.
start_job --output out3
code=0
PSTRAIN_RANK=0 PSTRAIN_COORDINATOR=$EP ./linreg "$JOB" --optimizer.lr 0.2 > w0.out 2> w0.log || code=$?
[ $code -eq 1 ] || fail "a worker of another job exited $code"
expect_in w0.log "linreg: coordinator refused registration: worker\[0\] runs a different job"
kill $CPID $SPID 2>/dev/null; wait $CPID $SPID 2>/dev/null

# pstrain's own worker and train need a model and data.
expect_exit 2 "$PSTRAIN" train "$JOB"
expect_in err.txt "a job for programs that use libpstrain"
echo "ok"
