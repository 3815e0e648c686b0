#!/usr/bin/env bash
# The Kubernetes manifests and the container recipe, checked without a cluster or a
# container engine: the rendered YAML lints, every object passes the upstream Kubernetes
# schemas (tests/k8s/validate_upstream.mjs: kubernetes-models' validators plus a check
# for fields the schema does not have; a JobSet's own fields by the strict schema in
# check_manifests.py, as no upstream JobSet schema is reachable offline), the env
# contract matches what `pstrain <role> --help` documents (ranks, counts, coordinator and
# server addresses and ports line up), and the runtime image installs every library the
# binary links. Skips (77) when yamllint, the Python modules, node or the npm packages
# are missing (scripts/install-deps.sh installs them).
source "$(dirname "$0")/lib.sh"
command -v yamllint > /dev/null || { echo "skip: yamllint not installed"; exit 77; }
/usr/bin/python3 -c 'import yaml, jsonschema' 2> /dev/null \
  || { echo "skip: python3-yaml or python3-jsonschema not installed"; exit 77; }
command -v node > /dev/null || { echo "skip: node is not installed (scripts/install-deps.sh)"; exit 77; }
[ -d "$SRC/tests/k8s/node_modules/kubernetes-models" ] \
  || { echo "skip: npm packages missing in tests/k8s (scripts/install-deps.sh runs npm ci there)"; exit 77; }
RENDER="$SRC/deploy/k8s/render.py"
CHECK="$SRC/tests/k8s/check_manifests.py"
UPSTREAM="node $SRC/tests/k8s/validate_upstream.mjs"
JOB="$SRC/examples/binary-moons.yaml"
LINT='{extends: default, rules: {line-length: {max: 120}}}'

for variant in "" --jobset; do
  /usr/bin/python3 "$RENDER" --servers 2 --workers 3 --image registry.example/pstrain:1.0 \
    --job "$JOB" $variant > m.yaml || fail "render.py $variant failed"
  yamllint -s -d "$LINT" m.yaml > lint.txt || { cat lint.txt >&2; fail "yamllint $variant"; }
  $UPSTREAM m.yaml > up.txt || { cat up.txt >&2; fail "upstream schema check $variant"; }
  expect_in up.txt "^ok$"
  /usr/bin/python3 "$CHECK" m.yaml "$PSTRAIN" "$JOB" 2 3 registry.example/pstrain:1.0 \
    > check.txt || { cat check.txt >&2; fail "manifest check $variant"; }
  expect_in check.txt "^ok$"
  # The upstream schemas catch a misspelt field, a wrong type and an unknown field, in
  # every object and in a JobSet's Job templates; the JobSet's own fields are checked by
  # check_manifests.py's schema.
  # Each broken copy is bad<N>.yaml; one node process then checks them all.
  bad=() says=() how=()
  upstream_broken() { # SED-EXPR WHAT-THE-CHECK-SAYS
    local f=bad${#bad[@]}.yaml
    sed "$1" m.yaml > "$f"
    bad+=("$f") says+=("$2") how+=("$1")
  }
  if [ -z "$variant" ]; then
    T='Job pstrain-server: spec.template.spec'
  else
    T='JobSet pstrain: spec.replicatedJobs\[1\].template.spec.template.spec'
  fi
  upstream_broken 's/readinessProbe:/readinesProbe:/' "$T.containers\[0\]: unknown field 'readinesProbe'$"
  upstream_broken 's/containerPort: 7071/containerPort: "7071"/' "$T.containers\[0\].ports\[0\].containerPort: must be integer$"
  upstream_broken 's/^\( *\)restartPolicy: Never/&\n\1extraField: 1/' "$T: unknown field 'extraField'$"
  upstream_broken 's/runAsNonRoot: true/runAsNonRoot: yes-please/' "$T.securityContext.runAsNonRoot: must be boolean$"
  upstream_broken 's/accessModes:/accesModes:/' "PersistentVolumeClaim pstrain-data: spec: unknown field 'accesModes'$"
  upstream_broken 's/^  name: pstrain-job$/  name: pstrain-job\n  labelz: {}/' "ConfigMap pstrain-job: metadata: unknown field 'labelz'$"
  $UPSTREAM "${bad[@]}" > up.txt && fail "upstream check passed every broken copy ($variant)"
  for i in "${!bad[@]}"; do
    grep -q "^${bad[$i]}: ok$" up.txt && fail "upstream check passed with '${how[$i]}' ($variant)"
    expect_in up.txt "^${bad[$i]}: ${says[$i]}"
  done
done
# The JobSet's own fields: a misspelt one, a wrong type and an unknown one.
for e in 's/^  startupPolicy:/  startupPolicyy:/|startupPolicyy' \
         's/maxRestarts: 3/maxRestarts: three/|three' \
         's/^  replicatedJobs:/  suspendd: false\n  replicatedJobs:/|suspendd'; do
  sed "${e%|*}" m.yaml > bad.yaml
  /usr/bin/python3 "$CHECK" bad.yaml "$PSTRAIN" "$JOB" 2 3 registry.example/pstrain:1.0 \
    > check.txt && fail "JobSet check passed with '${e%|*}'"
  expect_in check.txt "JobSet pstrain: spec.*${e#*|}"
done
expect_in m.yaml "kind: JobSet"
# The last render is the JobSet; now the plain one again, for the negative checks.
/usr/bin/python3 "$RENDER" --servers 2 --workers 3 --image img --job "$JOB" > m.yaml
grep -q "^kind: Job$" m.yaml || fail "plain render has no Job"

# The checks catch real breakage: a probe on another port than the server listens on, an
# undocumented variable, a wrong count, a misspelt field, exit code 2 retried.
broken() { # SED-EXPR WHAT-THE-CHECK-SAYS
  sed "$1" m.yaml > bad.yaml
  /usr/bin/python3 "$CHECK" bad.yaml "$PSTRAIN" "$JOB" 2 3 img > check.txt \
    && fail "check passed with '$1'"
  expect_in check.txt "$2"
}
broken 's/value: "7071"/value: "7072"/' "servers: bind 0.0.0.0 port 7072, probed on 7071"
broken 's/name: PSTRAIN_NUM_WORKERS/name: PSTRAIN_WORKERS/' "variable PSTRAIN_WORKERS is not in"
broken '0,/value: "3"/s//value: "4"/' "counts 2/4, expected 2/3"
broken 's/- 2$/- 75/' "exit code 2 \(permanent\) does not fail the job"
broken 's/completions: 3/completions: 2/' "workers: 2 pods, expected 3"
broken 's|tcp://pstrain-coordinator-0.pstrain:7070|tcp://pstrain-coordinator.pstrain:7070|' \
  "coordinator tcp://pstrain-coordinator.pstrain:7070, expected"

# CURVE (--curve-secret): both variants pass every check above plus the key checks (each
# role's pstrain accepts the keys laid out as its Secret mount would lay them), and the
# checks catch a worker given the server secret key, a variable naming a file the mount
# does not have, and key files readable by everyone.
for variant in "" --jobset; do
  /usr/bin/python3 "$RENDER" --servers 2 --workers 3 --image img --job "$JOB" $variant \
    --curve-secret pstrain-keys > m.yaml || fail "render.py --curve-secret $variant failed"
  yamllint -s -d "$LINT" m.yaml > lint.txt || { cat lint.txt >&2; fail "yamllint curve $variant"; }
  /usr/bin/python3 "$CHECK" m.yaml "$PSTRAIN" "$JOB" 2 3 img > check.txt \
    || { cat check.txt >&2; fail "manifest check --curve-secret $variant"; }
  expect_in check.txt "^ok$"
done
expect_in m.yaml "secretName: pstrain-keys"
! grep -q "BEGIN\|# pstrain CURVE" m.yaml || fail "the manifests carry key material"
sed '0,/- key: worker.key/s//- key: server.key/' m.yaml > bad.yaml
/usr/bin/python3 "$CHECK" bad.yaml "$PSTRAIN" "$JOB" 2 3 img > check.txt && fail "check passed a worker with server.key"
expect_in check.txt "workers: mount the server secret key"
broken 's|value: /etc/pstrain-keys/worker.key|value: /etc/pstrain-keys/w.key|' \
  "workers: the mounted keys are refused: pstrain worker: security: cannot read key file .*/w.key"
broken 's/defaultMode: 288/defaultMode: 420/' "key files readable by others"
/usr/bin/python3 "$RENDER" --servers 1 --workers 1 --image i --job "$JOB" --curve-secret "" \
  > /dev/null 2> err.txt && fail "render.py accepted an empty --curve-secret"
expect_in err.txt "must be a Secret name"
/usr/bin/python3 "$RENDER" --servers 2 --workers 3 --image img --job "$JOB" > m.yaml
# Workers restart as cluster.max_restarts says (2 here): a budget per rank, and the checks
# catch a budget that does not match the job's, or a worker exit code 4 retried.
cp "$JOB" job2.yaml
printf 'cluster:\n  max_restarts: 2   # per worker\n' >> job2.yaml
/usr/bin/python3 "$RENDER" --servers 2 --workers 3 --image img --job job2.yaml > m2.yaml
/usr/bin/python3 "$CHECK" m2.yaml "$PSTRAIN" job2.yaml 2 3 img > check.txt \
  || { cat check.txt >&2; fail "manifest check with max_restarts 2"; }
expect_in m2.yaml "^  backoffLimitPerIndex: 2$"
expect_in m2.yaml "^  backoffLimit: 9$"
/usr/bin/python3 "$RENDER" --servers 2 --workers 3 --image img --job job2.yaml --jobset > m2.yaml
/usr/bin/python3 "$CHECK" m2.yaml "$PSTRAIN" job2.yaml 2 3 img > check.txt \
  || { cat check.txt >&2; fail "JobSet manifest check with max_restarts 2"; }
expect_in m2.yaml "^          backoffLimit: 6$"
/usr/bin/python3 "$RENDER" --servers 2 --workers 3 --image img --job job2.yaml --max-restarts 1 \
  > m2.yaml
expect_in m2.yaml "^  backoffLimitPerIndex: 1$"
broken 's/backoffLimitPerIndex: 0/backoffLimitPerIndex: 1/' \
  "workers: backoffLimit/backoffLimitPerIndex 3/1, expected 3/0 for cluster.max_restarts 0"
broken '/- 3$/{n;s/- 4$/- 5/}' "workers: exit code 4 \(permanent for a worker\) does not fail"

# Bad arguments to the renderer are usage errors.
/usr/bin/python3 "$RENDER" --servers 0 --workers 1 --image i --job "$JOB" > /dev/null 2> err.txt \
  && fail "render.py accepted 0 servers"
expect_in err.txt "at least 1"
/usr/bin/python3 "$RENDER" --servers 1 --workers 1 --image i --job "$JOB" --max-restarts -1 \
  > /dev/null 2> err.txt && fail "render.py accepted --max-restarts -1"
expect_in err.txt "max-restarts must be in"

# The container recipe: multi-stage, Debian 12, non-root, pstrain as the entry point, and
# its runtime stage provides every library `ldd pstrain` lists.
CF="$SRC/deploy/container/Containerfile"
expect_in "$CF" "^ARG BASE=debian:12$"
expect_in "$CF" "^ARG RUNTIME_BASE=debian:12-slim$"
expect_in "$CF" '^FROM \$\{BASE\} AS build$'
expect_in "$CF" '^FROM \$\{RUNTIME_BASE\} AS runtime$'
# libcyaml's header includes yaml.h, which libcyaml-dev only recommends: the build stage
# failed without libyaml-dev (tests/cli/test_container.sh builds the image for real).
expect_in "$CF" "libcyaml-dev libyaml-dev"
expect_in "$CF" "^USER pstrain$"
expect_in "$CF" '^ENTRYPOINT \["pstrain"\]$'
/usr/bin/python3 "$SRC/tests/k8s/check_runtime_libs.py" "$CF" "$PSTRAIN" > libs.txt \
  || { cat libs.txt >&2; fail "runtime stage lacks libraries"; }
echo "ok"
