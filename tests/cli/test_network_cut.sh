#!/usr/bin/env bash
# Network cuts: every process of a job in its own network namespace (one "host" each,
# joined by a bridge), started by hand; a host's link is taken down (its bridge port,
# `ip link set ... down`: a pulled cable, the TCP connections survive) and brought back.
#  a) a worker cut for less than cluster.heartbeat_timeout_s: the job resumes and ends 0,
#     every worker finished (none lost), and the bsp weights equal a clean run's bit for bit;
#  b) a worker cut for longer: the coordinator declares it lost and the job ends 0 without
#     it; the cut-off worker itself fails within a bounded time, exit 75, saying why;
#  c) a server cut for longer: the job ends 75 with errors naming the server; every process
#     exits (75) within a bounded time.
# After each case no process is left in the namespaces. Needs root (CAP_SYS_ADMIN,
# CAP_NET_ADMIN): skipped with exit 77 where namespaces cannot be created. Everything
# created is deleted on exit, also on failure.
source "$(dirname "$0")/lib.sh"
JOB="$SRC/examples/binary-moons.yaml"
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"
TAG=pnc$$
SW=${TAG}sw
NAMES=(c s0 s1 w0 w1 w2)          # coordinator, 2 servers, 3 workers: one host each
NET=10.$((100 + RANDOM % 100)).$((RANDOM % 250)) # a /24 unlikely to clash with others
HB=3                               # cluster.heartbeat_timeout_s
PIDS=()

ns() { echo "$TAG${1}"; }          # namespace of a process name
addr() { local i; for i in "${!NAMES[@]}"; do [ "${NAMES[$i]}" = "$1" ] && echo "$NET.$((i + 1))"; done; }
port() { echo "p$1$TAG"; }         # its bridge port (in $SW)

cleanup() {
  local n p
  for n in "${NAMES[@]}"; do
    for p in $(ip netns pids "$(ns "$n")" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$(ns "$n")" 2>/dev/null
  done
  ip netns del "$SW" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v ip >/dev/null || ! ip netns add "$SW" 2>/dev/null; then
  echo "SKIP: cannot create network namespaces (needs root and iproute2)" >&2
  exit 77
fi
ip -n "$SW" link add br0 type bridge || fail "cannot create a bridge"
ip -n "$SW" link set br0 up
for n in "${NAMES[@]}"; do
  ip netns add "$(ns "$n")" || fail "cannot create namespace for $n"
  ip link add "$(port "$n")" netns "$SW" type veth peer name eth0 netns "$(ns "$n")" \
    || fail "cannot create a veth pair for $n"
  ip -n "$SW" link set "$(port "$n")" master br0 up
  ip -n "$(ns "$n")" addr add "$(addr "$n")/24" dev eth0
  ip -n "$(ns "$n")" link set eth0 up
  ip -n "$(ns "$n")" link set lo up
done
link() { ip -n "$SW" link set "$(port "$1")" "$2" || fail "cannot set $1's link $2"; }

# Starts the whole job in directory $1 (logs $1/<name>.log), the rest are job overrides.
# Long enough (bsp, ~a few seconds unloaded) that the cuts fall in the middle of training.
start_job() {
  local d=$1 n i; shift
  mkdir -p "$d"
  local coord="tcp://$(addr c):7070"
  local o=(--train "$SRC/examples/data/moons.csv" --cluster.servers 2 --cluster.workers 3
           --consistency bsp --epochs 400 --cluster.heartbeat_ms 250
           --cluster.heartbeat_timeout_s $HB --cluster.timeout_s 30 "$@")
  PIDS=()
  ip netns exec "$(ns c)" "$PSTRAIN" coordinator "$JOB" --bind "$coord" "${o[@]}" \
    2> "$d/c.log" & PIDS+=($!)
  for i in 0 1; do
    n=s$i
    ip netns exec "$(ns $n)" "$PSTRAIN" server "$JOB" --rank $i --coordinator "$coord" \
      --bind "$(addr $n)" --advertise "$(addr $n)" "${o[@]}" 2> "$d/$n.log" & PIDS+=($!)
  done
  for i in 0 1 2; do
    n=w$i
    ip netns exec "$(ns $n)" "$PSTRAIN" worker "$JOB" --rank $i --coordinator "$coord" \
      --output "$WORK/$d/out" "${o[@]}" 2> "$d/$n.log" & PIDS+=($!)
  done
}
pid_of() { local i; for i in "${!NAMES[@]}"; do [ "${NAMES[$i]}" = "$1" ] && echo "${PIDS[$i]}"; done; }

# exit_of NAME SECONDS: waits at most SECONDS for the process, sets $code (never hangs).
exit_of() {
  local p; p=$(pid_of "$1")
  if ! timeout "$2" tail --pid="$p" -f /dev/null; then
    kill -KILL "${PIDS[@]}" 2>/dev/null
    fail "$1 (pid $p) still running after $2 s"
  fi
  code=0; wait "$p" || code=$?
}
# wait_log FILE PATTERN SECONDS: until the pattern is logged.
wait_log() {
  local t
  for ((t = 0; t < $3 * 10; t++)); do grep -Eq -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  tail -5 "$1" >&2; fail "'$2' not logged in $1 within $3 s"
}
nothing_left() {
  local n
  for n in "${NAMES[@]}"; do
    [ -z "$(ip netns pids "$(ns "$n")")" ] || fail "$1: processes left in $n's namespace"
  done
}
training() { # DIR: every worker has started training
  local i
  for i in 0 1 2; do wait_log "$1/w$i.log" "worker\[$i\] info: training with" 60; done
  sleep 0.5 # a few steps in
}

# The reference: the same bsp job, no cuts (pstrain local; bsp is deterministic).
expect_exit 0 "$PSTRAIN" local "$JOB" --train "$SRC/examples/data/moons.csv" --servers 2 \
  --workers 3 --consistency bsp --epochs 400 --output "$WORK/clean"

# a) worker 1 cut for 1 s (< 3 s): nobody is lost, the job finishes as if nothing happened.
start_job a
training a
link w1 down
sleep 1
kill -0 "$(pid_of c)" 2>/dev/null || fail "a: the job ended before the cut ended (too short?)"
link w1 up
for n in c s0 s1 w0 w1 w2; do
  exit_of $n 120
  [ $code -eq 0 ] || { tail -5 a/*.log >&2; fail "a: $n exit $code after a short cut, expected 0"; }
done
for i in 0 1 2; do expect_in a/c.log "worker\[$i\] finished"; done
! grep -q "is lost" a/*.log || { grep "is lost" a/*.log >&2; fail "a: a process was declared lost"; }
expect_in a/c.log "job finished"
$COMPARE clean/model.safetensors a/out/model.safetensors 0 > cmp.txt \
  || { cat cmp.txt >&2; fail "a: weights after a short cut differ from the clean run's"; }
nothing_left a

# b) worker 1 cut for longer than the timeout: lost; the others finish; it exits 75.
start_job b
training b
link w1 down
wait_log b/c.log "coordinator warn: worker\[1\] \(pid [0-9]+\) is lost: no heartbeat for $HB s" 30
sleep 2 # past the timeout on its side too (or it learns it was given up when back)
link w1 up
exit_of w1 30
[ $code -eq 75 ] || { tail -5 b/w1.log >&2; fail "b: cut-off worker exit $code, expected 75"; }
expect_in b/w1.log "worker\[1\] error: .*(coordinator tcp://[0-9.]+:7070 has not answered heartbeats|incarnation 1 was declared lost)"
for n in c s0 s1 w0 w2; do
  exit_of $n 120
  [ $code -eq 0 ] || { tail -5 b/*.log >&2; fail "b: $n exit $code, expected 0 (job goes on without worker 1)"; }
done
expect_in b/s0.log "server\[0\] warn: worker\[1\] is lost"
expect_in b/c.log "lost and not rejoined: worker\[1\]"
expect_in b/c.log "job finished"
[ -s b/out/model.safetensors ] || fail "b: worker 0 wrote no model"
nothing_left b

# c) server 1 cut for longer than the timeout: the job cannot go on; everyone exits 75.
start_job c
training c
link s1 down
exit_of c 30
[ $code -eq 75 ] || { tail -5 c/c.log >&2; fail "c: coordinator exit $code, expected 75"; }
expect_in c/c.log "coordinator error: server\[1\] \(pid [0-9]+, tcp://$(addr s1):[0-9]+\) is lost: no heartbeat for $HB s"
for n in s0 w0 w1 w2; do
  exit_of $n 30
  [ $code -eq 75 ] || { tail -5 c/$n.log >&2; fail "c: $n exit $code, expected 75"; }
  expect_in c/$n.log "error: .*job aborted by the coordinator: server\[1\] .*is lost"
done
exit_of s1 30 # cut off: it gives up on the coordinator by itself
[ $code -eq 75 ] || { tail -5 c/s1.log >&2; fail "c: cut-off server exit $code, expected 75"; }
expect_in c/s1.log "server\[1\] error: .*coordinator tcp://[0-9.]+:7070 has not answered heartbeats"
link s1 up
nothing_left c
echo "ok"
