#!/usr/bin/env bash
# pstrain export --format hf: a pstrain GPT-2 checkpoint (written by test_hf --pstrain) as a
# Hugging Face folder; config.json as transformers reads it; existing files kept without
# --force; a model that is no GPT-2, and a missing checkpoint, stop with one line and
# exit 3 / 4, nothing written. Args: PSTRAIN SRC TEST_HF.
source "$(dirname "$0")/lib.sh"
TEST_HF=$3
PY=/usr/bin/python3

one_error() {
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt >&2; fail "expected one error line"; }
  grep -q "^pstrain export: " err.txt || { cat err.txt >&2; fail "error line lacks pstrain export"; }
}

"$TEST_HF" --pstrain gpt.safetensors || fail "test_hf --pstrain"
expect_exit 0 "$PSTRAIN" export --format hf gpt.safetensors hf/gpt
expect_in out.txt '^hf/gpt/model.safetensors hf/gpt/config.json$'
[ -s hf/gpt/model.safetensors ] || fail "no model.safetensors"
$PY - hf/gpt/config.json <<'PY' || fail "config.json"
import json, sys
c = json.load(open(sys.argv[1]))
want = {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 8, "n_positions": 6,
        "n_ctx": 6, "vocab_size": 11, "architectures": ["GPT2LMHeadModel"],
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05,
        "tie_word_embeddings": True, "n_inner": None}
bad = {k: c.get(k) for k in want if c.get(k) != want[k]}
sys.exit("config.json: %s" % bad if bad else 0)
PY
# the folder holds the checkpoint's folder form too (a run folder / ckpt-N)
mkdir run && cp gpt.safetensors run/model.safetensors
expect_exit 2 "$PSTRAIN" export run hf/gpt
one_error
expect_in err.txt 'hf/gpt/model.safetensors exists; not overwriting it'
sum0=$(sha256sum < hf/gpt/model.safetensors)
expect_exit 0 "$PSTRAIN" export run hf/gpt --force
[ "$(sha256sum < hf/gpt/model.safetensors)" = "$sum0" ] || fail "--force wrote other bytes"

# not a GPT-2: an MLP
expect_exit 0 "$PSTRAIN" train "$SRC/examples/binary-moons.yaml" --output mlp --epochs 1
expect_exit 3 "$PSTRAIN" export mlp/model.safetensors hf/mlp
one_error
expect_in err.txt 'only a GPT-2 exports to the Hugging Face layout'
[ ! -e hf/mlp ] || fail "hf/mlp written for a refused export"
expect_exit 4 "$PSTRAIN" export absent.safetensors hf/absent
one_error
[ ! -e hf/absent ] || fail "hf/absent written"
expect_exit 2 "$PSTRAIN" export gpt.safetensors
expect_exit 2 "$PSTRAIN" export --format onnx gpt.safetensors hf/x
echo "hf export ok"
