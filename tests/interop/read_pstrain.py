#!/usr/bin/python3
"""A pstrain checkpoint read and run with numpy alone, independent of pstrain's code.

usage:
  read_pstrain.py predict CKPT DATA.csv LABEL [--rows N]
      The checkpoint's predictions for the first N rows (default all) of DATA.csv (a CSV
      with a header line; LABEL names the label column, which is skipped), written to
      stdout in the CSV format of `pstrain predict`.
  read_pstrain.py compare A.csv B.csv TOL [--rows N]
      Compares two prediction files: same header, same indices, values within TOL, the
      same predicted class wherever the top two probabilities are more than TOL apart.
      Prints the largest difference; exits 1 when they disagree.

The safetensors layout: an 8-byte little-endian header length N, N bytes of JSON (tensor
name -> dtype, shape, data_offsets; "__metadata__" -> strings), then the raw tensor bytes.
pstrain's metadata: pstrain.model (input_dim, layers, loss) and pstrain.data (task, classes,
scale); the fitted scaler is x' = (x - preprocess.shift) * preprocess.mul.
"""
import csv
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    """Returns (tensors: name -> float64 array, metadata: dict of strings)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name}: dtype {t['dtype']}")
        lo, hi = t["data_offsets"]
        a = np.frombuffer(data[lo:hi], dtype="<f4").reshape(t["shape"])
        tensors[name] = a.astype(np.float64)
    return tensors, meta


ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softmax": lambda z: (lambda e: e / e.sum(axis=1, keepdims=True))(
        np.exp(z - z.max(axis=1, keepdims=True))),
}


def forward(model, tensors, x):
    """Runs the layer list of pstrain.model on x (N, D), float64."""
    h = x
    ndense = 0
    for layer in model["layers"]:
        if layer["type"] == "dense":
            name = layer.get("name") or f"dense_{ndense}"
            w, b = tensors[f"{name}.weight"], tensors[f"{name}.bias"]
            h = h @ w.T + b
            ndense += 1
        h = ACTIVATIONS[layer["activation"]](h)
    return h


def preprocess(data_meta, tensors, x):
    if data_meta["scale"] == "none":
        return x
    return (x - tensors["preprocess.shift"]) * tensors["preprocess.mul"]


def read_features(path, label, rows=None):
    """Features of a CSV with a header line, the label column left out, as float32 values
    (what pstrain reads), returned as float64."""
    with open(path, newline="") as f:
        r = csv.reader(f)
        head = next(r)
        li = head.index(label)
        x = [[float(v) for j, v in enumerate(row) if j != li] for row in r if row]
    if rows is not None:
        x = x[:rows]
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def prediction_rows(model, data_meta, out):
    """Header and rows in the format of `pstrain predict`."""
    if data_meta["task"] == "regress":
        k = out.shape[1]
        head = ["index", "prediction"] if k == 1 else ["index"] + [
            f"prediction_{j}" for j in range(k)]
        return head, [[str(i)] + [repr(float(v)) for v in row] for i, row in enumerate(out)]
    names = data_meta.get("class_names")
    ncls = data_meta["num_classes"]
    if out.shape[1] == 1:  # one sigmoid unit: p(class 1)
        out = np.concatenate([1.0 - out, out], axis=1)
    label = (lambda c: names[c] if names and names[c] is not None else str(c))
    head = ["index", "predicted"] + [f"p_{label(c)}" for c in range(ncls)]
    pred = out.argmax(axis=1)
    return head, [[str(i), label(int(p))] + [repr(float(v)) for v in row]
                  for i, (p, row) in enumerate(zip(pred, out))]


def predict(ckpt, data, label, rows):
    tensors, meta = read_safetensors(ckpt)
    model = json.loads(meta["pstrain.model"])
    data_meta = json.loads(meta["pstrain.data"])
    x = read_features(data, label, rows)
    assert x.shape[1] == model["input_dim"], (x.shape, model["input_dim"])
    out = forward(model, tensors, preprocess(data_meta, tensors, x))
    head, body = prediction_rows(model, data_meta, out)
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(head)
    w.writerows(body)


def compare(a_path, b_path, tol, rows):
    def load(p):
        with open(p, newline="") as f:
            r = list(csv.reader(f))
        return r[0], r[1:] if rows is None else r[1:1 + rows]

    (ha, ra), (hb, rb) = load(a_path), load(b_path)
    if ha != hb:
        print(f"headers differ: {ha} vs {hb}")
        return 1
    if len(ra) != len(rb):
        print(f"{len(ra)} rows vs {len(rb)}")
        return 1
    classify = len(ha) > 1 and ha[1] == "predicted"
    first = 2 if classify else 1
    worst = 0.0
    for x, y in zip(ra, rb):
        if x[0] != y[0]:
            print(f"index {x[0]} vs {y[0]}")
            return 1
        va = np.array([float(v) for v in x[first:]])
        vb = np.array([float(v) for v in y[first:]])
        worst = max(worst, float(np.max(np.abs(va - vb))))
        top = np.sort(va)[-2:]
        if classify and x[1] != y[1] and top[1] - top[0] > tol:
            print(f"row {x[0]}: predicted {x[1]} vs {y[1]}")
            return 1
    print(f"max abs difference {worst:.3g} over {len(ra)} rows")
    return 0 if worst <= tol else 1


def main(argv):
    rows = None
    if "--rows" in argv:
        i = argv.index("--rows")
        rows = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if len(argv) == 5 and argv[1] == "predict":
        predict(argv[2], argv[3], argv[4], rows)
        return 0
    if len(argv) == 5 and argv[1] == "compare":
        return compare(argv[2], argv[3], float(argv[4]), rows)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
