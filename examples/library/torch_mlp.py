#!/usr/bin/env python3
"""An unmodified PyTorch MLP trained on Fashion-MNIST through pstrain servers.

One process per worker; the coordinator and servers are pstrain's own:

    pstrain coordinator examples/library/torch-job.yaml --bind tcp://127.0.0.1:7070 &
    pstrain server examples/library/torch-job.yaml --rank 0 --coordinator tcp://127.0.0.1:7070 &
    for r in 0 1; do
      PSTRAIN_RANK=$r PSTRAIN_COORDINATOR=tcp://127.0.0.1:7070 PYTHONPATH=python \\
        PSTRAIN_LIBRARY=build/libpstrain.so /usr/bin/python3 examples/library/torch_mlp.py \\
        examples/library/torch-job.yaml &
    done; wait

Each worker trains on its share of the 60k training images (rank r takes every W-th
sample from r); rank 0 evaluates the final weights on the 10k test images.
"""
import gzip
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import pstrain  # noqa: E402
import pstrain.torch  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    job = sys.argv[1]
    epochs = int(os.environ.get("EPOCHS", "2"))
    limit = int(os.environ.get("LIMIT", "0"))  # samples per worker, 0 = all
    batch = 128
    torch.manual_seed(1)
    torch.set_num_threads(1)
    x = torch.from_numpy(idx("train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    y = torch.from_numpy(idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    probe = pstrain.Worker(job, quiet=True)  # rank and worker count from the job and env
    rank, W = probe.rank, probe.num_workers
    probe.close()
    xs, ys = x[rank::W], y[rank::W]
    if limit:
        xs, ys = xs[:limit], ys[:limit]
    steps_per_epoch = (len(xs) + batch - 1) // batch
    w = pstrain.Worker(job, steps=steps_per_epoch * epochs)
    opt = pstrain.torch.DistributedOptimizer(model, w)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(100 + rank)
    for epoch in range(epochs):
        perm = torch.randperm(len(xs), generator=g)
        for s in range(steps_per_epoch):
            i = perm[s * batch:(s + 1) * batch]
            opt.zero_grad()
            loss = loss_fn(model(xs[i]), ys[i])
            loss.backward()
            w.progress(epoch + 1, s, loss.item())
            opt.step()
        print("worker %d epoch %d loss %.4f" % (rank, epoch + 1, loss.item()), flush=True)
    opt.finish()
    if rank == 0:
        xt = torch.from_numpy(idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
        yt = torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
        with torch.no_grad():
            acc = (model(xt).argmax(1) == yt).float().mean().item()
        print("test accuracy %.4f" % acc, flush=True)
    w.close()


if __name__ == "__main__":
    main()
