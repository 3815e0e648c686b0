#!/usr/bin/python3
"""bench/torch_gpt.py -- the PyTorch side of bench/run_gpt.sh: the GPT-2 of
bench/bench_gpt.c, trained the same way on one thread.

  torch_gpt.py [--layers L] [--heads H] [--embd C] [--context T] [--vocab V] [--batch N]
               [--steps S] [--rounds R]

The model is GPT-2 as Hugging Face's GPT2LMHeadModel computes it, written as PyTorch users
write it (nanoGPT's layout): token + learned position embeddings, L pre-LayerNorm blocks
(LayerNorm eps 1e-5 -> causal self-attention with a fused qkv nn.Linear(C, 3C) and
nn.Linear(C, C) out -> residual; LayerNorm -> nn.Linear(C, 4C), GELU tanh form,
nn.Linear(4C, C) -> residual), a final LayerNorm and a head tied to the token embedding;
mean next-token cross-entropy; torch.optim.Adam(lr 3e-4, betas 0.9/0.999, eps 1e-8), as
bench_gpt.c's step. float32, torch.set_num_threads(1); run with OPENBLAS_NUM_THREADS=1
(run_gpt.sh does). Token ids and labels are random, drawn once.

Prints "round R tokens_per_s=X cpu_tokens_per_s=Y step_s=S loss=L" per round (one
untimed warm-up step first) and "info params=P".
"""
import argparse
import math
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("torch_gpt.py: skipped: python3-torch is not installed")
    sys.exit(77)


class Block(nn.Module):
    def __init__(self, c, h, t):
        super().__init__()
        self.h = h
        self.ln_1 = nn.LayerNorm(c, eps=1e-5)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c, eps=1e-5)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)
        self.register_buffer("mask", torch.tril(torch.ones(t, t, dtype=torch.bool)))

    def attn(self, x):
        n, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(n, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        a = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.h)
        a = a.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(dim=-1)
        return self.c_proj((a @ v).transpose(1, 2).reshape(n, t, c))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.wte = nn.Embedding(a.vocab, a.embd)
        self.wpe = nn.Embedding(a.context, a.embd)
        self.h = nn.ModuleList(Block(a.embd, a.heads, a.context) for _ in range(a.layers))
        self.ln_f = nn.LayerNorm(a.embd, eps=1e-5)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for b in self.h:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.t()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in (("layers", 4), ("heads", 4), ("embd", 256), ("context", 256),
                          ("vocab", 256), ("batch", 4), ("steps", 10), ("rounds", 3)):
        p.add_argument("--" + name, type=int, default=default)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = GPT(a)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, a.vocab, (a.batch, a.context), generator=g)
    labels = torch.randint(0, a.vocab, (a.batch, a.context), generator=g)
    print("info params=%d" % sum(q.numel() for q in model.parameters()))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(ids).view(-1, a.vocab), labels.view(-1))
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up: allocations, autograd graph caches
    for r in range(1, a.rounds + 1):
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(a.steps):
            loss = step()
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        tok = a.batch * a.context * a.steps
        print("round %d tokens_per_s=%.1f cpu_tokens_per_s=%.1f step_s=%.4f loss=%.4f"
              % (r, tok / wall, tok / cpu, wall / a.steps, loss), flush=True)


if __name__ == "__main__":
    main()
