#!/usr/bin/env python3
"""An unmodified torch.nn.Module trained through pstrain servers (python/pstrain, ctypes over
libpstrain.so) equals plain PyTorch training: one worker, bsp, two servers applying plain
SGD -- the same weights to float tolerance (bit-identical expected: the servers' SGD is
w - lr * g, as torch.optim.SGD's).

    test_torch_bsp.py PSTRAIN_BINARY LIBPSTRAIN_SO      exit 0 ok, 1 failed, 77 no torch
"""
import copy
import os
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import torch
except ImportError:
    print("skipped: python3-torch or python3-numpy missing")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import pstrain  # noqa: E402
import pstrain.torch  # noqa: E402

PSTRAIN, LIB = sys.argv[1], sys.argv[2]
LR, STEPS, BATCH = 0.1, 40, 16


def start_job(tmp, job):
    """Coordinator and two servers, by hand; returns (endpoint, processes)."""
    r, wfd = os.pipe()
    logs = open(os.path.join(tmp, "job.log"), "w")
    coord = subprocess.Popen([PSTRAIN, "coordinator", job, "--bind", "tcp://127.0.0.1:0",
                              "--ready-fd", str(wfd)], pass_fds=(wfd,), stderr=logs)
    os.close(wfd)
    ep = os.read(r, 256).decode().strip()
    os.close(r)
    servers = [subprocess.Popen([PSTRAIN, "server", job, "--rank", str(s), "--coordinator", ep],
                                stderr=logs) for s in range(2)]
    return ep, [coord] + servers


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = torch.randn(STEPS * BATCH, 20)
    y = torch.randint(0, 3, (STEPS * BATCH,))
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 3))
    ref = copy.deepcopy(model)
    loss_fn = torch.nn.CrossEntropyLoss()

    ref_opt = torch.optim.SGD(ref.parameters(), lr=LR)
    for i in range(STEPS):
        xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
        ref_opt.zero_grad()
        loss_fn(ref(xb), yb).backward()
        ref_opt.step()

    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        with open(job, "w") as f:
            f.write("name: torch-bsp\nmodel: {external: true}\n"
                    "optimizer: {name: sgd, lr: %g}\n"
                    "cluster: {servers: 2, workers: 1, consistency: bsp, timeout_s: 20}\n"
                    "output: {dir: %s}\n" % (LR, tmp))
        ep, procs = start_job(tmp, job)
        try:
            w = pstrain.Worker(job, rank=0, coordinator=ep, steps=STEPS, quiet=True,
                               library=LIB)
            assert w.consistency == ("bsp", 0), w.consistency
            opt = pstrain.torch.DistributedOptimizer(model, w)
            # the parameters now live in the worker's buffer (zero-copy)
            first = next(model.parameters())
            assert first.data_ptr() == w.weights("0.weight").ctypes.data
            for i in range(STEPS):
                xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                w.progress(1, i, loss.item())
                opt.step()
            assert w.clock == STEPS
            opt.finish()
            # Bad input from Python: an unknown name is a PstError, not a crash.
            try:
                w.get("nope")
                raise AssertionError("no error for an unknown tensor")
            except pstrain.PstError as e:
                assert e.status == "arg" and "no tensor 'nope'" in str(e), str(e)
            for p in procs:
                if p.wait(timeout=60):
                    raise AssertionError("a job process exited %d" % p.returncode)
            diff = max((a - b).abs().max().item()
                       for a, b in zip(model.parameters(), ref.parameters()))
            print("largest difference to plain PyTorch SGD after %d steps: %g" % (STEPS, diff))
            w.close()
            if diff > 1e-6:
                return 1
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
