#!/usr/bin/python3
"""tests/cli/fmnist_slice.py SRC NTRAIN NTEST -- the first NTRAIN training and NTEST test
images of the Fashion-MNIST IDX files in SRC, with their labels, as train-images.gz,
train-labels.gz, t10k-images.gz and t10k-labels.gz in the current folder (IDX, gzip)."""
import gzip
import struct
import sys

src, counts = sys.argv[1], {"train": int(sys.argv[2]), "t10k": int(sys.argv[3])}
for part, n in counts.items():
    with gzip.open(f"{src}/{part}-images-idx3-ubyte.gz") as f:
        magic, _, r, c = struct.unpack(">IIII", f.read(16))
        pix = f.read(n * r * c)
    with gzip.open(f"{part}-images.gz", "wb") as f:
        f.write(struct.pack(">IIII", magic, n, r, c) + pix)
    with gzip.open(f"{src}/{part}-labels-idx1-ubyte.gz") as f:
        magic, _ = struct.unpack(">II", f.read(8))
        lab = f.read(n)
    with gzip.open(f"{part}-labels.gz", "wb") as f:
        f.write(struct.pack(">II", magic, n) + lab)
