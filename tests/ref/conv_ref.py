#!/usr/bin/python3
"""tests/ref/conv_ref.py -- the image layers against PyTorch on random weights.

Usage: conv_ref.py TEST_CONV   (the test_conv program)

Runs `TEST_CONV --dump FILE`, which writes each case of tests/test_conv.c's dump(): the
input x (N, C, H, W), the layer's random parameters, a random upstream gradient dy, and
pstrain's output y and gradients (dx, dweight, dbias) -- then recomputes each with torch
autograd in float64 and compares to float tolerance:
  conv2d           torch.nn.functional.conv2d (stride, symmetric padding, dilation)
  max_pool2d       F.max_pool2d (floor mode)        avg_pool2d   F.avg_pool2d
  global_avg_pool  x.mean((2, 3))
  batchnorm        F.batch_norm in training (batch statistics, running statistics updated
                   with PyTorch's momentum = 1 - pstrain's) and in evaluation (running
                   statistics), eps as given
Exit 0 on agreement, 1 on a mismatch, 77 (skipped) without torch.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("conv_ref.py: skipped: python3-torch is not installed (apt-get install python3-torch)")
    sys.exit(77)

torch.set_default_dtype(torch.float64)
RTOL, ATOL = 2e-5, 2e-5


def close(what, got, want):
    got = torch.tensor(got, dtype=torch.float64).reshape(-1)
    want = want.detach().reshape(-1)
    if got.shape != want.shape:
        return f"{what}: {tuple(got.shape)} values, torch has {tuple(want.shape)}"
    err = (got - want).abs() - (ATOL + RTOL * want.abs())
    if len(err) and err.max() > 0:
        i = int(err.argmax())
        return f"{what}: element {i}: pstrain {got[i]:.7g}, torch {want[i]:.7g}"
    return None


def run_case(c):
    n, (C, H, W) = c["n"], c["in"]
    x = torch.tensor(c["x"]).reshape(n, C, H, W).requires_grad_()
    a = c["args"]
    params = {}
    checks = []
    t = c["type"]
    if t == "conv2d":
        Fo = c["out"][0]
        k = a["kernel"]
        w = torch.tensor(c["weight"]).reshape(Fo, C, k, k).requires_grad_()
        b = torch.tensor(c["bias"]).requires_grad_()
        params = {"weight": w, "bias": b}
        y = F.conv2d(x, w, b, stride=a["stride"], padding=a["padding"], dilation=a["dilation"])
    elif t == "max_pool2d":
        y = F.max_pool2d(x, a["pool"], a["stride"])
    elif t == "avg_pool2d":
        y = F.avg_pool2d(x, a["pool"], a["stride"])
    elif t == "global_avg_pool":
        y = x.mean((2, 3))
    elif t == "batchnorm":
        g = torch.tensor(c["weight"]).requires_grad_()
        b = torch.tensor(c["bias"]).requires_grad_()
        rm = torch.tensor(c["running_mean"])
        rv = torch.tensor(c["running_var"])
        params = {"weight": g, "bias": b}
        y = F.batch_norm(x, rm, rv, g, b, training=bool(c["training"]),
                         momentum=1.0 - a["momentum"], eps=a["eps"])
        checks.append(("running_mean after", c["running_mean_after"], rm))
        checks.append(("running_var after", c["running_var_after"], rv))
    else:
        return f"unknown type {t}"
    dy = torch.tensor(c["dy"]).reshape(y.shape)
    y.backward(dy)
    checks = [("y", c["y"], y), ("dx", c["dx"], x.grad)] + checks
    for name, p in params.items():
        checks.append(("d" + name, c["d" + name], p.grad))
    for what, got, want in checks:
        bad = close(what, got, want)
        if bad:
            return bad
    return None


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "cases.json")
        subprocess.run([sys.argv[1], "--dump", path], check=True)
        with open(path) as f:
            cases = json.load(f)
    bad = 0
    for i, c in enumerate(cases):
        why = run_case(c)
        mode = "training" if c["training"] else "evaluation"
        label = f"case {i}: {c['type']} {c['args']} in {c['in']} n {c['n']} ({mode})"
        if why:
            print(f"FAIL {label}: {why}")
            bad += 1
        else:
            print(f"ok   {label}")
    print(f"conv_ref.py: {len(cases) - bad} of {len(cases)} cases agree with torch "
          f"{torch.__version__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
