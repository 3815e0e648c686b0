#!/usr/bin/env bash
# `pstrain local` supervision, with a fake pstrain (PSTRAIN_LOCAL_EXE) whose behaviour the
# FAKE_* variables choose: what each process is started with, that the first failure
# stops all others and sets the exit code, stop signals, SIGKILL after the grace period,
# the coordinator's ready timeout, and that no process of the job is ever left behind.
source "$(dirname "$0")/lib.sh"

# Every process of a job run here has $WORK in its command line: `pgrep -f "$WORK"`
# finds strays. On the way out kill whatever the fake recorded (by pid, if it is still
# ours), so a failed check leaves nothing running either.
cleanup() {
  if [ -f fake.log ]; then
    for p in $(sed -n 's/.* pid=\([0-9]*\).*/\1/p' fake.log | sort -u); do
      grep -qF "$WORK" /proc/$p/cmdline 2>/dev/null && kill -KILL $p 2>/dev/null
    done
  fi
  cd / && rm -rf "$WORK"
}
trap cleanup EXIT

cat > fake-pstrain <<'FAKE'
#!/usr/bin/env bash
# Stand-in for pstrain. Appends "start ROLE RANK pid=.. ep=.. fds=[..] args=a|b|..|" to
# $FAKE_LOG, then:
#   coordinator: FAKE_COORD=exit0 (default) writes its endpoint to --ready-fd, exits 0;
#                hang: writes it, runs until killed; silent: never writes it; die: exit 7
#   the process named by FAKE_FAIL_AT ("worker 1") waits until FAKE_WAIT_READY processes
#                have logged "ready", then exits FAKE_FAIL_CODE or kills itself with
#                FAKE_FAIL_SIGNAL
#   the one named by FAKE_IGNORE_TERM_AT ignores SIGTERM and runs until killed
#   the others: FAKE_MODE=exit0 (default) exits 0; hang: runs until SIGTERM
role=$1; shift
rank=- fd= ep=
args=$(printf '%s|' "$@")
while [ $# -gt 0 ]; do
  case $1 in --rank) rank=$2; shift ;; --ready-fd) fd=$2; shift ;; --coordinator) ep=$2; shift ;; esac
  shift
done
me="$role $rank"
# Descriptors beyond stdin/stdout/stderr and bash's script fd (255), found with builtins
# only (a command substitution would add its own pipe). The glob's own directory fd is
# closed again by the time of the -e test.
fds=
for f in /proc/$$/fd/*; do
  n=${f##*/}
  [ -e "$f" ] && [ "$n" -gt 2 ] && [ "$n" != 255 ] || continue
  if [ -p "$f" ]; then fds+="$n:pipe "; else fds+="$n:other "; fi
done
echo "start $me pid=$$ ep=$ep fds=[$fds] args=$args" >> "$FAKE_LOG"

hang() { # [ignore]: runs until killed (by SIGKILL only, with "ignore")
  [ "${1:-}" = ignore ] && trap '' TERM
  echo "ready $me pid=$$" >> "$FAKE_LOG"
  exec -a "fake-pstrain $me $FAKE_MARK" sleep 120
}

if [ "$role" = coordinator ]; then
  case ${FAKE_COORD:-exit0} in
    silent) hang ;;
    die) exit 7 ;;
  esac
  printf 'tcp://127.0.0.1:5555\n' >&"$fd"
  exec {fd}>&-
  [ "${FAKE_COORD:-exit0}" = hang ] && hang
  exit 0
fi
if [ "$me" = "${FAKE_FAIL_AT:-}" ]; then
  for _ in $(seq 200); do
    [ "$(grep -c '^ready' "$FAKE_LOG")" -ge "${FAKE_WAIT_READY:-0}" ] && break
    sleep 0.05
  done
  [ -n "${FAKE_FAIL_SIGNAL:-}" ] && kill -"$FAKE_FAIL_SIGNAL" $$
  exit "${FAKE_FAIL_CODE:-1}"
fi
[ "$me" = "${FAKE_IGNORE_TERM_AT:-}" ] && hang ignore
[ "${FAKE_MODE:-exit0}" = hang ] && hang
exit 0
FAKE
chmod +x fake-pstrain
cat > job.yaml <<'YAML'
data: {format: csv, train: train.csv, label_index: -1, num_classes: 2}
model:
  layers: [{units: 4, activation: relu}, {units: 2, activation: softmax}]
train: {epochs: 1, batch_size: 4}
YAML
export PSTRAIN_LOCAL_EXE=$WORK/fake-pstrain FAKE_LOG=$WORK/fake.log FAKE_MARK=$WORK

# 1 server and 3 workers, from the job's cluster.* keys.
COUNTS=(--servers 1 --workers 3)
NPROC=5
ARGS=(job.yaml --output "$WORK/out" --name "two words" "${COUNTS[@]}")
PASSED="--output|$WORK/out|--name|two words|"
PASSED+=$(printf '%s|' "${COUNTS[@]}")
EP=tcp://127.0.0.1:5555

no_strays() { # WHAT
  local left
  left=$(pgrep -af -- "$WORK") && fail "$1: processes left behind:"$'\n'"$left"
  return 0
}
pid_of() { sed -n "s/^start $1 pid=\([0-9]*\).*/\1/p" fake.log; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# run: pstrain local "${ARGS[@]}" under a hard bound (124: it hung), fresh fake.log.
run() { : > fake.log; timeout -k 5 60 "$PSTRAIN" local "${ARGS[@]}"; }
start_bg() { : > fake.log; "$PSTRAIN" local "${ARGS[@]}" > out.txt 2> err.txt & LPID=$!; }
wait_ready() { # N: until N processes of the background run have logged "ready"
  for _ in $(seq 200); do
    [ "$(grep -c '^ready' fake.log)" -ge "$1" ] && return 0
    kill -0 $LPID 2>/dev/null || break
    sleep 0.05
  done
  cat err.txt fake.log >&2; fail "$1 processes never became ready"
}
wait_exit() { # -> CODE: exit code of the background run, which must end within 30 s
  timeout 30 tail --pid=$LPID -f /dev/null || { cat err.txt >&2; fail "no exit within 30 s"; }
  CODE=0; wait $LPID || CODE=$?
}

# --- help, usage errors (nothing starts) ------------------------------------------------
expect_exit 0 "$PSTRAIN" local --help
expect_in out.txt "usage: pstrain local"
expect_in out.txt "SIGKILL"
expect_in out.txt "optimizer.lr"
expect_exit 0 "$PSTRAIN" --help; expect_in out.txt "local \[JOB.yaml\]"
: > fake.log
expect_exit 2 "$PSTRAIN" local job.yaml --no-such 1; expect_in err.txt "no-such"
expect_exit 2 env PSTRAIN_LOCAL_GRACE_S=abc "$PSTRAIN" local job.yaml
expect_in err.txt "PSTRAIN_LOCAL_GRACE_S"
[ -s fake.log ] && fail "a usage error started processes"

# --- success: what each process gets, and no descriptor leaks -------------------------
exec 7> "$WORK/fd7" # not close-on-exec: must not reach the children
expect_exit 0 run
exec 7>&-
expect_in err.txt "local info: job finished: all $NPROC processes exited 0"
expect_in err.txt "local info: coordinator \(pid [0-9]+\) is at $EP"
[ "$(grep -c '^start' fake.log)" -eq $NPROC ] || { cat fake.log >&2; fail "expected $NPROC processes"; }
grep -qF "start coordinator - pid=" fake.log || fail "no coordinator"
grep -F "start coordinator" fake.log | grep -qF "args=job.yaml|--bind|tcp://127.0.0.1:0|--ready-fd|3|$PASSED" \
  || { cat fake.log >&2; fail "coordinator arguments"; }
grep -F "start coordinator" fake.log | grep -qE 'fds=\[3:pipe \]' \
  || { cat fake.log >&2; fail "coordinator should hold exactly fd 3, a pipe"; }
for who in "server 0" "worker 0" "worker 1" "worker 2"; do
  line=$(grep -F "start $who pid=" fake.log) || fail "$who did not start"
  r=${who#* }
  # Workers hold the progress pipe (PSTRAIN_PROGRESS_FD=3, cmd_local.c); servers nothing.
  want_fds=; [ "${who% *}" = worker ] && want_fds="3:pipe "
  case $line in
    *"ep=$EP fds=[$want_fds] args=job.yaml|--rank|$r|--coordinator|$EP|$PASSED") ;;
    *) fail "$who: unexpected start line: $line" ;;
  esac
done
grep -qF "start server 1" fake.log && fail "only 1 server was asked for"
no_strays "success"

# --- a worker fails: exit code, message, everyone else stopped at once ------------------
t0=$(ms)
FAKE_COORD=hang FAKE_MODE=hang FAKE_FAIL_AT="worker 1" FAKE_FAIL_CODE=3 \
  FAKE_WAIT_READY=$((NPROC - 1)) expect_exit 3 run
dt=$(( $(ms) - t0 ))
expect_in err.txt "local error: worker\[1\] \(pid $(pid_of 'worker 1')\) exited with code 3"
[ "$(grep -c 'exited with code 3$' err.txt)" -eq 1 ] || fail "the failure should be reported once"
grep -q "SIGKILL$" err.txt && fail "SIGTERM should have been enough: $(cat err.txt)"
[ "$dt" -lt 5000 ] || fail "took $dt ms to stop after a failure"
no_strays "worker failure"

# --- a process killed by a signal: 128 + signal ------------------------------------------
FAKE_COORD=hang FAKE_MODE=hang FAKE_FAIL_AT="server 0" FAKE_FAIL_SIGNAL=9 \
  FAKE_WAIT_READY=$((NPROC - 1)) expect_exit 137 run
expect_in err.txt "server\[0\] \(pid $(pid_of 'server 0')\) killed by signal 9"
no_strays "server killed"

# --- one ignores SIGTERM: SIGKILL after the grace period ---------------------------------
t0=$(ms)
PSTRAIN_LOCAL_GRACE_S=1 FAKE_COORD=hang FAKE_MODE=hang FAKE_IGNORE_TERM_AT="server 0" \
  FAKE_FAIL_AT="worker 1" FAKE_FAIL_CODE=3 FAKE_WAIT_READY=$((NPROC - 1)) expect_exit 3 run
dt=$(( $(ms) - t0 ))
expect_in err.txt "server\[0\] \(pid $(pid_of 'server 0')\) did not exit within 1 s of SIGTERM; sending SIGKILL"
[ "$(grep -c 'sending SIGKILL' err.txt)" -eq 1 ] || fail "only server[0] needed SIGKILL"
[ "$dt" -ge 1000 ] && [ "$dt" -lt 8000 ] || fail "SIGKILL after $dt ms, expected ~1000"
no_strays "SIGTERM ignored"

# --- the coordinator finished, a process it gave up on still runs (paused, cut off): ------
# --- stopped a grace period later, and the job's exit code stays the coordinator's 0 ------
t0=$(ms)
PSTRAIN_LOCAL_GRACE_S=1 FAKE_MODE=hang expect_exit 0 run
dt=$(( $(ms) - t0 ))
expect_in err.txt "local warn: the job finished 1 s ago, but server\[0\] \(pid [0-9]+\), worker\[0\] \(pid [0-9]+\), worker\[1\] \(pid [0-9]+\), worker\[2\] \(pid [0-9]+\) still run: stopping them"
expect_in err.txt "local warn: job finished; 4 process\(es\) still running after it were stopped"
[ "$dt" -lt 8000 ] || fail "stragglers stopped after $dt ms, expected ~1000"
no_strays "stragglers"

# --- SIGTERM / SIGINT to the launcher: forwarded, 143 / 130 -------------------------------
for sig in TERM INT; do
  FAKE_COORD=hang FAKE_MODE=hang start_bg
  wait_ready $NPROC
  kill -$sig $LPID
  wait_exit
  want=$([ $sig = TERM ] && echo 143 || echo 130)
  [ "$CODE" -eq "$want" ] || { cat err.txt >&2; fail "SIG$sig: exit $CODE, expected $want"; }
  expect_in err.txt "local warn: received SIG$sig; stopping $NPROC process"
  no_strays "SIG$sig"
done

# --- the launcher SIGKILLed: PR_SET_PDEATHSIG takes the children down --------------------
FAKE_COORD=hang FAKE_MODE=hang start_bg
wait_ready $NPROC
{ kill -KILL $LPID; wait $LPID; } 2>/dev/null # (bash's "Killed" notice)
for _ in $(seq 100); do pgrep -f -- "$WORK" > /dev/null || break; sleep 0.05; done
no_strays "launcher SIGKILLed"

# --- the coordinator never reports: ready timeout, nothing else starts -------------------
t0=$(ms)
PSTRAIN_LOCAL_READY_TIMEOUT_S=1 FAKE_COORD=silent expect_exit 1 run
dt=$(( $(ms) - t0 ))
expect_in err.txt "local error: coordinator \(pid [0-9]+\) did not report its endpoint on --ready-fd within 1 s"
[ "$(grep -c '^start' fake.log)" -eq 1 ] || fail "servers or workers started without an endpoint"
[ "$dt" -ge 1000 ] && [ "$dt" -lt 8000 ] || fail "ready timeout after $dt ms, expected ~1000"
no_strays "ready timeout"

# --- the coordinator dies before reporting: its code, named --------------------------------
FAKE_COORD=die expect_exit 7 run
expect_in err.txt "coordinator \(pid [0-9]+\) exited with code 7 before reporting its endpoint"
[ "$(grep -c '^start' fake.log)" -eq 1 ] || fail "servers or workers started without an endpoint"
no_strays "coordinator died"

# --- a program that cannot be run ------------------------------------------------------------
PSTRAIN_LOCAL_EXE=$WORK/no-such-program expect_exit 1 run
expect_in err.txt "cannot start coordinator: .*no-such-program: No such file or directory"
echo "ok"
