#!/usr/bin/env bash
# LoRA (model.lora, docs/finetuning.md): a tiny GPT pretrained on one fortune file is
# fine-tuned on another through `pstrain local` (2 workers, 2 servers, bsp) with adapters
# only. The base tensors of the final checkpoint are bit for bit the pretrained ones; the
# target text's perplexity drops; each step sends a small fraction of what full
# fine-tuning sends (the workers' "bytes per step" lines); `pstrain export` writes merged
# weights that `pstrain eval` scores as it scores the LoRA checkpoint; bad model.lora
# input is one line naming the key, exit 2.
source "$(dirname "$0")/lib.sh"
F=/usr/share/games/fortunes
if [ ! -f $F/debian ] || [ ! -f $F/disclaimer ]; then
  echo "no $F/debian (package fortunes): skipping"; exit 77
fi
cat > pre.yaml <<YAML
name: pre
seed: 3
data: {format: text, train: $F/debian, context: 32}
model:
  gpt2: {n_layer: 1, n_head: 2, n_embd: 32, n_positions: 32, vocab_size: 256}
optimizer: {name: adamw, lr: 0.003, weight_decay: 0.01, clip_norm: 1.0}
train: {batch_size: 16, epochs: 2}
YAML
cat > ft.yaml <<YAML
name: ft
seed: 5
data: {format: text, train: $F/disclaimer, context: 32}
model:
  gpt2: {n_layer: 1, n_head: 2, n_embd: 32, n_positions: 32, vocab_size: 256}
  init_from: pre/model.safetensors
  lora: {rank: 4, alpha: 8, targets: [attn, mlp]}
optimizer: {name: adamw, lr: 0.01, clip_norm: 1.0}
train: {batch_size: 8, epochs: 2}
YAML
expect_exit 0 "$PSTRAIN" train pre.yaml --output pre
expect_exit 0 "$PSTRAIN" eval pre $F/disclaimer
PPL0=$(sed -n 's/^perplexity: //p' out.txt)

expect_exit 0 "$PSTRAIN" local ft.yaml --consistency bsp --workers 2 --servers 2 --output lora
cp err.txt lora.log
expect_in lora.log "frozen: [0-9]+ of [0-9]+ parameters"
expect_exit 0 "$PSTRAIN" eval lora $F/disclaimer
PPL1=$(sed -n 's/^perplexity: //p' out.txt)
LOSS1=$(sed -n 's/^loss: //p' out.txt)

# Full fine-tuning, the same job without adapters, for the bytes on the wire.
grep -v "lora:" ft.yaml > full.yaml
expect_exit 0 "$PSTRAIN" local full.yaml --consistency bsp --workers 2 --servers 2 --output full \
  --train.epochs 1
cp err.txt full.log

/usr/bin/python3 - pre/model.safetensors lora/model.safetensors lora.log full.log "$PPL0" "$PPL1" <<'PY' || fail "LoRA checks"
import json, re, struct, sys
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
            for k, v in h.items() if k != "__metadata__"}
pre, ft = tensors(sys.argv[1]), tensors(sys.argv[2])
for k, v in pre.items():
    assert ft[k] == v, "base tensor %s changed" % k
ad = [k for k in ft if "lora_" in k]
assert len(ad) == 8, ad
def per_step(log):
    m = re.findall(r"\(\w+; (\d+) and (\d+) bytes per step\)", open(log).read())
    assert m, log
    return max(int(a) + int(b) for a, b in m)
lo, full = per_step(sys.argv[3]), per_step(sys.argv[4])
print("bytes per step (push + pull): lora %d, full %d, ratio %.4f" % (lo, full, lo / full))
assert lo < 0.2 * full, (lo, full)
p0, p1 = float(sys.argv[5]), float(sys.argv[6])
print("perplexity on the target text: %.3f before, %.3f after LoRA" % (p0, p1))
assert p1 < 0.95 * p0, (p0, p1)
PY

# The merged export (W + alpha/r A B, no adapters) evaluates as the LoRA checkpoint does.
expect_exit 0 "$PSTRAIN" export lora merged
expect_exit 0 "$PSTRAIN" eval merged $F/disclaimer
LOSS2=$(sed -n 's/^loss: //p' out.txt)
/usr/bin/python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); assert abs(a - b) <= 1e-5 * a, (a, b)" "$LOSS1" "$LOSS2" \
  || fail "merged export loss $LOSS2, LoRA checkpoint $LOSS1"
/usr/bin/python3 - merged/model.safetensors <<'PY' || fail "adapters in the merged export"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
assert not [k for k in h if "lora" in k], list(h)
PY

# Bad input: one line naming the key, exit 2.
expect_exit 2 "$PSTRAIN" train ft.yaml --model.lora.alpha 0
expect_in err.txt "model.lora.alpha: must be > 0"
[ "$(wc -l < err.txt)" -eq 1 ] || fail "more than one line: $(cat err.txt)"
expect_exit 2 "$PSTRAIN" train ft.yaml --model.lora.rank 33
expect_in err.txt "model.lora.rank: 33 is more than n_embd 32"
expect_exit 2 "$PSTRAIN" train ft.yaml --model.lora.rank -2
expect_in err.txt "model.lora.rank: must be 1 to 65536"
echo "ok"
