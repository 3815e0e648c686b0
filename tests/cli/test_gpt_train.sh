#!/usr/bin/env bash
# A tiny GPT (model.gpt2) trained on real text -- Debian's fortunes (package fortunes) --
# as token windows: the loss falls, perplexity is reported per epoch and at the end; bsp
# with one worker gives the weights of `pstrain train` bit for bit, ssp and asp train;
# `pstrain eval` gives a text's perplexity and `pstrain generate` the same text for the
# same seed. Bad input (a GPT-2 configuration that does not fit, a prompt longer than the
# context, missing tokenizer files, a text shorter than a window) is one line, exit 2/3.
source "$(dirname "$0")/lib.sh"
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"
F=/usr/share/games/fortunes
if [ ! -f $F/debian ] || [ ! -f $F/disclaimer ]; then
  echo "no $F/debian (package fortunes): skipping"; exit 77
fi
cat > gpt.yaml <<YAML
name: gpt-fortunes
seed: 3
data: {format: text, train: $F/debian, validation_split: 0.1, context: 32}
model:
  gpt2: {n_layer: 1, n_head: 2, n_embd: 32, n_positions: 32, vocab_size: 256}
optimizer: {name: adamw, lr: 0.003, weight_decay: 0.01, clip_norm: 1.0, schedule: cosine,
            warmup_steps: 10}
train: {batch_size: 16, epochs: 3}
YAML

# Training: loss down, perplexity = exp(loss) in the lines and the records.
expect_exit 0 "$PSTRAIN" train gpt.yaml --output single
expect_in err.txt "epoch 3/3 loss [0-9.]+ ppl [0-9.]+ \| val_loss [0-9.]+ val_ppl [0-9.]+"
expect_in err.txt "validation: loss [0-9.]+ perplexity [0-9.]+"
/usr/bin/python3 - single/metrics.jsonl <<'PY' || fail "loss or perplexity records wrong"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ep = [r for r in rows if r["split"] == "train"]
assert len(ep) == 3, ep
assert ep[2]["train_loss"] < ep[0]["train_loss"] - 0.3, ep
assert ep[2]["val_loss"] < ep[0]["val_loss"], ep
for r in ep:
    assert abs(r["val_ppl"] - math.exp(r["val_loss"])) < 1e-9 * r["val_ppl"], r
    assert abs(r["train_ppl"] - math.exp(r["train_loss"])) < 1e-9 * r["train_ppl"], r
fin = [r for r in rows if r["split"] == "validation"][-1]
assert abs(fin["perplexity"] - math.exp(fin["loss"])) < 1e-9 * fin["perplexity"], fin
assert fin["perplexity"] < 256, fin
PY
# The printed job (model.gpt2, not its layers) loads back as the same job.
"$PSTRAIN" train gpt.yaml --print-config > p1.yaml || fail "--print-config"
"$PSTRAIN" train p1.yaml --print-config > p2.yaml || fail "the printed job does not load"
cmp -s p1.yaml p2.yaml || fail "the printed gpt2 job does not round-trip"
grep -q "n_embd: 32" p1.yaml || fail "model.gpt2 not printed"

# train.accumulate: 4 micro-batches of 4 step as batches of 16 (to rounding), and so does
# a bsp worker (bit for bit with its own single-process run).
expect_exit 0 "$PSTRAIN" train gpt.yaml --epochs 1 --output b16
expect_exit 0 "$PSTRAIN" train gpt.yaml --epochs 1 --batch-size 4 --train.accumulate 4 --output acc
expect_in err.txt "batch 4 x 4 accumulated"
$COMPARE b16/model.safetensors acc/model.safetensors 1e-4 \
  || fail "accumulate 4 x batch 4 is not batch 16"
expect_exit 0 "$PSTRAIN" local gpt.yaml --epochs 1 --batch-size 4 --train.accumulate 4 \
  --servers 2 --workers 1 --consistency bsp --output accd
$COMPARE acc/model.safetensors accd/model.safetensors 0 \
  || fail "bsp with accumulate differs from single-process training"
expect_exit 2 "$PSTRAIN" train gpt.yaml --train.accumulate 0 --output bad
expect_in err.txt "train.accumulate: must be in \[1, 1048576\], got 0"

# Distributed: bsp with one worker is `pstrain train` bit for bit; ssp, asp train.
expect_exit 0 "$PSTRAIN" local gpt.yaml --servers 2 --workers 1 --consistency bsp --output bsp1
$COMPARE single/model.safetensors bsp1/model.safetensors 0 \
  || fail "bsp with 1 worker differs from single-process training"
for c in ssp asp; do
  expect_exit 0 "$PSTRAIN" local gpt.yaml --servers 2 --workers 2 --consistency $c \
    --epochs 1 --output $c
  expect_in err.txt "worker\[0\] info: validation: loss [0-9.]+ perplexity [0-9.]+"
done

# eval on another text: loss and perplexity, the same from the run folder and the job.
expect_exit 0 "$PSTRAIN" eval single $F/disclaimer
expect_in out.txt "^perplexity: [0-9.]+$"
cp out.txt eval1.txt
loss=$(sed -n 's/^loss: //p' eval1.txt); ppl=$(sed -n 's/^perplexity: //p' eval1.txt)
/usr/bin/python3 -c "import math,sys; sys.exit(abs(math.exp($loss)-$ppl) > 1e-3*$ppl)" \
  || fail "perplexity $ppl is not exp($loss)"
expect_exit 0 "$PSTRAIN" eval single/model.safetensors $F/disclaimer
cmp -s out.txt eval1.txt || fail "eval of the model file differs from eval of the run folder"

# generate: one seed, one text; greedy is deterministic; the prompt starts the output.
for i in 1 2; do
  expect_exit 0 "$PSTRAIN" generate single --prompt "Debian " --max-tokens 40 \
    --temperature 0.8 --top-k 20 --seed 7
  cp out.txt gen$i.txt
done
cmp -s gen1.txt gen2.txt || fail "generate with one seed gave two texts"
expect_in gen1.txt "^Debian "
[ "$(head -c 47 gen1.txt | wc -c)" -eq 47 ] || fail "fewer than 40 tokens generated"
expect_exit 0 "$PSTRAIN" generate single --prompt "Debian " --max-tokens 40 --seed 8 \
  --temperature 0.8 --top-k 20
cmp -s out.txt gen1.txt && fail "two seeds gave the same sampled text"
expect_exit 0 "$PSTRAIN" generate single --prompt "Debian " --max-tokens 20 --temperature 0
cp out.txt greedy.txt
expect_exit 0 "$PSTRAIN" generate single --prompt "Debian " --max-tokens 20 --temperature 0 \
  --seed 99
cmp -s out.txt greedy.txt || fail "greedy decoding depends on the seed"

# Bad input: one line, nothing trained.
long=$(printf 'x%.0s' $(seq 40))
expect_exit 2 "$PSTRAIN" generate single --prompt "$long"
expect_in err.txt "^pstrain generate: --prompt: 40 tokens; the model takes 1 to 32"
mkdir empty
expect_exit 2 "$PSTRAIN" generate single --prompt hi --tokenizer empty
expect_in err.txt "^pstrain generate: empty: no tokenizer files"
expect_exit 2 "$PSTRAIN" generate single
expect_in err.txt "needs a checkpoint and --prompt"
printf 'short text\n' > short.txt
expect_exit 3 "$PSTRAIN" eval single short.txt
expect_in err.txt "short.txt"
[ "$(wc -l < err.txt)" -eq 1 ] || fail "more than one line for a short text"
expect_exit 2 "$PSTRAIN" train gpt.yaml --model.gpt2.n_head 3 --output bad
expect_in err.txt "model.gpt2: n_embd 32 is not divisible by n_head 3"
expect_exit 2 "$PSTRAIN" train gpt.yaml --data.context 64 --output bad
expect_in err.txt "model.gpt2: a context of 64 tokens does not fit n_positions 32"
expect_exit 2 "$PSTRAIN" train gpt.yaml --model.gpt2.vocab_size 100 --output bad
expect_in err.txt "vocab_size: the model has 100 tokens, but the text holds id"
sed 's/^model:$/model:\n  layers: [{type: dense, units: 2}]/' gpt.yaml > both.yaml
expect_exit 2 "$PSTRAIN" train both.yaml --output bad
expect_in err.txt "model.gpt2 and model.layers: give one of them, not both"
[ ! -e bad/model.safetensors ] || fail "a refused job wrote a model"
echo "ok"
