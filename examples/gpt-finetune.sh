#!/usr/bin/env bash
# examples/gpt-finetune.sh -- the worked example of docs/gpt-example.md: pretrain a small GPT
# (examples/tiny-gpt.yaml, byte-level) on Debian's fortune cookies, fine-tune it on the
# licence texts of /usr/share/common-licenses, and compare perplexity on held-out licence
# text before and after fine-tuning and against training from scratch for the same budget,
# with sample text before and after.
#
# Corpora (package `fortunes`, and base-files' /usr/share/common-licenses):
#   pretrain.txt      fortunes, literature, people, wisdom, humorists, science, the '%'
#                     separator lines dropped (about 0.45 MB)
#   target-train.txt  every licence file, concatenated, but the last tenth (about 0.27 MB)
#   target-test.txt   that last tenth (held out: measured, never trained on)
#
# usage: examples/gpt-finetune.sh [--pstrain BIN] [--out DIR] [--pre-epochs N]
#                                 [--ft-epochs N] [--max-bytes B]
#   --out DIR        where corpora, runs and results go (default runs/gpt-finetune)
#   --pre-epochs N   pretraining epochs (default 3)
#   --ft-epochs N    fine-tuning epochs, also the from-scratch budget (default 2)
#   --max-bytes B    cut every corpus to B bytes (a quick check; default: whole)
# The results table goes to stdout and DIR/results.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
pstrain=${PSTRAIN:-$here/../build/pstrain}
out=runs/gpt-finetune
pre_epochs=3 ft_epochs=2 max_bytes=0
while [ $# -gt 0 ]; do
  case "$1" in
    --pstrain) pstrain=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --pre-epochs) pre_epochs=${2:?}; shift 2 ;;
    --ft-epochs) ft_epochs=${2:?}; shift 2 ;;
    --max-bytes) max_bytes=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpt-finetune.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
fort=/usr/share/games/fortunes
lic=/usr/share/common-licenses
for f in "$fort/fortunes" "$lic/GPL-3"; do
  [ -f "$f" ] || { echo "gpt-finetune.sh: $f not found (apt-get install fortunes)" >&2; exit 77; }
done
mkdir -p "$out"
cut_to() { if [ "$max_bytes" -gt 0 ]; then head -c "$max_bytes"; else cat; fi; }

# 1. The corpora (head -c ends its writers early: no pipefail here).
set +o pipefail
for f in fortunes literature people wisdom humorists science; do
  if [ -f "$fort/$f" ]; then grep -v "^%$" "$fort/$f"; fi
done | cut_to > "$out/pretrain.txt"
find "$lic" -maxdepth 1 -type f | LC_ALL=C sort | xargs cat > "$out/licenses.txt"
total=$(wc -c < "$out/licenses.txt")
head -c $((total * 9 / 10)) "$out/licenses.txt" | cut_to > "$out/target-train.txt"
tail -c $((total - total * 9 / 10)) "$out/licenses.txt" | cut_to > "$out/target-test.txt"
set -o pipefail

job=$here/tiny-gpt.yaml
run() { "$pstrain" "$@" 2> >(grep -E "epoch|init_from|validation:" >&2); }
ppl() { "$pstrain" eval "$1" "$out/target-test.txt" | sed -n 's/^perplexity: //p'; }
sample() { "$pstrain" generate "$1" --prompt "$2" --max-tokens 60 --temperature 0.8 --top-k 40 --seed 1; }

# 2. Pretrain on the fortunes; 3. fine-tune on the licences (all weights, then LoRA
# adapters only); 4. the same budget from scratch on the licences.
run train "$job" --train "$out/pretrain.txt" --epochs "$pre_epochs" --output "$out/pretrain"
run train "$job" --train "$out/target-train.txt" --epochs "$ft_epochs" \
  --model.init_from "$out/pretrain/model.safetensors" --output "$out/finetune"
run train "$job" --train "$out/target-train.txt" --epochs "$ft_epochs" \
  --model.init_from "$out/pretrain/model.safetensors" --model.lora.rank 4 --output "$out/lora"
run train "$job" --train "$out/target-train.txt" --epochs "$ft_epochs" --output "$out/scratch"

# 5. Perplexity on the held-out licence text, and samples.
p_pre=$(ppl "$out/pretrain") p_ft=$(ppl "$out/finetune") p_lora=$(ppl "$out/lora")
p_sc=$(ppl "$out/scratch")
prompt="You may "
{
  echo "| model | training | perplexity on target-test.txt |"
  echo "|:--|:--|--:|"
  echo "| pretrained (before fine-tuning) | $pre_epochs epoch(s) on pretrain.txt | $p_pre |"
  echo "| fine-tuned (full) | + $ft_epochs epoch(s) on target-train.txt | $p_ft |"
  echo "| fine-tuned (LoRA rank 4, alpha 8) | + $ft_epochs epoch(s) on target-train.txt, adapters only | $p_lora |"
  echo "| from scratch | $ft_epochs epoch(s) on target-train.txt | $p_sc |"
  echo
  echo "sample before fine-tuning (prompt \"$prompt\"):"
  echo '```'
  sample "$out/pretrain" "$prompt"
  echo '```'
  echo "sample after fine-tuning:"
  echo '```'
  sample "$out/finetune" "$prompt"
  echo '```'
} | tee "$out/results.md"
