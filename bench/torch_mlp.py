#!/usr/bin/python3
"""PyTorch baseline for bench/bench_mlp.c: the same model, data, batch and optimizer.

MLP 784-256-128-10 (ReLU), softmax cross-entropy, batch 128, plain SGD lr 0.01, one
shuffled epoch over Fashion-MNIST's 60000 training images scaled to [0, 1] (x / 255, what
pstrain's minmax scaler does with the IDX range 0..255), initialised as pstrain does
(He-normal before a ReLU, Glorot-uniform before the softmax, zero biases). Each timed
epoch includes the shuffle and gathering the shuffled rows, as pstrain's does, and keeps
a running loss (pstrain reports the epoch's mean loss too).

Two loops are timed, each on a fresh model: "none" clears gradients with
zero_grad(set_to_none=True) (PyTorch's performance-guide advice and the default from 2.0
on), "zero" with zero_grad(), the 1.13 default, which zero-fills the gradients and then
accumulates into them. --variants sets which ones and in what order.

Run with Debian's interpreter and one thread everywhere:
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_mlp.py --rounds 1
torch.set_num_threads(1) limits torch's own pool, but Debian's torch calls OpenBLAS, whose
pthreads build starts its threads when loaded unless OPENBLAS_NUM_THREADS=1.

Rates are samples per wall-clock second and per CPU second of the process (*_cpu_sps).
Prints "round" and "memory" lines of key=value figures for bench/run_mlp.sh.
--smoke (ctest -L bench): the first 2048 training images and 5 warm-up batches, as
bench_mlp --smoke, to check that the baseline runs.
"""
import argparse
import gzip
import os
import resource
import sys
import time

import numpy as np
import torch

BATCH = 128


def load_idx(images, labels):
    with gzip.open(images, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    rows = int.from_bytes(raw[8:12], "big")
    cols = int.from_bytes(raw[12:16], "big")
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows * cols)
    x = x.astype(np.float32) / np.float32(255.0)
    with gzip.open(labels, "rb") as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
    if y.shape[0] != n:
        sys.exit(f"torch_mlp: {labels}: {y.shape[0]} labels for {n} images")
    return torch.from_numpy(x), torch.from_numpy(y)


def blas_libs():
    """The BLAS libraries this process mapped (Debian's torch reaches OpenBLAS through the
    libblas.so.3 alternative)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "blas" in os.path.basename(path):
                libs.add(path)
    return ",".join(sorted(libs)) or "none"


def make_model():
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10))
    with torch.no_grad():
        for i, layer in enumerate((model[0], model[2], model[4])):
            if i < 2:  # He et al. 2015: N(0, 2 / fan_in)
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            else:      # Glorot & Bengio 2010: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
                torch.nn.init.xavier_uniform_(layer.weight)
            layer.bias.zero_()
    return model


def train_epoch(model, opt, lossf, x, y, gen, set_to_none):
    n = x.shape[0]
    perm = torch.randperm(n, generator=gen)
    loss_sum = 0.0
    for lo in range(0, n, BATCH):
        idx = perm[lo:lo + BATCH]
        xb = x.index_select(0, idx)
        yb = y.index_select(0, idx)
        opt.zero_grad(set_to_none=set_to_none)
        loss = lossf(model(xb), yb)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * xb.shape[0]
    return loss_sum / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--variants", default="none,zero",
                    help="comma-separated gradient clearing loops to time, in this order: "
                         "none = zero_grad(set_to_none=True), zero = zero_grad()")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes: the first 2048 training images, 5 warm-up batches")
    args = ap.parse_args()
    variants = args.variants.split(",")
    if not variants or any(v not in ("none", "zero") for v in variants):
        ap.error("--variants: expected a list of none and zero")

    torch.set_num_threads(1)
    d = args.data
    x, y = load_idx(f"{d}/train-images-idx3-ubyte.gz", f"{d}/train-labels-idx1-ubyte.gz")
    xt, yt = load_idx(f"{d}/t10k-images-idx3-ubyte.gz", f"{d}/t10k-labels-idx1-ubyte.gz")
    if args.smoke:
        x, y = x[:16 * BATCH], y[:16 * BATCH]
    warm = (5 if args.smoke else 50) * BATCH
    n = x.shape[0]
    lossf = torch.nn.CrossEntropyLoss()
    runs = {}
    for v in variants:
        torch.manual_seed(42)
        model = make_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        gen = torch.Generator().manual_seed(42)
        # Warm-up, untimed, as bench_mlp does: 50 batches (5 with --smoke).
        train_epoch(model, opt, lossf, x[:warm], y[:warm], gen, v == "none")
        runs[v] = (model, opt, gen)

    print(f"info torch_version={torch.__version__} torch_threads={torch.get_num_threads()} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')} "
          f"blas={blas_libs()}", flush=True)
    for r in range(1, args.rounds + 1):
        for v in variants:
            model, opt, gen = runs[v]
            c0, t0 = time.process_time(), time.perf_counter()
            loss = train_epoch(model, opt, lossf, x, y, gen, v == "none")
            secs = time.perf_counter() - t0
            cpu = time.process_time() - c0
            with torch.no_grad():
                acc = (model(xt).argmax(1) == yt).double().mean().item()
            key = "torch" if v == "none" else "torch_zero"
            print(f"round {r} {key}_s={secs:.4f} {key}_sps={n / secs:.0f} "
                  f"{key}_cpu_sps={n / cpu:.0f} "
                  f"{key}_train_loss={loss:.4f} {key}_test_acc={acc:.4f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    data_mib = (x.numel() * 4 + y.numel() * 8 + xt.numel() * 4 + yt.numel() * 8) / 2**20
    print(f"memory peak_rss_mib={peak:.1f} dataset_mib={data_mib:.1f}")


if __name__ == "__main__":
    main()
