#!/usr/bin/python3
"""Writes a pstrain checkpoint from numpy, as weights trained elsewhere would arrive.

usage: write_safetensors.py OUT.safetensors DATA.csv LABEL [--names A,B,...] [--seed S]
                            [--no-crc] [--nan]

The model: input D (the features of DATA.csv, a CSV with a header line and the label
column LABEL) -> dense 8 "enc" (linear) -> relu as an activation layer -> dense 6 tanh ->
dense K softmax, with seeded random weights, standardized inputs (mean and std of DATA) and
K classes (--names gives their names, else K = 2 unnamed). The file carries pstrain's
metadata (pstrain.model, pstrain.data) and, unless --no-crc, the CRC-32 of every tensor and
of the header, as documented in pstrain's ckpt/ckpt.h. --nan puts a NaN into one weight
(pstrain must refuse the file).

The model's own predictions for DATA, computed here from the weights in memory, go to
stdout in the CSV format of `pstrain predict`, for read_pstrain.py compare.
"""
import csv
import json
import os
import struct
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from read_pstrain import forward, prediction_rows, read_features  # noqa: E402


def safetensors_bytes(tensors, meta, with_crc):
    """tensors: list of (name, float32 array) in file order; meta: dict of strings."""
    meta = dict(meta)
    if with_crc:
        meta["crc32.__header__"] = "0000000000"
        for name, a in tensors:
            meta[f"crc32.{name}"] = str(zlib.crc32(a.astype("<f4").tobytes()))
    header = {"__metadata__": meta}
    off = 0
    for name, a in tensors:
        n = a.size * 4
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    head = struct.pack("<Q", len(text)) + text
    if with_crc:
        # The header checksum covers the length and the header with its own digits zeroed.
        key = b'"crc32.__header__":"'
        at = head.index(key) + len(key)
        crc = zlib.crc32(head)
        head = head[:at] + b"%010d" % crc + head[at + 10:]
    return head + b"".join(a.astype("<f4").tobytes() for _, a in tensors)


def main(argv):
    args = argv[1:]
    opts = {"--names": None, "--seed": "1"}
    flags = set()
    pos = []
    i = 0
    while i < len(args):
        if args[i] in opts:
            opts[args[i]] = args[i + 1]
            i += 2
        elif args[i] in ("--no-crc", "--nan"):
            flags.add(args[i])
            i += 1
        else:
            pos.append(args[i])
            i += 1
    if len(pos) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, data, label = pos
    names = opts["--names"].split(",") if opts["--names"] else None
    k = len(names) if names else 2
    x = read_features(data, label)
    d = x.shape[1]
    rng = np.random.default_rng(int(opts["--seed"]))

    model = {"input_dim": d,
             "layers": [{"type": "dense", "units": 8, "activation": "linear", "name": "enc"},
                        {"type": "activation", "activation": "relu", "name": None},
                        {"type": "dense", "units": 6, "activation": "tanh", "name": None},
                        {"type": "dense", "units": k, "activation": "softmax", "name": None}],
             "loss": "categorical_crossentropy"}
    data_meta = {"task": "classify", "num_classes": k, "class_names": names,
                 "scale": "standardize"}
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    w = [("enc.weight", f32(rng.normal(0, 0.8, (8, d)))), ("enc.bias", f32(rng.normal(0, 0.1, 8))),
         ("dense_1.weight", f32(rng.normal(0, 0.6, (6, 8)))),
         ("dense_1.bias", f32(rng.normal(0, 0.1, 6))),
         ("dense_2.weight", f32(rng.normal(0, 1.0, (k, 6)))),
         ("dense_2.bias", f32(rng.normal(0, 0.1, k)))]
    std = x.std(axis=0)
    std[std == 0] = 1.0
    w += [("preprocess.shift", f32(x.mean(axis=0))), ("preprocess.mul", f32(1.0 / std))]
    if "--nan" in flags:
        w[2][1][1, 3] = np.nan
    meta = {"format": "pt", "producer": "write_safetensors.py",
            "pstrain.version": "1", "pstrain.model": json.dumps(model),
            "pstrain.data": json.dumps(data_meta)}
    with open(out, "wb") as f:
        f.write(safetensors_bytes(w, meta, "--no-crc" not in flags))

    tensors = {name: a.astype(np.float64) for name, a in w}
    xs = (x - tensors["preprocess.shift"]) * tensors["preprocess.mul"]
    head, body = prediction_rows(model, data_meta, forward(model, tensors, xs))
    wr = csv.writer(sys.stdout, lineterminator="\n")
    wr.writerow(head)
    wr.writerows(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
