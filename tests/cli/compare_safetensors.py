#!/usr/bin/python3
"""Compares two safetensors files tensor by tensor.

usage: compare_safetensors.py A B TOL
Prints the largest absolute difference; exits 1 when it exceeds TOL, or when the files do
not hold the same tensors with the same shapes. A deliberately small reader of the format
(8-byte little-endian header length, JSON header, raw data), independent of pstrain's code.
"""
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (path, name, t["dtype"])
        lo, hi = t["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], dtype="<f4").reshape(t["shape"])
    return out


a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
if a.keys() != b.keys():
    print(f"different tensors: {sorted(a)} vs {sorted(b)}")
    sys.exit(1)
worst = 0.0
for k in a:
    if a[k].shape != b[k].shape:
        print(f"{k}: shape {a[k].shape} vs {b[k].shape}")
        sys.exit(1)
    worst = max(worst, float(np.max(np.abs(a[k].astype(np.float64) - b[k]))))
print(f"max abs difference {worst:.3g} over {len(a)} tensors")
sys.exit(0 if worst <= tol else 1)
