#!/usr/bin/python3
"""bench/torch_embbag.py -- the PyTorch side of bench/run_embbag.sh, and its data.

  torch_embbag.py --write-data DIR [--rows N] [--ids-per-row L] [--id-bits B] [--seed S]
      writes DIR/train.svm (libsvm, what pstrain reads) and DIR/train.npz (the same rows as
      CSR arrays, what the PyTorch loop reads), both from one set of arrays:
        row lengths  uniform in [L/2, 3L/2] (mean L), then duplicates within a row dropped
        ids          Zipf-like over 2^B ids: rank = floor((2^B)^x) - 1, x uniform in [0, 1)
                     (density ~ 1/(rank + 1), as bench/bench_sptable.c draws keys), then
                     id = rank * 0x9E3779B1 mod 2^B (a bijection: hot ids are spread out)
        values       k / 1000, k uniform in [100, 1000] (exact in the text, so both sides
                     read the same float)
        labels       1 when sum_e v_e w[id_e] / sqrt(len) + noise > 0, w ~ N(0, 1) per id:
                     a learnable task, so the two losses can be compared
  torch_embbag.py --data DIR [--epochs E] [--batch B] [--dim D] [--lr LR] [--seed S]
      trains nn.EmbeddingBag(2^B, D, mode="sum", sparse=True) with per_sample_weights ->
      nn.Linear(D, 1) -> sigmoid, binary cross-entropy (BCEWithLogitsLoss), batch B, rows
      shuffled every epoch; torch.optim.SparseAdam on the table and Adam on the head (lr
      LR, betas 0.9/0.999, eps 1e-8 on both, as the pstrain job). The table's rows start
      uniform in (-0.01, 0.01), pstrain's default. Every step gathers its batch's CSR rows
      (ids, weights, offsets) from the shuffled order, as pstrain's step does, inside the
      timed loop.

Prints "info ..." and, per epoch, "epoch E samples=N seconds=S cpu_seconds=C loss=L"
(seconds: wall time of the epoch's loop, cpu: this thread's). Run it with
OPENBLAS_NUM_THREADS=1 (run_embbag.sh does): torch.set_num_threads(1) alone does not stop
the threads of Debian's OpenBLAS (/work/shared/DESIGN-NOTES.md).
"""
import argparse
import os
import sys
import time

import numpy as np


def write_data(a):
    os.makedirs(a.write_data, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    n, L, bits = a.rows, a.ids_per_row, a.id_bits
    lo, hi = max(1, L // 2), max(1, L + L // 2)
    lens = rng.integers(lo, hi + 1, size=n)
    nnz = int(lens.sum())
    x = rng.random(nnz)
    rank = np.floor(np.exp(x * bits * np.log(2.0))).astype(np.int64) - 1
    ids = (rank * 0x9E3779B1) & ((1 << bits) - 1)
    row = np.repeat(np.arange(n, dtype=np.int64), lens)
    # Drop duplicates within a row (sorted by id within the row, as libsvm rows are).
    key = np.unique(row << bits | ids)
    row, ids = key >> bits, key & ((1 << bits) - 1)
    lens = np.bincount(row, minlength=n)
    assert (lens > 0).all()
    row_ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    k = rng.integers(100, 1001, size=len(ids))
    vals = (k / 1000.0).astype(np.float32)
    w = rng.standard_normal(1 << bits).astype(np.float32)
    score = np.add.reduceat(vals * w[ids], row_ptr[:-1]) / np.sqrt(lens)
    y = (score + 0.3 * rng.standard_normal(n) > 0).astype(np.int8)
    np.savez(os.path.join(a.write_data, "train.npz"), row_ptr=row_ptr, ids=ids, vals=vals, y=y,
             id_bits=np.int64(bits))
    ktxt = np.array(["%.3f" % (i / 1000.0) for i in range(1001)])
    with open(os.path.join(a.write_data, "train.svm"), "w") as f:
        for i in range(n):
            s, e = row_ptr[i], row_ptr[i + 1]
            f.write("%d %s\n" % (y[i], " ".join(map("%d:%s".__mod__,
                                                    zip(ids[s:e].tolist(), ktxt[k[s:e]])))))
    print("wrote %s: rows %d entries %d (%.1f per row) distinct ids %d of 2^%d, positives %.3f"
          % (a.write_data, n, len(ids), len(ids) / n, len(np.unique(ids)), bits, y.mean()))
    return 0


def train(a):
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    z = np.load(os.path.join(a.data, "train.npz"))
    row_ptr = torch.from_numpy(z["row_ptr"])
    ids = torch.from_numpy(z["ids"])
    vals = torch.from_numpy(z["vals"])
    y = torch.from_numpy(z["y"].astype(np.float32))
    bits = int(z["id_bits"])
    n = len(y)
    lens = row_ptr[1:] - row_ptr[:-1]
    print("info torch_version=%s threads=%d openblas_threads=%s rows=%d entries=%d table=2^%d"
          % (torch.__version__, torch.get_num_threads(), os.environ.get("OPENBLAS_NUM_THREADS",
                                                                          "unset"),
             n, len(ids), bits))
    emb = nn.EmbeddingBag(1 << bits, a.dim, mode="sum", sparse=True)
    with torch.no_grad():
        emb.weight.uniform_(-0.01, 0.01)
    head = nn.Linear(a.dim, 1)
    opt_s = torch.optim.SparseAdam(list(emb.parameters()), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    opt_d = torch.optim.Adam(head.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    lossf = nn.BCEWithLogitsLoss()
    g = torch.Generator().manual_seed(a.seed)
    for epoch in range(1, a.epochs + 1):
        t0, c0 = time.perf_counter(), time.thread_time()
        perm = torch.randperm(n, generator=g)
        loss_sum = 0.0
        for lo in range(0, n, a.batch):
            idx = perm[lo:lo + a.batch]
            # The batch's CSR rows: entry positions start_i .. start_i + len_i - 1 per row.
            bl = lens[idx]
            offsets = torch.zeros(len(idx), dtype=torch.int64)
            torch.cumsum(bl[:-1], 0, out=offsets[1:])
            pos = torch.repeat_interleave(row_ptr[idx] - offsets, bl) + torch.arange(int(bl.sum()))
            out = head(emb(ids[pos], offsets, per_sample_weights=vals[pos])).squeeze(1)
            loss = lossf(out, y[idx])
            opt_s.zero_grad(set_to_none=True)
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_s.step()
            opt_d.step()
            loss_sum += loss.item() * len(idx)
        s, c = time.perf_counter() - t0, time.thread_time() - c0
        print("epoch %d samples=%d seconds=%.4f cpu_seconds=%.4f loss=%.5f"
              % (epoch, n, s, c, loss_sum / n), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write-data", metavar="DIR")
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--ids-per-row", type=int, default=40)
    ap.add_argument("--id-bits", type=int, default=24)
    ap.add_argument("--data", metavar="DIR")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if a.write_data:
        return write_data(a)
    if not a.data:
        ap.error("--write-data DIR or --data DIR")
    return train(a)


if __name__ == "__main__":
    sys.exit(main())
