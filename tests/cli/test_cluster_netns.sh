#!/usr/bin/env bash
# Several hosts on one machine: network namespaces joined by a bridge, one per "host" with
# its own address; deploy/cluster/pstrain-cluster places the coordinator, servers and
# workers on them as a hostfile says (remote shell: 'ip netns exec'). Checks a bsp job
# reaches the expected accuracy, then that with one host's bandwidth limited (tc tbf) an
# ssp job still completes and the fast worker runs exactly `staleness` clocks ahead.
# Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): skipped with exit 77 where namespaces cannot
# be created. Everything created is deleted on exit, also on failure.
source "$(dirname "$0")/lib.sh"
CLUSTER="$SRC/deploy/cluster/pstrain-cluster"
JOB="$SRC/examples/binary-moons.yaml"
TAG=pst$$
SW=${TAG}sw
H=("${TAG}h1" "${TAG}h2" "${TAG}h3")
NET=10.$((100 + RANDOM % 100)).$((RANDOM % 250)) # a /24 unlikely to clash with others

cleanup() {
  local n p
  # Any process left in our namespaces (the cluster script stops its own; this is for a
  # failure half-way).
  for n in "${H[@]}" "$SW"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v ip >/dev/null || ! ip netns add "$SW" 2>/dev/null; then
  echo "SKIP: cannot create network namespaces (needs root and iproute2)" >&2
  exit 77
fi
ip -n "$SW" link add br0 type bridge || fail "cannot create a bridge"
ip -n "$SW" link set br0 up
ip -n "$SW" link set lo up
for i in 0 1 2; do
  n=${H[$i]}
  ip netns add "$n" || fail "cannot create namespace $n"
  ip link add "p$i$TAG" netns "$SW" type veth peer name eth0 netns "$n" \
    || fail "cannot create a veth pair for $n"
  ip -n "$SW" link set "p$i$TAG" master br0 up
  ip -n "$n" addr add "$NET.$((i + 1))/24" dev eth0
  ip -n "$n" link set eth0 up
  ip -n "$n" link set lo up
done

cat > hosts <<EOF2
# HOST ADDRESS ROLES
${H[0]} $NET.1 coordinator,server
${H[1]} $NET.2 server,worker
${H[2]} $NET.3 worker
EOF2

# 1. bsp across three hosts: finishes, expected accuracy.
code=0
timeout 60 "$CLUSTER" run hosts "$JOB" --logs run1 --rsh "ip netns exec" --pstrain "$PSTRAIN" \
  --grace 3 -- --train "$SRC/examples/data/moons.csv" --consistency bsp --output "$WORK/out1" \
  2> cluster1.log || code=$?
[ $code -eq 0 ] || { tail -n 5 run1/*.log cluster1.log >&2; fail "bsp job exit $code, expected 0"; }
for f in coordinator-0 server-0 server-1 worker-0 worker-1; do
  [ -s "run1/$f.log" ] || fail "no log collected for $f"
  [ "$(cat "run1/$f.exit")" = 0 ] || fail "$f exit $(cat "run1/$f.exit")"
done
expect_in run1/coordinator-0.log "all 2 servers and 2 workers joined"
expect_in run1/server-1.log "server\[1\] info: done:"
acc=$(json_field "$WORK/out1/metrics.jsonl" validation accuracy)
expect_ge "$acc" 0.95 "bsp validation accuracy across namespaces"
"$CLUSTER" status run1 > status.txt
expect_in status.txt "job: finished, exit 0"
expect_in status.txt "worker-1 +${H[2]} +exit 0"

# 2. host3 limited to 512 kbit/s (worker 1 then needs tens of ms a step for its ~3 KB of
# push and pull, worker 0 about one), ssp staleness 2: the job completes, and the fast
# worker runs ahead of the slow one by exactly 2 clocks, never more.
tc -n "${H[2]}" qdisc add dev eth0 root tbf rate 512kbit burst 32kbit latency 400ms \
  || fail "cannot add a tbf qdisc"
code=0
timeout 60 "$CLUSTER" run hosts "$JOB" --logs run2 --rsh "ip netns exec" --pstrain "$PSTRAIN" \
  --grace 3 -- --train "$SRC/examples/data/moons.csv" --consistency ssp --staleness 2 \
  --epochs 10 --output "$WORK/out2" 2> cluster2.log || code=$?
[ $code -eq 0 ] || { tail -n 5 run2/*.log cluster2.log >&2; fail "ssp job exit $code, expected 0"; }
tc -n "${H[2]}" -s qdisc show dev eth0 | grep -q tbf || fail "tbf qdisc missing on host3"
for s in 0 1; do
  gap=$(sed -n 's/.*server\['$s'\] info: done: .*largest clock gap served \([0-9-]*\),.*/\1/p' \
        run2/server-$s.log)
  [ -n "$gap" ] || { tail run2/server-$s.log >&2; fail "server $s reported no clock gap"; }
  [ "$gap" -eq 2 ] || fail "server $s: largest clock gap served $gap, expected exactly the staleness 2"
done
gap=$(sed -n 's/.*all servers stopped; .* largest clock gap served \([0-9-]*\)$/\1/p' \
      run2/coordinator-0.log)
[ -n "$gap" ] && [ "$gap" -eq 2 ] || fail "coordinator: largest clock gap '$gap', expected 2"

# 3. A failing process stops the job with its exit code (missing data file).
code=0
timeout 60 "$CLUSTER" run hosts "$JOB" --logs run3 --rsh "ip netns exec" --pstrain "$PSTRAIN" \
  --grace 3 -- --train /nonexistent/moons.csv --output "$WORK/out3" 2> cluster3.log || code=$?
[ $code -eq 4 ] || fail "job with a missing data file exit $code, expected 4 (the workers')"
expect_in cluster3.log "worker-[01] exited 4; stopping the others"
# Whichever worker failed first named the file (the other may be stopped before it does).
grep -q "moons.csv" run3/worker-0.log run3/worker-1.log || fail "no worker named moons.csv"
"$CLUSTER" status run3 > status.txt
expect_in status.txt "job: finished, exit 4"

# 4. 'stop' on a running job: every process stopped, the run exits 143 (SIGTERM).
"$CLUSTER" run hosts "$JOB" --logs run4 --rsh "ip netns exec" --pstrain "$PSTRAIN" --grace 3 \
  -- --train "$SRC/examples/data/moons.csv" --epochs 100000 --output "$WORK/out4" \
  2> cluster4.log & RUN=$!
for _ in $(seq 100); do grep -q "4 of 4" run4/coordinator-0.log 2>/dev/null && break; sleep 0.1; done
expect_in run4/coordinator-0.log "4 of 4"
"$CLUSTER" status run4 > status.txt
expect_in status.txt "job: running"
expect_in status.txt "worker-0 +${H[1]} +running"
timeout 30 "$CLUSTER" stop run4 > stop.txt || fail "stop did not finish"
code=0; wait $RUN || code=$?
[ $code -eq 143 ] || fail "stopped run exit $code, expected 143"
expect_in stop.txt "stopped; exit 143"

# Nothing left behind by the script: no process in our namespaces.
for n in "${H[@]}"; do
  [ -z "$(ip netns pids "$n")" ] || fail "processes left in $n: $(ip netns pids "$n")"
done
echo "ok"
