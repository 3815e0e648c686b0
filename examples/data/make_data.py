#!/usr/bin/python3
"""Generates the small example datasets in this folder (deterministic; rerun to recreate).

moons.csv       binary classification: two interleaved half-moons in 2-D with noise,
                columns x1,x2,label (label 0/1); 800 rows.
regression.csv  regression: y = sin(2 x1) + 0.5 x2^2 - 0.8 x3 + 0.3 x1 x4 + noise,
                columns x1..x4,y; 1000 rows.
"""
import os

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261129)

n = 800
t = rng.uniform(0, np.pi, n)
lab = rng.integers(0, 2, n)
x1 = np.where(lab == 0, np.cos(t), 1 - np.cos(t))
x2 = np.where(lab == 0, np.sin(t), 0.5 - np.sin(t))
x1 += rng.normal(0, 0.15, n)
x2 += rng.normal(0, 0.15, n)
with open(os.path.join(here, "moons.csv"), "w") as f:
    f.write("x1,x2,label\n")
    for a, b, c in zip(x1, x2, lab):
        f.write(f"{a:.5f},{b:.5f},{c}\n")

n = 1000
X = rng.uniform(-2, 2, (n, 4))
y = (np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 - 0.8 * X[:, 2] + 0.3 * X[:, 0] * X[:, 3]
     + rng.normal(0, 0.1, n))
with open(os.path.join(here, "regression.csv"), "w") as f:
    f.write("x1,x2,x3,x4,y\n")
    for row, v in zip(X, y):
        f.write(",".join(f"{a:.5f}" for a in row) + f",{v:.5f}\n")
