#!/usr/bin/python3
"""tests/ref/emb_ref.py -- the sparse layers and the DLRM dot interaction against PyTorch.

Usage: emb_ref.py TEST_EMB   (the test_emb program)

Runs `TEST_EMB --dump FILE`, which writes every layer case of tests/test_emb.c (the CSR
batch, the gathered table rows, dense tensors, the upstream gradient dy, and the forward
output y and gradients pstrain computed), recomputes each with torch autograd and compares
to float tolerance:
  embedding_bag sum   nn.EmbeddingBag(mode='sum') with per_sample_weights = the values
  embedding_bag mean  nn.EmbeddingBag(mode='mean') for unit values; weighted:
                      mode='sum' with per_sample_weights v / sum |v| (TensorFlow's mean)
  embedding           one EmbeddingBag(mode='sum') per field, concatenated
  fm                  Rendle 2010 eq. 1 with the explicit O(n^2) pairwise sum (not the
                      O(nk) lemma the C code uses)
  dot_interaction     torch.bmm of the stacked vectors, pairs torch.triu_indices(M, M, 1)
Gradients of the rows come from autograd on the embedding weight, so they are summed per
key exactly as the model must sum them.
Exit 0 on agreement, 1 on a mismatch, 77 (skipped) without torch.
"""
import json
import sys

from reflib import close, dumped_cases, need_torch

torch = need_torch("emb_ref.py")


def read_entries(c, lo, hi):
    """Per row, the (key index, value) of entries in fields [lo, hi]."""
    index = {k: i for i, k in enumerate(c["table_keys"])}
    rows = []
    fields = c["fields"]
    for i in range(len(c["row_ptr"]) - 1):
        row = []
        for e in range(c["row_ptr"][i], c["row_ptr"][i + 1]):
            f = fields[e] if fields is not None else 0
            if lo <= f <= hi:
                row.append((index[c["ids"][e]], c["vals"][e], f))
        rows.append(row)
    return rows


def bag(weight, rows, mode, weights):
    """nn.EmbeddingBag's functional form over per-row entry lists."""
    inp = torch.tensor([k for r in rows for k, _, _ in r], dtype=torch.long)
    offs = torch.tensor([0] + [len(r) for r in rows][:-1], dtype=torch.long).cumsum(0)
    psw = None
    if weights is not None:
        psw = torch.tensor([w for r in rows for w in weights(r)], dtype=torch.float64)
    return torch.nn.functional.embedding_bag(inp, weight, offs, mode=mode, per_sample_weights=psw)


def sparse_case(c):
    n, d, keys = len(c["row_ptr"]) - 1, c["d"], c["keys"]
    nk = len(c["table_keys"])
    weight = torch.tensor(c["rows"], dtype=torch.float64).reshape(nk, d).requires_grad_()
    bias = torch.tensor(c["bias"], dtype=torch.float64).requires_grad_()
    t = c["type"]
    if t == "embedding_bag":
        f = keys.get("field", -1)
        rows = read_entries(c, 0 if f < 0 else f, 2**32 if f < 0 else f)
        unit = all(v == 1.0 for r in rows for _, v, _ in r)
        if keys["combiner"] == "sum":
            y = bag(weight, rows, "sum", lambda r: [v for _, v, _ in r])
        elif unit:
            y = bag(weight, rows, "mean", None)
        else:
            def scaled(r):
                den = sum(abs(v) for _, v, _ in r)
                return [v / den for _, v, _ in r]
            y = bag(weight, rows, "sum", scaled)
        if keys.get("bias"):
            y = y + bias
    elif t == "embedding":
        lo, nf = keys["field_offset"], keys["fields"]
        parts = [bag(weight, read_entries(c, lo + j, lo + j), "sum",
                     lambda r: [v for _, v, _ in r]) for j in range(nf)]
        y = torch.cat(parts, dim=1)
    elif t == "fm":
        f = keys["field"]
        rows = read_entries(c, 0 if f < 0 else f, 2**32 if f < 0 else f)
        out = []
        for r in rows:
            s = bias[0]
            for a, (ka, xa, _) in enumerate(r):
                s = s + weight[ka, 0] * xa
                for kb, xb, _ in r[a + 1:]:
                    s = s + (weight[ka, 1:] * weight[kb, 1:]).sum() * xa * xb
            out.append(s)
        y = torch.stack(out).reshape(n, 1)
    else:
        return f"unknown type {t}"
    dy = torch.tensor(c["dy"], dtype=torch.float64).reshape(y.shape)
    (y * dy).sum().backward()
    def grad(p):  # None when nothing read the tensor (an empty table, say)
        return p.grad if p.grad is not None else torch.zeros_like(p)
    checks = [("y", c["y"], y), ("drows", c["drows"], grad(weight))]
    if len(c["bias"]):
        checks.append(("dbias", c["dbias"], grad(bias)))
    for what, got, want in checks:
        m = close(what, got, want)
        if m:
            return m
    return None


def dense_case(c):
    n, keys = c["n"], c["keys"]
    xs = [torch.tensor(c[f"x{k}"], dtype=torch.float64).reshape(n, c["in"][k]).requires_grad_()
          for k in range(c["nin"])]
    if c["type"] != "dot_interaction":
        return f"unknown type {c['type']}"
    dim = keys["dim"] or c["in"][0]
    v = torch.cat([x.reshape(n, -1, dim) for x in xs], dim=1)  # (N, M, D)
    m = v.shape[1]
    z = torch.bmm(v, v.transpose(1, 2))  # (N, M, M)
    i, j = torch.triu_indices(m, m, 1)
    y = z[:, i, j]
    if keys["keep_first"]:
        y = torch.cat([xs[0], y], dim=1)
    dy = torch.tensor(c["dy"], dtype=torch.float64).reshape(y.shape)
    (y * dy).sum().backward()
    msg = close("y", c["y"], y)
    for k in range(c["nin"]):
        msg = msg or close(f"dx{k}", c[f"dx{k}"], xs[k].grad)
    return msg


def model_case(c):
    """embedding_bag (mean, bias) -> dense tanh -> dense -> sigmoid + BCE, mean over rows."""
    nk = len(c["table_keys"])
    weight = torch.tensor(c["rows"], dtype=torch.float64).reshape(nk, 3).requires_grad_()
    seg = {s["name"]: torch.tensor(s["value"], dtype=torch.float64).reshape(s["rows"], s["cols"]).requires_grad_()
           for s in c["segments"]}
    rows = read_entries(c, 0, 2**32)

    def scaled(r):
        den = sum(abs(v) for _, v, _ in r)
        return [v / den for _, v, _ in r]
    y = bag(weight, rows, "sum", scaled) + seg["bag.bias"].reshape(-1)
    h = torch.tanh(y @ seg["dense_0.weight"].T + seg["dense_0.bias"].reshape(-1))
    z = h @ seg["dense_1.weight"].T + seg["dense_1.bias"].reshape(-1)
    t = torch.tensor(c["target"], dtype=torch.float64).reshape(z.shape)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, t)
    loss.backward()
    msg = close("loss", [c["loss"]], loss)
    msg = msg or close("drows (summed per key)", c["drows"], weight.grad)
    for s in c["segments"]:
        msg = msg or close(s["name"] + " grad", s["grad"], seg[s["name"]].grad)
    return msg


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    cases = dumped_cases(sys.argv[1])
    bad = 0
    for kind, run in (("sparse", sparse_case), ("dense", dense_case)):
        for i, c in enumerate(cases[kind]):
            msg = run(c)
            label = f"{c['type']} {json.dumps(c['keys'])} (case {kind}[{i}])"
            if msg:
                bad += 1
                print(f"FAIL {label}: {msg}")
            else:
                print(f"ok   {label}")
    msg = model_case(cases["model"])
    print(f"{'FAIL' if msg else 'ok  '} model embedding_bag -> dense -> BCE{': ' + msg if msg else ''}")
    bad += msg is not None
    total = len(cases["sparse"]) + len(cases["dense"]) + 1
    print(f"{total - bad} of {total} cases agree with torch {torch.__version__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
