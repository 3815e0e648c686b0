#!/usr/bin/python3
"""tests/ref/hf_ref.py -- Hugging Face GPT-2 folders between pstrain and PyTorch.

Usage: hf_ref.py TEST_HF   (the test_hf program)

GPT-2 is written here in plain PyTorch as transformers' modeling_gpt2.py defines it
(GPT2LMHeadModel: a `transformer` of wte, wpe, blocks h.I of ln_1, attn (c_attn, c_proj
as Conv1D: x @ weight + bias, weight (in, out); the causal mask as the buffers attn.bias
and attn.masked_bias), ln_2, mlp (c_fc, c_proj, gelu_new: the tanh form), and ln_f,
LayerNorm eps 1e-5; lm_head tied to wte), so that its state_dict has HF's names and
shapes. The transformers package is not needed (nor installed here); safetensors files are
read and written with json + numpy from the format's definition (8-byte little-endian
header length, JSON header, raw little-endian data).

 (a) `TEST_HF --save D`: pstrain writes a random GPT-2 as D/model (model.safetensors +
     config.json) with one batch, its logits, loss and gradients. The model is built from
     config.json, loaded strictly by name (only the mask buffers and the tied lm_head may
     be absent) and run in float64; logits, loss and every gradient are compared.
 (b) Torch's own random GPT-2 (another shape: 3 heads, a context shorter than
     n_positions), its state_dict written as GPT2LMHeadModel.save_pretrained's names with
     the "transformer." prefix, the buffers and lm_head.weight, and a config.json as
     transformers writes it; `TEST_HF --eval D` loads it in pstrain and writes logits,
     loss and gradients (one training step's), compared the same way.
Agreement: max |pstrain - torch| / max |torch| <= 1e-4 for the logits, the loss and each
parameter's gradient. Exit 0 on agreement, 1 on a mismatch, 77 (skipped) without torch.
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from torch import nn
except ImportError:
    print("hf_ref.py: skipped: python3-torch is not installed (apt-get install python3-torch)")
    sys.exit(77)

TOL = 1e-4

# ---- safetensors, from the format's definition ---------------------------------------------

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BOOL": np.bool_,
          "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    """name -> numpy array; checks that the tensors tile the data exactly."""
    buf = open(path, "rb").read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    data = buf[8 + n:]
    out, spans = {}, []
    for name, e in header.items():
        begin, end = e["data_offsets"]
        raw = data[begin:end]
        if e["dtype"] == "BF16":  # the top half of a float32
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        out[name] = a.reshape(e["shape"]).copy()
        spans.append((begin, end))
    at = 0
    for begin, end in sorted(spans):
        assert begin == at, "%s: a gap or overlap at data byte %d" % (path, at)
        at = end
    assert at == len(data), "%s: bytes after the last tensor" % path
    return out


def write_safetensors(path, tensors):
    """tensors: name -> numpy array (float32 or bool); header padded to 8 bytes."""
    header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, a in tensors.items():
        dt = {np.dtype(np.float32): "F32", np.dtype(np.bool_): "BOOL"}[a.dtype]
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---- GPT-2 in the Hugging Face layout ---------------------------------------------------------


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D: y = x @ weight + bias, weight (nx, nf)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, P = cfg["n_embd"], cfg["n_positions"]
        self.n_head = cfg["n_head"]
        self.c_attn = Conv1D(3 * C, C)
        self.c_proj = Conv1D(C, C)
        # The causal mask as older transformers kept it: buffers, not parameters.
        self.register_buffer("bias", torch.tril(torch.ones(P, P)).view(1, 1, P, P))
        self.register_buffer("masked_bias", torch.tensor(-1e4))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_head
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in (q, k, v))
        w = (q @ k.transpose(-1, -2)) / math.sqrt(hs)  # scale_attn_weights
        causal = self.bias[:, :, :T, :T].bool()
        w = torch.where(causal, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        y = (w.softmax(dim=-1) @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg["n_embd"]
        inner = cfg.get("n_inner") or 4 * C
        self.c_fc = Conv1D(inner, C)
        self.c_proj = Conv1D(C, inner)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, eps = cfg["n_embd"], cfg.get("layer_norm_epsilon", 1e-5)
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["n_embd"])
        self.wpe = nn.Embedding(cfg["n_positions"], cfg["n_embd"])
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg["n_layer"]))
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=cfg.get("layer_norm_epsilon", 1e-5))

    def forward(self, ids):
        pos = torch.arange(ids.shape[1])
        x = self.wte(ids) + self.wpe(pos)
        for b in self.h:
            x = b(x)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg["model_type"] == "gpt2" and cfg.get("activation_function") == "gelu_new"
        assert cfg.get("tie_word_embeddings", True)
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def forward(self, ids):
        return self.lm_head(self.transformer(ids))


def is_buffer_or_tied(name):
    return name.endswith(".attn.bias") or name.endswith(".attn.masked_bias") or \
        name == "lm_head.weight"


# ---- Comparisons -----------------------------------------------------------------------------


def rel(got, want):
    got = torch.as_tensor(np.asarray(got), dtype=torch.float64).reshape(-1)
    want = want.detach().to(torch.float64).reshape(-1)
    scale = want.abs().max().item()
    return (got - want).abs().max().item() / (scale if scale > 0 else 1.0)


def compare(what, model, ids, labels, logits_c, loss_c, grads_c):
    """Runs model (float64) on the batch and compares with pstrain's; returns #mismatches."""
    V = model.lm_head.weight.shape[0]
    model.zero_grad()
    logits = model(ids)
    loss = nn.functional.cross_entropy(logits.reshape(-1, V), labels.reshape(-1))
    loss.backward()
    checks = [("logits", rel(logits_c, logits)), ("loss", rel([loss_c], loss.reshape(1)))]
    params = dict(model.named_parameters())  # the tied lm_head.weight appears once, as wte
    if set("transformer." + n for n in grads_c) != set(params):
        print("%s: gradients of %s, but the model has %s" % (what, sorted(grads_c),
                                                             sorted(params)))
        return 1
    for n in sorted(grads_c):
        checks.append((n + ".grad", rel(grads_c[n], params["transformer." + n].grad)))
    bad = 0
    for name, r in checks:
        ok = r <= TOL
        bad += not ok
        print("%s %-30s max rel diff %.2e %s" % (what, name, r, "ok" if ok else "MISMATCH"))
    print("%s: loss pstrain %.7f torch %.7f; %d of %d checks off" %
          (what, loss_c, loss.item(), bad, len(checks)))
    return bad


def part_a(test_hf, d):
    """pstrain writes; torch loads by HF names and recomputes."""
    subprocess.run([test_hf, "--save", d], check=True)
    cfg = json.load(open(os.path.join(d, "model", "config.json")))
    case = json.load(open(os.path.join(d, "case.json")))
    sd = read_safetensors(os.path.join(d, "model", "model.safetensors"))
    model = GPT2LMHeadModel(cfg).double()
    missing, unexpected = model.load_state_dict(
        {"transformer." + k: torch.from_numpy(v.astype(np.float64)) for k, v in sd.items()},
        strict=False)
    if unexpected or any(not is_buffer_or_tied(k) for k in missing):
        print("(a) names off: missing %s, unexpected %s" % (missing, unexpected))
        return 1
    N, T = case["batch"], case["context"]
    ids = torch.from_numpy(np.fromfile(os.path.join(d, "ids.i32"), np.int32).astype(np.int64))
    labels = torch.from_numpy(np.fromfile(os.path.join(d, "labels.i32"),
                                          np.int32).astype(np.int64))
    logits_c = np.fromfile(os.path.join(d, "logits.f32"), np.float32)
    grads = read_safetensors(os.path.join(d, "grads.safetensors"))
    return compare("(a)", model, ids.view(N, T), labels.view(N, T), logits_c, case["loss"],
                   grads)


def part_b(test_hf, d):
    """torch writes (save_pretrained's names and buffers); pstrain loads and computes."""
    torch.manual_seed(3)
    cfg = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
           "attn_pdrop": 0.1, "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256,
           "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
           "n_ctx": 10, "n_embd": 12, "n_head": 3, "n_inner": None, "n_layer": 2,
           "n_positions": 10, "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
           "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
           "summary_activation": None, "summary_first_dropout": 0.1,
           "summary_proj_to_labels": True, "summary_type": "cls_index",
           "summary_use_proj": True, "torch_dtype": "float32", "transformers_version": "4.35.2",
           "use_cache": True, "vocab_size": 29}
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():  # weights of some size, LayerNorms away from (1, 0)
        for n, p in model.named_parameters():
            p.add_(0.2 * (2 * torch.rand(p.shape) - 1))
    os.makedirs(os.path.join(d, "model"))
    json.dump(cfg, open(os.path.join(d, "model", "config.json"), "w"), indent=2, sort_keys=True)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(d, "model", "model.safetensors"), state)
    N, T = 2, 7  # a context shorter than n_positions
    ids = torch.randint(0, cfg["vocab_size"], (N, T))
    labels = torch.randint(0, cfg["vocab_size"], (N, T))
    ids.to(torch.int32).numpy().tofile(os.path.join(d, "ids.i32"))
    labels.to(torch.int32).numpy().tofile(os.path.join(d, "labels.i32"))
    json.dump({"batch": N, "context": T}, open(os.path.join(d, "case.json"), "w"))
    subprocess.run([test_hf, "--eval", d], check=True)
    logits_c = np.fromfile(os.path.join(d, "logits.f32"), np.float32)
    loss_c = float(open(os.path.join(d, "loss.txt")).read())
    grads = read_safetensors(os.path.join(d, "grads.safetensors"))
    # the reference: float64 on the float32 weights written
    ref = GPT2LMHeadModel(cfg).double()
    ref.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in state.items()})
    return compare("(b)", ref, ids, labels, logits_c, loss_c, grads)


def main():
    if len(sys.argv) != 2:
        print("usage: hf_ref.py TEST_HF", file=sys.stderr)
        return 2
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "a"))
        os.makedirs(os.path.join(d, "b"))
        bad += part_a(sys.argv[1], os.path.join(d, "a"))
        bad += part_b(sys.argv[1], os.path.join(d, "b"))
    print("hf_ref.py: %s" % ("agree" if not bad else "%d mismatches" % bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
