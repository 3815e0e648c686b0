#!/usr/bin/env bash
# The Prometheus endpoints of a running job (docs/observability.md). A bsp job of 2 servers
# and 2 workers runs under `pstrain local --metrics-port BASE`, worker[1] slowed so that it
# trains for tens of seconds. While it runs, every server (BASE+1+r) and the coordinator
# (BASE) are scraped until their values show the job under way -- pushes and pulls > 0,
# live workers == 2, a checkpoint written, both workers registered, live and reporting
# steps -- or a deadline passes (no fixed sleeps: the scrape is retried). Each scrape must
# pass `promtool check metrics`; the coordinator's /status must be JSON listing the 5
# processes; other paths answer 404. A second server asking for a port in use must fail
# at once with one line naming it (exit 2). The job is then stopped with SIGTERM.
source "$(dirname "$0")/lib.sh"
command -v promtool > /dev/null || { echo "promtool not installed (Debian: prometheus); skipping"; exit 77; }
PY=/usr/bin/python3

# The servers' ports must fit after the base: refused before anything starts.
expect_exit 2 "$PSTRAIN" local "$SRC/examples/binary-moons.yaml" --servers 2 --metrics-port 65534
expect_in err.txt "cluster.metrics_port: must be 0 \(off\) or a port with room for the 2 servers"

# A base with BASE..BASE+2 free (the kernel may hand one out meanwhile; then the job fails
# with the port-in-use line and the test says so).
BASE=$($PY - <<'PY'
import random, socket
for _ in range(200):
    b = random.randrange(20000, 60000)
    socks = []
    try:
        for p in range(b, b + 3):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(b); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
)
[ -n "$BASE" ] || fail "no free port range found"

PSTRAIN_TEST_SLOW_WORKER=1 PSTRAIN_TEST_STEP_DELAY_MS=30 \
  "$PSTRAIN" local "$SRC/examples/binary-moons.yaml" --consistency bsp --servers 2 --workers 2 \
  --epochs 200 --checkpoint.every_steps 20 --output run --metrics-port "$BASE" \
  > out.txt 2> err.txt &
job=$!
cleanup_job() { kill -TERM $job 2> /dev/null; wait $job 2> /dev/null; }
trap 'cleanup_job; rm -rf "$WORK"' EXIT

# Scrapes until every check holds (exit 0), the job ends (exit 1) or 120 s pass (exit 1).
$PY - "$BASE" $job <<'PY'
import collections, json, os, subprocess, sys, time, urllib.error, urllib.request
base, pid = int(sys.argv[1]), int(sys.argv[2])

def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()

def samples(text):
    out = collections.defaultdict(lambda: float("nan"))  # absent: every check fails
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out

def promtool(text, what):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True)
    if p.returncode != 0:
        sys.exit("promtool check metrics failed on %s: %s%s" % (what, p.stdout.decode(),
                                                                 p.stderr.decode()))

def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

deadline, why = time.time() + 120, "nothing scraped"
while time.time() < deadline:
    if not alive():
        sys.exit("the job ended before the checks held; last: " + why)
    try:
        texts = {}
        for r in range(2):
            st, ct, texts["server[%d]" % r] = get(base + 1 + r, "/metrics")
            assert ct.startswith("text/plain; version=0.0.4"), ct
        st, ct, texts["coordinator"] = get(base, "/metrics")
        st, ct, status = get(base, "/status")
        assert ct == "application/json", ct
    except (OSError, urllib.error.URLError) as e:
        why = "scrape: %s" % e
        time.sleep(0.2)
        continue
    ok = True
    for r in range(2):
        m = samples(texts["server[%d]" % r])
        checks = [m["pstrain_server_pushes_total"] > 0, m["pstrain_server_pulls_total"] > 0,
                  m["pstrain_server_received_bytes_total"] > 0,
                  m["pstrain_server_sent_bytes_total"] > 0,
                  m["pstrain_server_received_bytes_per_step"] > 0,
                  m["pstrain_server_sent_bytes_per_step"] > 0,
                  m["pstrain_server_live_workers"] == 2, m["pstrain_server_workers"] == 2,
                  m["pstrain_server_clock"] > 0, m["pstrain_server_checkpoints_total"] >= 1,
                  "pstrain_server_last_checkpoint_age_seconds" in m,
                  m["pstrain_server_push_apply_seconds_count"] > 0,
                  m['pstrain_server_push_apply_seconds_bucket{le="+Inf"}']
                  == m["pstrain_server_push_apply_seconds_count"],
                  m["pstrain_server_nonfinite_gradients_total"] == 0,
                  m['pstrain_refused_messages_total{reason="malformed"}'] == 0,
                  m['pstrain_refused_messages_total{reason="refused"}'] == 0,
                  m["pstrain_server_clock_gap_max"] == 0,  # bsp serves no stale weights
                  abs(m["process_start_time_seconds"] - time.time()) < 600]
        if not all(checks):
            ok, why = False, "server[%d]: %s" % (r, checks)
    c = samples(texts["coordinator"])
    checks = [c['pstrain_coord_registered{role="server"}'] == 2,
              c['pstrain_coord_registered{role="worker"}'] == 2,
              c['pstrain_coord_live{role="worker"}'] == 2,
              c['pstrain_coord_live{role="server"}'] == 2,
              c["pstrain_coord_workers_done"] == 0,
              c['pstrain_refused_messages_total{reason="malformed"}'] == 0,
              c['pstrain_refused_messages_total{reason="refused"}'] == 0,
              0 < c["pstrain_coord_progress_ratio"] < 1,
              c['pstrain_coord_worker_step{worker="0"}'] > 0,
              c['pstrain_coord_worker_step{worker="1"}'] > 0,
              c['pstrain_coord_worker_epoch{worker="1"}'] >= 1,
              0 <= c['pstrain_coord_last_heard_seconds{role="worker",rank="1"}'] < 60,
              'pstrain_coord_last_heard_seconds{role="server",rank="0"}' in c]
    if not all(checks):
        ok, why = False, "coordinator: %s" % checks
    doc = json.loads(status)
    procs = doc["processes"]
    roles = sorted((p["role"], p["rank"]) for p in procs)
    checks = [doc["role"] == "coordinator", doc["phase"] == "training",
              roles == [("server", 0), ("server", 1), ("worker", 0), ("worker", 1)],
              all(p["state"] == "alive" and p.get("pid", 0) > 0 and
                  p.get("last_heard_s_ago", -1) >= 0 for p in procs),
              all(p.get("endpoint", "").startswith("tcp://") for p in procs
                  if p["role"] == "server"),
              all(p.get("steps_done", 0) > 0 for p in procs if p["role"] == "worker")]
    if not all(checks):
        ok, why = False, "/status: %s %s" % (checks, status)
    if ok:
        for what, text in texts.items():
            promtool(text, what)
        for port in (base, base + 1):
            try:
                get(port, "/nope")
                sys.exit("/nope on port %d did not answer 404" % port)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    sys.exit("/nope on port %d answered %d" % (port, e.code))
        with open("scrape.txt", "w") as f:
            f.write(texts["server[0]"] + texts["coordinator"] + status + "\n")
        sys.exit(0)
    time.sleep(0.2)
sys.exit("the checks did not hold within 120 s; last: " + why)
PY
rc=$?
if [ $rc -ne 0 ]; then
  tail -20 err.txt >&2
  fail "scraping the running job failed (see above)"
fi
expect_in err.txt "server\[1\] info: metrics on http://127.0.0.1:$((BASE + 2))/metrics"
expect_in err.txt "coordinator info: metrics on http://127.0.0.1:$BASE/metrics and /status"

# Server[0]'s port is taken (by the running job): refused at once, before any network wait.
# (In a folder of its own: the job still writes ./err.txt.)
mkdir busy && cd busy
expect_exit 2 "$PSTRAIN" server "$SRC/examples/binary-moons.yaml" --rank 0 \
  --coordinator tcp://127.0.0.1:9 --metrics-port $((BASE + 1))
[ "$(wc -l < err.txt)" -eq 1 ] || fail "expected one line, got: $(cat err.txt)"
expect_in err.txt "^pstrain server: metrics port $((BASE + 1)) on 127.0.0.1: Address already in use$"
# A coordinator port in use is as permanent as a metrics port in use: exit 2, not 75.
expect_exit 2 "$PSTRAIN" coordinator "$SRC/examples/binary-moons.yaml" \
  --bind tcp://127.0.0.1:$BASE --output here
expect_in err.txt "cannot bind tcp://127.0.0.1:$BASE: Address already in use"
cd ..

kill -TERM $job
wait $job
rc=$?
[ $rc -eq 143 ] || { tail -20 err.txt >&2; fail "the job exited $rc after SIGTERM, expected 143"; }
trap 'rm -rf "$WORK"' EXIT
echo "ok: scraped 2 servers and the coordinator on ports $BASE..$((BASE + 2))"
