#!/usr/bin/env bash
# The worked example of docs/gpt-example.md (examples/gpt-finetune.sh) on a tiny budget: its
# documented commands (pretrain, fine-tune, from scratch, eval, generate) still run and
# give the results table; skipped (77) without the fortunes package. Also dropout: the
# same tiny GPT with model.gpt2.dropout trains, and eval and generate of it repeat exactly.
source "$(dirname "$0")/lib.sh"

[ -f /usr/share/games/fortunes/fortunes ] || { echo "fortunes not installed: skipped"; exit 77; }
expect_exit 0 env PSTRAIN="$PSTRAIN" bash "$SRC/examples/gpt-finetune.sh" --out ex \
  --pre-epochs 1 --ft-epochs 1 --max-bytes 6000
cat out.txt
for row in "pretrained \(before fine-tuning\)" "fine-tuned \(full\)" "fine-tuned \(LoRA rank 4, alpha 8\)" \
           "from scratch"; do
  expect_in out.txt "^\| $row \| .* \| [0-9]+\.[0-9]+ \|$"
done
expect_in out.txt "^sample after fine-tuning:"
expect_in out.txt "^You may "
expect_in err.txt "init_from .*pretrain/model.safetensors: 28 tensor\(s\) loaded"

# dropout set: training uses it, evaluation and sampling do not (repeatable, seeded)
expect_exit 0 "$PSTRAIN" train "$SRC/examples/tiny-gpt.yaml" --train ex/target-train.txt \
  --epochs 1 --model.gpt2.dropout 0.1 --output drop
for i in 1 2; do
  expect_exit 0 "$PSTRAIN" eval drop ex/target-test.txt
  mv out.txt eval$i.txt
  expect_exit 0 "$PSTRAIN" generate drop --prompt "You " --max-tokens 20 --seed 4
  mv out.txt gen$i.txt
done
cmp eval1.txt eval2.txt || fail "eval with dropout set is not repeatable"
cmp gen1.txt gen2.txt || fail "generate with dropout set is not repeatable"
expect_in eval1.txt "^perplexity: "
echo "ok"
