"""check_metrics.py RUN_DIR single|dist: the traffic columns of a run's metrics files are
there and plausible (worker/report.h): every epoch row of metrics.csv has them; a
distributed run moved bytes both ways, its latency percentiles are ordered
p50 <= p90 <= p99 and its wait time fits in the epoch; steps.csv/steps.jsonl hold the
per-N-steps records. Exits non-zero with a message on the first failed check."""
import csv, json, sys

run, kind = sys.argv[1], sys.argv[2]
COMM = ("bytes_pushed,bytes_pulled,push_ms_p50,push_ms_p90,push_ms_p99,pull_ms_p50,"
        "pull_ms_p90,pull_ms_p99,staleness_mean,staleness_max,wait_s,compute_s").split(",")


def fail(msg):
    sys.exit("FAIL: %s: %s" % (run, msg))


def num(row, key):
    v = row.get(key)
    return None if v in (None, "") else float(v)


def check(rows, what, secs_key):
    if not rows:
        fail("%s: no records" % what)
    for i, r in enumerate(rows):
        where = "%s record %d" % (what, i + 1)
        for k in COMM:
            if k not in r:
                fail("%s: no column %s" % (where, k))
        secs, wait, comp = num(r, secs_key), num(r, "wait_s"), num(r, "compute_s")
        if wait is None or comp is None or wait < 0 or comp < 0:
            fail("%s: wait_s %r compute_s %r" % (where, wait, comp))
        if abs(wait + comp - secs) > 1e-3 + 1e-3 * secs:
            fail("%s: wait_s + compute_s = %g, not the %g s of the interval"
                 % (where, wait + comp, secs))
        if kind == "single":
            if num(r, "bytes_pushed") != 0 or num(r, "bytes_pulled") != 0 or wait != 0:
                fail("%s: a single-process run has no traffic: %r" % (where, r))
            continue
        if not num(r, "bytes_pushed") > 0 or not num(r, "bytes_pulled") > 0:
            fail("%s: bytes pushed %r pulled %r, expected > 0"
                 % (where, r["bytes_pushed"], r["bytes_pulled"]))
        for op in ("push", "pull"):
            p = [num(r, "%s_ms_p%d" % (op, q)) for q in (50, 90, 99)]
            if None in p or not (0 < p[0] <= p[1] <= p[2]):
                fail("%s: %s latency percentiles %r not 0 < p50 <= p90 <= p99" % (where, op, p))
        smean, smax = num(r, "staleness_mean"), num(r, "staleness_max")
        if smean is None or smax is None or not (0 <= smean <= smax):
            fail("%s: staleness mean %r max %r" % (where, smean, smax))


epochs = [r for r in csv.DictReader(open(run + "/metrics.csv"))]
check(epochs, "metrics.csv", "seconds")
js = [json.loads(l) for l in open(run + "/metrics.jsonl") if l.strip()]
check([{k: ("" if v is None else v) for k, v in r.items()} for r in js if r["split"] == "train"],
      "metrics.jsonl", "seconds")
steps = [r for r in csv.DictReader(open(run + "/steps.csv"))]
check(steps, "steps.csv", "seconds")
sj = [json.loads(l) for l in open(run + "/steps.jsonl") if l.strip()]
if len(sj) != len(steps):
    fail("steps.jsonl has %d records, steps.csv %d" % (len(sj), len(steps)))
print("%s: %d epoch records, %d step records ok" % (run, len(epochs), len(steps)))
