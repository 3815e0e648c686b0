#!/usr/bin/python3
"""check_zeros.py PRUNED FINAL [MIN_FRACTION]: every weight of a 2-D F32 tensor that is 0 in
the pruned model file is still exactly 0 in the fine-tuned one, and fine-tuning moved some
other weight (it trained). Prints "zeros kept: Z of N weights (F%)". MIN_FRACTION: the least
share of zeros expected. Exit 1 with one line on failure."""
import json, struct, sys


def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    data = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == "__metadata__" or v["dtype"] != "F32" or len(v["shape"]) != 2:
            continue
        lo, hi = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((hi - lo) // 4), data[lo:hi])
    return out


a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
least = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
zeros = total = moved = 0
for k, wa in a.items():
    if k.startswith("preprocess."):
        continue
    wb = b.get(k)
    if wb is None or len(wb) != len(wa):
        sys.exit("check_zeros: %s: tensor %s missing or reshaped" % (sys.argv[2], k))
    for i, (x, y) in enumerate(zip(wa, wb)):
        total += 1
        if x == 0.0:
            zeros += 1
            if y != 0.0:
                sys.exit("check_zeros: %s[%d] was pruned but is %g" % (k, i, y))
        elif x != y:
            moved += 1
if not moved:
    sys.exit("check_zeros: no unpruned weight changed: was the model fine-tuned?")
if zeros < least * total:
    sys.exit("check_zeros: only %d of %d weights are zero" % (zeros, total))
print("zeros kept: %d of %d weights (%.1f%%)" % (zeros, total, 100.0 * zeros / total))
