#!/usr/bin/python3
"""numpy reads a sparse table file of ckpt/sparse.c, parsing the safetensors header by hand.

Usage: check_sparse_numpy.py TEST_SPTABLE -- runs `TEST_SPTABLE --write FILE` (table "emb",
dim 4, the keys below, row j = (j, j + 0.25, j + 0.5, j + 0.75)) and checks what numpy
sees. Exit 77 (skipped) without numpy."""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("numpy missing: skipped")
    sys.exit(77)

KEYS = [3, 17, 1099511627777, 9223372036854775813, 18446744073709551615]
DTYPES = {"F32": "<f4", "U64": "<u8", "U32": "<u4", "U8": "u1"}


def load(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__")
    data = buf[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(data[b:end], dtype=DTYPES[e["dtype"]])
        out[name] = (e["dtype"], a.reshape(e["shape"]))
    return meta, out


def main():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sparse.safetensors")
        subprocess.run([sys.argv[1], "--write", path], check=True)
        meta, t = load(path)
    assert t["emb.keys"][0] == "U64", t["emb.keys"][0]
    keys = t["emb.keys"][1]
    assert keys.dtype == np.uint64 and keys.shape == (5,)
    assert [int(k) for k in keys] == KEYS, keys
    dt, rows = t["emb.rows"]
    assert dt == "F32" and rows.shape == (5, 4), rows.shape
    want = np.arange(5, dtype=np.float32)[:, None] + 0.25 * np.arange(4, dtype=np.float32)
    assert np.array_equal(rows, want), rows
    assert t["emb.touched"][0] == "U32" and list(t["emb.touched"][1]) == [0] * 5
    assert "emb.opt.m" not in t  # sgd keeps no state
    assert meta["sparse.emb.dim"] == "4" and meta["sparse.emb.optimizer"] == "sgd"
    assert meta["sparse.emb.step"] == "1" and meta["sparse.emb.rows"] == "5"
    print("numpy reads %d keys (largest %d) and rows %s" % (len(keys), int(keys[-1]), rows.shape))


main()
