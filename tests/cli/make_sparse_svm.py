#!/usr/bin/python3
"""The sparse test data of test_sparse_train.sh and test_sparse_dist.sh: OUT (libsvm) with
2400 rows of 10 ids each out of 400, scaled to 64-bit-looking ids (k * 1000000007 + 3),
label = the sign of a fixed random linear function of them -- learnable, as every id
recurs ~60 times. Seeded: the same file every run."""
import random
import sys

random.seed(7)
w = [random.gauss(0, 1) for _ in range(400)]
with open(sys.argv[1], "w") as f:
    for _ in range(2400):
        ks = sorted(random.sample(range(400), 10))
        y = 1 if sum(w[k] for k in ks) > 0 else 0
        f.write("%d %s\n" % (y, " ".join("%d:1" % (k * 1000000007 + 3) for k in ks)))
