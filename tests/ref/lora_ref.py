#!/usr/bin/python3
"""tests/ref/lora_ref.py -- pstrain's LoRA adapters (core/layers/lora.h) against PyTorch.

Usage: lora_ref.py TEST_LORA   (the test_lora program)

Runs `TEST_LORA --dump DIR`: a tiny GPT-2 with adapters of rank r on every projection
(attention's c_attn and c_proj, the MLP's c_fc and c_proj), A and B both random, one batch
through forward, loss and backward (the dump of tests/ref/gpt_ref.py, plus case.json's
"lora": {"rank", "alpha"}; an adapter's tensors are named after the weight they adapt,
"h.0.attn.c_attn.lora_a" (in, r) and ".lora_b" (r, out)). The reference is gpt_ref.py's
GPT-2 with each adapted projection written as Hu et al. 2021 (eq. 3) define LoRA:

    h = x W + b + (alpha / r) (x A) B

in float64 with autograd; the logits, the loss and every tensor's gradient (the base
weights' as well as A's and B's) must agree with pstrain's to 1e-4 of their largest value.
Exit 0 on agreement, 1 on a mismatch, 77 (skipped) without torch.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt_ref  # noqa: E402  (exits 77 without torch)

PROJECTIONS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def names(cfg):
    want = gpt_ref.gpt2_names(cfg)
    for i in range(cfg["n_layer"]):
        for p in PROJECTIONS:
            want |= {"h.%d.%s.lora_a" % (i, p), "h.%d.%s.lora_b" % (i, p)}
    return want


def forward(ids, sd, cfg):
    scale = cfg["lora"]["alpha"] / cfg["lora"]["rank"]
    plain = gpt_ref.conv1d

    def conv1d_lora(x, sd, name):
        y = plain(x, sd, name)
        if name + ".lora_a" in sd:
            y = y + scale * ((x @ sd[name + ".lora_a"]) @ sd[name + ".lora_b"])
        return y

    # gpt_ref's blocks look conv1d up in their module at each call.
    gpt_ref.conv1d = conv1d_lora
    try:
        return gpt_ref.gpt2_forward(ids, sd, cfg)
    finally:
        gpt_ref.conv1d = plain


def main():
    if len(sys.argv) != 2:
        print("usage: lora_ref.py TEST_LORA", file=sys.stderr)
        return 2
    return gpt_ref.check_dump("lora_ref.py", sys.argv[1], names, forward)


if __name__ == "__main__":
    sys.exit(main())
