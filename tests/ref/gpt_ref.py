#!/usr/bin/python3
"""tests/ref/gpt_ref.py -- pstrain's GPT-2 against a PyTorch GPT-2 in Hugging Face's layout.

Usage: gpt_ref.py TEST_GPT   (the test_gpt program)

Runs `TEST_GPT --dump DIR`, which writes a tiny GPT-2 (case.json: the config, the loss and
the flat vector's segments with their Hugging Face names; params.f32: the flat vector;
ids.f32 / labels.i32: one batch (N, T); logits.f32 (N, T, V) and grads.f32 (the flat
gradient) as pstrain computed them). This script loads the flat vector into a state dict
named as GPT-2's (wte, wpe, h.I.ln_1, h.I.attn.c_attn, h.I.attn.c_proj, h.I.ln_2,
h.I.mlp.c_fc, h.I.mlp.c_proj, ln_f; Conv1D weights (in, out), as HF stores them: each
segment is reshaped, never transposed), runs the GPT-2 forward written out as
transformers' GPT2Model + a head tied to wte does it (pre-LN blocks, causal softmax
attention, gelu_new, LayerNorm eps 1e-5), the mean next-token cross-entropy, and autograd,
in float64 on the same float32 weights, and compares the logits, the loss and every
tensor's gradient: max |pstrain - torch| / max |torch| <= 1e-4 per tensor.
Exit 0 on agreement, 1 on a mismatch, 77 (skipped) without torch.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError:
    print("gpt_ref.py: skipped: python3-torch is not installed (apt-get install python3-torch)")
    sys.exit(77)

TOL = 1e-4


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def conv1d(x, sd, name):
    """transformers.pytorch_utils.Conv1D: x @ weight (in, out) + bias."""
    return x @ sd[name + ".weight"] + sd[name + ".bias"]


def layer_norm(x, sd, name):
    w, b = sd[name + ".weight"], sd[name + ".bias"]
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps=1e-5)


def attention(x, sd, name, n_head):
    B, T, C = x.shape
    q, k, v = conv1d(x, sd, name + ".c_attn").split(C, dim=2)
    hs = C // n_head
    q, k, v = (t.view(B, T, n_head, hs).transpose(1, 2) for t in (q, k, v))
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
    return conv1d(y, sd, name + ".c_proj")


def gpt2_forward(ids, sd, cfg):
    T = ids.shape[1]
    x = sd["wte.weight"][ids] + sd["wpe.weight"][:T]
    for i in range(cfg["n_layer"]):
        h = "h.%d." % i
        x = x + attention(layer_norm(x, sd, h + "ln_1"), sd, h + "attn", cfg["n_head"])
        m = gelu_new(conv1d(layer_norm(x, sd, h + "ln_2"), sd, h + "mlp.c_fc"))
        x = x + conv1d(m, sd, h + "mlp.c_proj")
    x = layer_norm(x, sd, "ln_f")
    return x @ sd["wte.weight"].t()  # the head tied to wte, no bias


def rel(got, want):
    got = torch.as_tensor(got, dtype=torch.float64).reshape(-1)
    want = want.detach().reshape(-1)
    scale = want.abs().max().item()
    return (got - want).abs().max().item() / (scale if scale > 0 else 1.0)


def gpt2_names(cfg):
    """The Hugging Face names of a GPT-2's tensors (head tied to wte: none of its own)."""
    want = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"}
    for i in range(cfg["n_layer"]):
        for t in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            want |= {"h.%d.%s.weight" % (i, t), "h.%d.%s.bias" % (i, t)}
    return want


def check_dump(script, prog, names, forward):
    """Runs `PROG --dump DIR`, loads its tensors by their "hf" names (which must be
    names(cfg)), runs forward(ids, sd, cfg) -> logits in float64 with autograd, and compares
    the logits, the loss and every tensor's gradient with pstrain's. Returns the exit code."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([prog, "--dump", d], check=True)
        cfg = json.load(open(os.path.join(d, "case.json")))

        def load(name, dt):
            return np.fromfile(os.path.join(d, name), dtype=dt)

        params, grads = load("params.f32", np.float32), load("grads.f32", np.float32)
        ids = torch.from_numpy(load("ids.f32", np.float32).astype(np.int64))
        labels = torch.from_numpy(load("labels.i32", np.int32).astype(np.int64))
        logits_c = load("logits.f32", np.float32)
    N, T, V = cfg["batch"], cfg["context"], cfg["vocab_size"]
    ids, labels = ids.view(N, T), labels.view(N, T)
    sd, gc = {}, {}
    for s in cfg["segments"]:
        n = s["rows"] * s["cols"]
        shape = (s["rows"],) if s["cols"] == 1 else (s["rows"], s["cols"])
        sl = slice(s["offset"], s["offset"] + n)
        sd[s["hf"]] = torch.tensor(params[sl].astype(np.float64).reshape(shape), requires_grad=True)
        gc[s["hf"]] = grads[sl].reshape(shape)
    want = names(cfg)
    if set(sd) != want:
        print("%s: segments %s are not the expected %s" % (script, sorted(sd), sorted(want)))
        return 1
    logits = forward(ids, sd, cfg)
    loss = torch.nn.functional.cross_entropy(logits.view(-1, V), labels.view(-1))
    loss.backward()
    bad = 0
    checks = [("logits", rel(logits_c, logits)), ("loss", rel([cfg["loss"]], loss.reshape(1)))]
    checks += [(name + ".grad", rel(gc[name], sd[name].grad)) for name in sorted(sd)]
    for what, r in checks:
        ok = r <= TOL
        bad += not ok
        print("%-34s max rel diff %.2e %s" % (what, r, "ok" if ok else "MISMATCH"))
    print("%s: loss pstrain %.7f torch %.7f; %d of %d checks off" %
          (script, cfg["loss"], loss.item(), bad, len(checks)))
    return 1 if bad else 0


def main():
    if len(sys.argv) != 2:
        print("usage: gpt_ref.py TEST_GPT", file=sys.stderr)
        return 2
    return check_dump("gpt_ref.py", sys.argv[1], gpt2_names, gpt2_forward)


if __name__ == "__main__":
    sys.exit(main())
