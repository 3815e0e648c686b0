#!/usr/bin/env python3
"""bench/run_sparse_traffic.py -- bytes per step of a sparse job against the same model densified.

Trains an embedding_bag (dim d, mean) -> dense 16 -> softmax classifier on synthetic libsvm rows
(F ids per row out of a vocabulary of V 64-bit-looking ids) with `pstrain local` (S servers x W
workers, bsp) and reads each server's last lines: the sparse bytes it received and sent (keys,
gradients, rows: exact counts) and its pushes (worker steps x tables). Per worker step:
  sparse job  = measured sparse bytes / steps + the dense part P x 4 B x 2 (push + pull)
  densified   = (P + R x d) x 4 B x 2, R = the rows the servers hold (every key touched), i.e. the
                same model with its table as a dense matrix of the keys that occur; and for a
                hashed id space of 2^20 ids (what a densified hashed model would hold).
Prints one "summary" line; figures only, it never fails on them.

usage: bench/run_sparse_traffic.py [--build DIR] [--smoke]
  --smoke  a check that it runs (ctest -L bench): a small vocabulary, 1 epoch (seconds)
"""
import os
import random
import re
import subprocess
import sys
import tempfile

args = sys.argv[1:]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = os.path.join(root, "build")
if "--build" in args:
    build = args[args.index("--build") + 1]
smoke = "--smoke" in args
pstrain = os.path.join(build, "pstrain")
V, F, N, d, epochs = (400, 10, 2400, 8, 1) if smoke else (100000, 20, 20000, 16, 2)
S, W = 2, 2

tmp = tempfile.mkdtemp(prefix="sparse-traffic-")
random.seed(7)
w = [random.gauss(0, 1) for _ in range(V)]
with open(os.path.join(tmp, "train.svm"), "w") as f:
    for _ in range(N):
        # Zipf-like: a few ids are frequent, most rare (as hashed words or categories)
        ks = sorted({min(V - 1, int(random.paretovariate(0.7))) for _ in range(F)} |
                    {random.randrange(V)})
        y = 1 if sum(w[k] for k in ks) > 0 else 0
        f.write("%d %s\n" % (y, " ".join("%d:1" % (k * 1000000007 + 3) for k in ks)))
job = os.path.join(tmp, "job.yaml")
with open(job, "w") as f:
    f.write("""name: sparse-traffic
data: {format: libsvm, train: train.svm, sparse: true, num_classes: 2, validation_split: 0.2}
model:
  layers:
    - {type: embedding_bag, dim: %d, combiner: mean}
    - {units: 16, activation: relu}
    - {units: 2, activation: softmax}
optimizer: {name: adam, lr: 0.01}
sparse: {optimizer: adam, lr: 0.01}
train: {epochs: %d, batch_size: 64}
""" % (d, epochs))
r = subprocess.run([pstrain, "local", "job.yaml", "--consistency", "bsp", "--servers", str(S),
                    "--workers", str(W), "--output", "out"], cwd=tmp, capture_output=True,
                   text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
if r.returncode != 0:
    sys.stderr.write(r.stderr[-3000:])
    sys.exit(1)
pat = re.compile(r"server\[\d+\] info: sparse: (\d+) table\(s\), (\d+) rows held .*; (\d+) pushes "
                 r"\((\d+) keys\), (\d+) rows pulled, (\d+) bytes in, (\d+) bytes out")
rows = steps = sbytes = keys = 0
for m in pat.finditer(r.stderr):
    T, held, pushes, k, _, bi, bo = map(int, m.groups())
    rows += held
    steps = pushes // T  # every worker step pushes each table to every server
    sbytes += bi + bo
    keys += k
P = 16 * d + 16 + 16 * 2 + 2  # the dense layers' floats
dense_part = P * 4 * 2
sparse_step = sbytes / steps + dense_part
densified = (P + rows * d) * 4 * 2
hashed = (P + (1 << 20) * d) * 4 * 2
print("run: V=%d ids, %d per row, d=%d, %d servers x %d workers, %d worker steps, %d rows held, "
      "%.1f unique keys per worker step and server" % (V, F, d, S, W, steps, rows, keys / steps / S))
print("summary sparse %.0f bytes/step, densified %.0f bytes/step (%.1fx), hashed 2^20 densified "
      "%.0f bytes/step (%.1fx)" % (sparse_step, densified, densified / sparse_step, hashed,
                                   hashed / sparse_step))
