#!/usr/bin/python3
"""PyTorch baseline for examples/fashion-mnist-cnn.yaml's model: training samples/s, 1 thread.

conv 32 3x3 relu, maxpool 2, conv 64 3x3 relu, maxpool 2, flatten, dropout 0.5, dense 128
relu, dense 10, softmax cross-entropy, Adam lr 1e-3, batch 128, on the first --images
Fashion-MNIST training images scaled to [0, 1]; --steps timed steps after 3 warm-up ones.
Compare with `pstrain train examples/fashion-mnist-cnn.yaml --epochs 1` on the same slice
(its metrics.jsonl samples_per_s), interleaved, both with OPENBLAS_NUM_THREADS=1:
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_cnn.py --steps 30
Prints one line: torch_cnn samples_per_s=... steps=... threads=1.
"""
import argparse
import gzip
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(42)
    n = 128 * (args.steps + 3)
    with gzip.open(f"{args.data}/train-images-idx3-ubyte.gz") as f:
        raw = f.read(16 + n * 784)
    x = torch.from_numpy(np.frombuffer(raw, np.uint8, offset=16).astype(np.float32) / 255.0)
    x = x.reshape(n, 1, 28, 28)
    with gzip.open(f"{args.data}/train-labels-idx1-ubyte.gz") as f:
        y = torch.from_numpy(np.frombuffer(f.read(8 + n), np.uint8, offset=8).astype(np.int64))
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5),
                          nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    t0 = None
    for s in range(args.steps + 3):
        if s == 3:
            t0 = time.perf_counter()
        xb, yb = x[s * 128:(s + 1) * 128], y[s * 128:(s + 1) * 128]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    print(f"torch_cnn samples_per_s={128 * args.steps / dt:.1f} steps={args.steps} threads=1 "
          f"loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
