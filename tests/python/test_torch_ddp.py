#!/usr/bin/env python3
"""PyTorch through pstrain equals torch DDP in accuracy: examples/library/torch_fmnist.py's
MLP, 2 workers, bsp, momentum SGD on the server, trained once through `pstrain local`
(a coordinator, one server, the script as both library workers) and once with torch DDP
(gloo, 2 processes, torch.optim.SGD with the same momentum), on the same 3000 Fashion-MNIST
images per worker in the same batch order for 2 epochs. Both average the two workers'
gradients each step, so they differ only by float rounding; the test allows 0.5 pt.

    test_torch_ddp.py PSTRAIN_BINARY LIBPSTRAIN_SO   exit 0 ok, 1 failed, 77 skipped
    (no torch, no torch.distributed with gloo, or no Fashion-MNIST)
"""
import os
import re
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.distributed as dist
    import yaml  # noqa: F401 (the example's --ddp reads the job with it)
except ImportError:
    print("skipped: python3-torch or python3-yaml missing")
    sys.exit(77)
if not (dist.is_available() and dist.is_gloo_available()):
    print("skipped: torch.distributed without gloo")
    sys.exit(77)
DATA = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
if not os.path.exists(DATA):
    print("skipped: %s missing (dataset-fashion-mnist)" % DATA)
    sys.exit(77)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SCRIPT = os.path.join(ROOT, "examples", "library", "torch_fmnist.py")
PSTRAIN, LIB = sys.argv[1], sys.argv[2]
ARGS = ["--model", "mlp", "--limit", "3000", "--epochs", "2"]
TOLERANCE = 0.005


def accuracy(out, what):
    m = re.search(r"^test accuracy ([0-9.]+)$", out, re.M)
    if not m:
        sys.stderr.write(out)
        raise SystemExit("%s printed no test accuracy" % what)
    return float(m.group(1))


def main():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PSTRAIN_LIBRARY=LIB)
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        with open(os.path.join(ROOT, "examples", "library", "torch-job.yaml")) as f:
            text = f.read()
        with open(job, "w") as f:
            f.write(text.replace("dir: runs/torch-fmnist", "dir: " + os.path.join(tmp, "run")))
        p = subprocess.run([PSTRAIN, "local", job, "--", sys.executable, SCRIPT, job] + ARGS,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=150)
        if p.returncode:
            sys.stderr.write(p.stdout)
            raise SystemExit("pstrain local exited %d" % p.returncode)
        a_pst = accuracy(p.stdout, "pstrain")
        init = os.path.join(tmp, "ddp-init")
        ddp = [subprocess.Popen([sys.executable, SCRIPT, job, "--ddp", init] + ARGS,
                                env=dict(env, PSTRAIN_RANK=str(r)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for r in range(2)]
        outs = [q.communicate(timeout=150)[0] for q in ddp]
        for q, out in zip(ddp, outs):
            if q.returncode:
                sys.stderr.write(out)
                raise SystemExit("a DDP process exited %d" % q.returncode)
        a_ddp = accuracy(outs[0], "DDP rank 0")
    print("test accuracy: pstrain %.4f, torch DDP %.4f, difference %.2f pt (allowed %.1f)"
          % (a_pst, a_ddp, 100 * abs(a_pst - a_ddp), 100 * TOLERANCE))
    return 0 if abs(a_pst - a_ddp) <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
