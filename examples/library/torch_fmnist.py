#!/usr/bin/env python3
"""Unmodified PyTorch models (the Fashion-MNIST MLP, a small CNN) trained through pstrain
servers, one process per worker, the coordinator and servers pstrain's own:

    pstrain local examples/library/torch-job.yaml -- \\
        env PYTHONPATH=python PSTRAIN_LIBRARY=build/libpstrain.so \\
        /usr/bin/python3 examples/library/torch_fmnist.py examples/library/torch-job.yaml \\
        --model mlp --epochs 2

`pstrain local` starts the coordinator and the job's servers, then the program after "--"
once per worker with PSTRAIN_RANK and PSTRAIN_COORDINATOR in its environment (by hand:
`pstrain coordinator` and `pstrain server`, and this script with those two variables).

Each worker trains on its share of the 60k training images (rank r takes every W-th
sample from r, --limit N keeps the first N of them); rank 0 evaluates the final weights on
the 10k test images and prints "test accuracy A". Models (build_model):
  mlp  784-256-128-10, ReLU                                    (235,146 parameters)
  cnn  conv 3x3 1->8, ReLU, maxpool 2, conv 3x3 8->16, ReLU, maxpool 2,
       linear 784->10                                           (9,098 parameters)

The baseline, the same training with torch DDP (gloo) and the job's optimizer (sgd or
momentum, applied by torch.optim.SGD, the servers' formula) -- W processes that meet
through a file:

    for r in 0 1; do PSTRAIN_RANK=$r /usr/bin/python3 examples/library/torch_fmnist.py \
        examples/library/torch-job.yaml --ddp /tmp/ddp-init & done; wait
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import pstrain  # noqa: E402
import pstrain.torch  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def idx(name):
    """An IDX file of the data set as a numpy array (uint8, its dims)."""
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split, model):
    """(x, y) of split "train" or "t10k": x float32 in [0, 1], (N, 784) for the MLP,
    (N, 1, 28, 28) for the CNN; y int64 (N)."""
    x = idx(split + "-images-idx3-ubyte.gz").astype(np.float32) / 255
    y = idx(split + "-labels-idx1-ubyte.gz").astype(np.int64)
    shape = (-1, 1, 28, 28) if model == "cnn" else (-1, 784)
    return torch.from_numpy(x.reshape(shape)), torch.from_numpy(y)


def build_model(model, seed=1):
    torch.manual_seed(seed)
    if model == "cnn":
        nn = torch.nn
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 10))


def shard(x, y, rank, workers, limit):
    """Rank r's samples: every W-th from r, the first limit of them (0: all)."""
    xs, ys = x[rank::workers], y[rank::workers]
    return (xs[:limit], ys[:limit]) if limit else (xs, ys)


def train(model, opt, xs, ys, epochs, batch, rank, on_step=None):
    """Plain minibatch training; opt is a torch optimizer or pstrain's DistributedOptimizer.
    The order of the batches is rank's own, the same in every run. Returns the seconds."""
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(100 + rank)
    steps = (len(xs) + batch - 1) // batch
    t0 = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(len(xs), generator=g)
        for s in range(steps):
            i = perm[s * batch:(s + 1) * batch]
            opt.zero_grad()
            loss = loss_fn(model(xs[i]), ys[i])
            loss.backward()
            if on_step:
                on_step(epoch, s, loss.item())
            opt.step()
    return time.perf_counter() - t0


def report(rank, epochs, n, secs):
    """The line bench/run_torch_lib.sh reads."""
    print("worker %d: %d epochs of %d samples in %.3f s, %.0f samples/s"
          % (rank, epochs, n, secs, epochs * n / secs), flush=True)


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def job_settings(path):
    """(workers, optimizer kwargs for torch.optim.SGD) from the job file, for --ddp."""
    import yaml
    with open(path) as f:
        job = yaml.safe_load(f)
    o = job.get("optimizer", {})
    if o.get("name", "sgd") not in ("sgd", "momentum"):
        sys.exit("torch_fmnist.py: --ddp knows optimizers sgd and momentum, not %s" % o["name"])
    kw = {"lr": float(o.get("lr", 0.01))}
    if o.get("name") == "momentum":
        kw["momentum"] = float(o.get("momentum", 0.9))
    return int(job.get("cluster", {}).get("workers", 2)), kw


def main_ddp(a, model, x, y):
    """The baseline: torch DDP over gloo, W processes (rank from PSTRAIN_RANK)."""
    import torch.distributed as dist
    workers, kw = job_settings(a.job)
    rank = int(os.environ["PSTRAIN_RANK"])
    dist.init_process_group("gloo", init_method="file://" + os.path.abspath(a.ddp),
                            rank=rank, world_size=workers)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    xs, ys = shard(x, y, rank, workers, a.limit)
    secs = train(ddp, torch.optim.SGD(ddp.parameters(), **kw), xs, ys, a.epochs, a.batch, rank)
    report(rank, a.epochs, len(xs), secs)
    if rank == 0:
        xt, yt = load("t10k", a.model)
        print("test accuracy %.4f" % accuracy(model, xt, yt), flush=True)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("job")
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="samples per worker, 0: all")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--ddp", metavar="FILE", help="train with torch DDP (gloo) instead, "
                    "the processes meeting through FILE (see above)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    x, y = load("train", a.model)
    model = build_model(a.model)
    if a.ddp:
        return main_ddp(a, model, x, y)
    probe = pstrain.Worker(a.job, quiet=True)  # rank and worker count from the job and env
    rank, workers = probe.rank, probe.num_workers
    probe.close()
    xs, ys = shard(x, y, rank, workers, a.limit)
    steps = (len(xs) + a.batch - 1) // a.batch
    w = pstrain.Worker(a.job, steps=steps * a.epochs)
    opt = pstrain.torch.DistributedOptimizer(model, w)
    secs = train(model, opt, xs, ys, a.epochs, a.batch, rank,
                lambda e, s, l: w.progress(e + 1, s, l))
    report(rank, a.epochs, len(xs), secs)
    opt.finish()
    if rank == 0:
        xt, yt = load("t10k", a.model)
        print("test accuracy %.4f" % accuracy(model, xt, yt), flush=True)
    w.close()


if __name__ == "__main__":
    main()
