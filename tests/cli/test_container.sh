#!/usr/bin/env bash
# The container image, built and run for real (ctest label "container", which CI runs once:
# scripts/test.sh). Builds deploy/container/Containerfile with podman (cached: a rebuild
# with unchanged sources takes seconds, a changed source file recompiles only itself);
# runs `pstrain --version` and `pstrain train --epochs 1` in it as the non-root user; then
# a whole job as separate containers on a podman network -- coordinator, 2 servers, 2
# workers, each its own container, addressed by container name as pods are on Kubernetes,
# with the Kubernetes manifests' environment (rank from JOB_COMPLETION_INDEX,
# PSTRAIN_COORDINATOR, PSTRAIN_ADVERTISE, ...) and a shared /data volume -- kills a server
# container with SIGKILL mid-training, has podman's restart policy (or, where podman does
# not apply it, this script) start it again, and checks that the job completes: every
# container exits 0 and the accuracy is that of a job never disturbed.
#
# Skips (77) where podman cannot run containers. Deletes the containers and the network
# it creates, also on failure; keeps the images (the build cache). No registry needed:
# without a debian:12 image it makes one from the Debian archive (deploy/container/
# make-base.sh). Set PSTRAIN_CONTAINER_KEEP=1 to keep the containers for a look.
source "$(dirname "$0")/lib.sh"
command -v podman > /dev/null || { echo "skip: podman is not installed (scripts/install-deps.sh installs it)"; exit 77; }
# This VM (and many CI runners) refuse podman's default rlimits and cgroup-v2
# controllers; these settings are harmless elsewhere (DESIGN-NOTES "Containers without a
# registry").
if [ -z "${CONTAINERS_CONF:-}" ]; then
  {
    printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n'
    command -v runc > /dev/null && printf 'runtime = "runc"\n'
  } > "$WORK/containers.conf"
  export CONTAINERS_CONF=$WORK/containers.conf
fi
podman info > podman-info.txt 2>&1 || { tail -3 podman-info.txt; echo "skip: podman cannot run here (podman info failed)"; exit 77; }

P=pct$$                   # names of this run's containers and network
NET=$P-net
IMG=localhost/pstrain-test:latest
cleanup() {
  if [ "${PSTRAIN_CONTAINER_KEEP:-0}" != 1 ]; then
    podman ps -a --filter "name=^$P-" --format '{{.Names}}' 2> /dev/null \
      | xargs -r podman rm -f -t 0 > /dev/null 2>&1
    podman network rm -f "$NET" > /dev/null 2>&1
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
t0=$(date +%s)

# ---- the image -----------------------------------------------------------------------
base=docker.io/library/debian:12 slim=docker.io/library/debian:12-slim
if ! podman image exists $base || ! podman image exists $slim; then
  base=localhost/debian:12 slim=localhost/debian:12
  "$SRC/deploy/container/make-base.sh" $base > base.txt 2>&1 \
    || { cat base.txt; echo "skip: no debian:12 image and none can be made (no debootstrap or no archive)"; exit 77; }
fi
podman run --rm $base true > run.txt 2>&1 \
  || { tail -3 run.txt; echo "skip: podman cannot start a container here"; exit 77; }
(cd "$SRC" && podman build --network host -f deploy/container/Containerfile \
  --build-arg BASE=$base --build-arg RUNTIME_BASE=$slim -t $IMG . ) > build.txt 2>&1 \
  || { tail -30 build.txt >&2; fail "podman build failed"; }
t1=$(date +%s)
size=$(podman image inspect --format '{{.Size}}' $IMG)
echo "image $IMG: $((size / 1000000)) MB, built in $((t1 - t0)) s" \
  "($(grep -c 'Using cache' build.txt) cached steps)"

# ---- one container: --version, and a short training run as the non-root user ---------
podman run --rm $IMG --version > out.txt 2>&1 || { cat out.txt; fail "pstrain --version failed"; }
expect_in out.txt "^pstrain [0-9]+\.[0-9]+\.[0-9]+"
podman run --rm --entrypoint id $IMG -u > out.txt 2>&1
[ "$(cat out.txt)" = 1000 ] || fail "the image runs as uid $(cat out.txt), expected 1000"
EX=/usr/share/pstrain/examples
podman run --rm --name $P-train $IMG train $EX/binary-moons.yaml --epochs 1 --output /tmp/run \
  > out.txt 2> err.txt || { tail -5 err.txt >&2; fail "pstrain train in the container failed"; }
expect_in err.txt "train info: done; model in /tmp/run/model.safetensors"

# ---- a whole job, one container per process, on a network -----------------------------
podman network create $NET > /dev/null || fail "podman network create failed"
[ "$(podman network inspect --format '{{.DNSEnabled}}' $NET)" = true ] || {
  echo "skip: podman networks here resolve no container names (install"\
    "golang-github-containernetworking-plugin-dnsname, or aardvark-dns with netavark)"; exit 77; }
mkdir -p data && chown 1000:1000 data   # the shared volume (the PersistentVolumeClaim)
S=2 W=2
JOB=(--epochs 20 --consistency bsp --cluster.max_restarts 1 --checkpoint.every_steps 10
     --cluster.heartbeat_timeout_s 10)
COORD=tcp://$P-coordinator-0:7070
start() { # ROLE INDEX [podman options...]: the pod of that role, as render.py makes it
  local role=$1 i=$2; shift 2
  local env=(-e PSTRAIN_NUM_SERVERS=$S -e PSTRAIN_NUM_WORKERS=$W -e JOB_COMPLETION_INDEX=$i)
  case $role in
    coordinator) env+=(-e PSTRAIN_BIND=tcp://0.0.0.0:7070) ;;
    server) env+=(-e PSTRAIN_COORDINATOR=$COORD -e PSTRAIN_BIND=0.0.0.0 -e PSTRAIN_PORT=7071
                  -e PSTRAIN_ADVERTISE=$P-server-$i) ;;
    worker) env+=(-e PSTRAIN_COORDINATOR=$COORD) ;;
  esac
  # Each container is a pid namespace of its own (every pstrain is pid 1, as in a
  # Kubernetes pod): the restarted server must still be told from its dead predecessor
  # (base/ident.h: routing ids carry the process's start time and host).
  podman run -d --name $P-$role-$i --hostname $P-$role-$i --network $NET -v "$WORK/data:/data" \
    "${env[@]}" "$@" $IMG $role $EX/binary-moons.yaml --output /data/job "${JOB[@]}" > /dev/null \
    || fail "cannot start $role $i"
}
logs() { for c in $(podman ps -a --filter "name=^$P-" --format '{{.Names}}'); do
  echo "--- $c"; podman logs --tail 8 $c 2>&1; done >&2; }
start coordinator 0
for i in $(seq 0 $((S - 1))); do start server $i --restart on-failure:2; done
# Worker 1 is slowed (20 ms a step: about 4 s of training) so that the kill lands mid-run.
start worker 0
start worker 1 -e PSTRAIN_TEST_SLOW_WORKER=1 -e PSTRAIN_TEST_STEP_DELAY_MS=20
# Once server 1 has a checkpoint, kill it as a node failure would (SIGKILL from outside).
for _ in $(seq 600); do
  podman logs $P-server-1 2>&1 | grep -q "server\[1\] info: checkpoint of clock" && break
  sleep 0.1
done
podman logs $P-server-1 2>&1 | grep -q "checkpoint of clock" || { logs; fail "server 1 wrote no checkpoint"; }
pid=$(podman inspect --format '{{.State.Pid}}' $P-server-1)
kill -KILL "$pid" || fail "cannot kill server 1 (pid $pid)"
# podman's restart policy starts it again; where podman does not apply it (no conmon
# cleanup process), this script does, as a Kubernetes kubelet would.
how="podman's restart policy"
for _ in $(seq 100); do
  [ "$(podman inspect --format '{{.RestartCount}}' $P-server-1 2> /dev/null)" -ge 1 ] 2> /dev/null && break
  sleep 0.1
done
if [ "$(podman inspect --format '{{.RestartCount}}' $P-server-1)" -lt 1 ]; then
  how="the test's supervisor (podman start)"
  podman start $P-server-1 > /dev/null || fail "cannot start server 1 again"
fi
echo "server 1 killed (pid $pid) and restarted by $how"
for c in coordinator-0 worker-0 worker-1 server-0 server-1; do
  rc=$(timeout 120 podman wait $P-$c) || { logs; fail "$c did not end within 120 s"; }
  [ "$rc" = 0 ] || { logs; fail "$c exited $rc"; }
done
podman logs $P-server-1 > server1.txt 2>&1
expect_in server1.txt "server\[1\] warn: restarted \(incarnation 2\): recovering the shard from the checkpoint of clock [0-9]+"
podman logs $P-worker-0 > worker0.txt 2>&1
expect_in worker0.txt "worker\[0\] info: server\[1\] restarted: reconnected to tcp://$P-server-1:7071"
podman logs $P-coordinator-0 > coord.txt 2>&1
expect_in coord.txt "coordinator info: job finished"
[ -f data/job/model.safetensors ] || fail "no model in the shared volume"
acc=$(json_field data/job/metrics.jsonl validation accuracy)
expect_ge "$acc" 0.9 "validation accuracy of the containerised job (0.99 measured)"
echo "job of 5 containers: exit 0, validation accuracy $acc; total $(($(date +%s) - t0)) s"
echo "ok"
