"""tests/ref/reflib.py -- what the PyTorch reference scripts share: torch or a skip (77),
the float tolerance check, and the cases a C test program dumps (`PROG --dump FILE`)."""
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError:
    torch = None

RTOL, ATOL = 2e-5, 2e-5


def need_torch(script):
    """Exits 77 (ctest: skipped) when python3-torch is missing; else float64 by default."""
    if torch is None:
        print(f"{script}: skipped: python3-torch is not installed (apt-get install python3-torch)")
        sys.exit(77)
    torch.set_default_dtype(torch.float64)
    return torch


def close(what, got, want, rtol=RTOL, atol=ATOL):
    """None when pstrain's values GOT (a list) match torch's WANT elementwise within
    atol + rtol * |want|; else a line naming WHAT and the worst element."""
    got = torch.tensor(got, dtype=torch.float64).reshape(-1)
    want = want.detach().reshape(-1)
    if got.shape != want.shape:
        return f"{what}: {tuple(got.shape)} values, torch has {tuple(want.shape)}"
    err = (got - want).abs() - (atol + rtol * want.abs())
    if len(err) and err.max() > 0:
        i = int(err.argmax())
        return f"{what}: element {i}: pstrain {got[i]:.7g}, torch {want[i]:.7g}"
    return None


def dumped_cases(prog):
    """The JSON document that `PROG --dump FILE` writes."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "cases.json")
        subprocess.run([prog, "--dump", path], check=True)
        with open(path) as f:
            return json.load(f)
