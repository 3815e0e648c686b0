#!/usr/bin/env bash
# Model compression end to end (docs/compression.md): a trained model exported to fp16 and
# int8 -- smaller files (~1/2, ~1/4 + scales), `pstrain eval --compare` reports a small
# accuracy drop -- and pruned to 0.5 and 0.9, then fine-tuned with model.keep_zeros in one
# process and distributed (pstrain local: 2 workers, 2 servers asp / 1 server bsp, where the
# servers hold the mask): exactly the pruned weights are still 0 in the final checkpoint
# (tests/cli/check_zeros.py), and without keep_zeros they are not. Bad input: sparsity
# outside [0, 1), non-finite weights: one line, non-zero exit, nothing written.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
JOB=$SRC/examples/binary-moons.yaml
DATA=$SRC/examples/data/moons.csv
WIDE=(--model.layers.0.units=64 --model.layers.1.units=64)

one_error() { # CMD: the error is one line naming it
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt >&2; fail "expected one error line"; }
  grep -q "^pstrain $1: " err.txt || { cat err.txt >&2; fail "error line lacks pstrain $1"; }
}
size() { stat -c %s "$1"; }
# data FILE: bytes of the tensors, without the JSON header (on so small a model the header,
# which names every tensor and holds its checksum, is a fifth of the int8 file)
data() { $PY -c "import struct,os,sys; f=sys.argv[1]; print(os.path.getsize(f) - 8 - struct.unpack('<Q', open(f,'rb').read(8))[0])" "$1"; }
ratio_le() { # A B MAX WHAT: A / B <= MAX
  $PY -c "import sys; sys.exit(0 if $1 / $2 <= $3 else 1)" || fail "$4: $1 / $2 > $3"
}

expect_exit 0 "$PSTRAIN" train "$JOB" "${WIDE[@]}" --epochs 20 --output base
FP32=base/model.safetensors

# ---- fp16 / int8 exports: size and the accuracy drop eval reports
for dt in fp16 int8; do
  expect_exit 0 "$PSTRAIN" export "$FP32" m_$dt.safetensors --dtype $dt
  expect_in out.txt "^m_$dt.safetensors: $dt, "
  expect_exit 0 "$PSTRAIN" eval m_$dt.safetensors "$DATA" --compare "$FP32"
  expect_in out.txt "compared with $FP32 \\(fp32\\)"
  drop=$(sed -n 's/^accuracy drop: //p' out.txt)
  [ -n "$drop" ] || fail "eval --compare printed no accuracy drop"
  $PY -c "import sys; sys.exit(0 if abs($drop) <= 0.01 else 1)" || fail "$dt accuracy drop $drop"
  echo "$dt: $(size m_$dt.safetensors) bytes of $(size $FP32), accuracy drop $drop"
done
# fp16: every tensor but preprocess.* halves; int8: the weights quarter, biases and one
# scale per output unit stay F32
ratio_le "$(data m_fp16.safetensors)" "$(data $FP32)" 0.51 "fp16 tensor bytes"
ratio_le "$(data m_int8.safetensors)" "$(data $FP32)" 0.31 "int8 tensor bytes"
ratio_le "$(size m_fp16.safetensors)" "$(size $FP32)" 0.6 "fp16 file size"
ratio_le "$(size m_int8.safetensors)" "$(size $FP32)" 0.4 "int8 file size"
$PY -c "import sys; sys.exit(0 if $(data m_int8.safetensors) > $(data $FP32) / 4 else 1)" \
  || fail "int8 tensors smaller than the int8 weights alone"
# an export is not exported again, and is not overwritten
expect_exit 2 "$PSTRAIN" export m_int8.safetensors again.safetensors --dtype fp16
one_error export
expect_in err.txt "already an int8 export"
expect_exit 2 "$PSTRAIN" export "$FP32" m_fp16.safetensors --dtype fp16
one_error export
expect_exit 2 "$PSTRAIN" export --format hf "$FP32" hfdir --dtype fp16
one_error export
[ ! -e again.safetensors ] && [ ! -e hfdir ] || fail "a refused export wrote something"

# ---- pruning, then fine-tuning that keeps the zeros
for s in 0.5 0.9; do
  expect_exit 0 "$PSTRAIN" prune "$FP32" p$s.safetensors --sparsity $s
  expect_in out.txt "^p$s.safetensors: 3 weight matrices, "
done
FT=(--epochs 3 --model.keep_zeros true)
expect_exit 0 "$PSTRAIN" train "$JOB" "${WIDE[@]}" "${FT[@]}" --model.init_from "$WORK/p0.5.safetensors" \
  --output ft_single_0.5
expect_in err.txt "validation: loss .* accuracy"
$PY "$SRC/tests/cli/check_zeros.py" p0.5.safetensors ft_single_0.5/model.safetensors 0.45 \
  || fail "single-process fine-tuning lost pruned zeros (0.5)"
expect_exit 0 "$PSTRAIN" train "$JOB" "${WIDE[@]}" "${FT[@]}" --model.init_from "$WORK/p0.9.safetensors" \
  --output ft_single_0.9
$PY "$SRC/tests/cli/check_zeros.py" p0.9.safetensors ft_single_0.9/model.safetensors 0.85 \
  || fail "single-process fine-tuning lost pruned zeros (0.9)"

# distributed: the servers apply the updates, so they must hold the mask (asp: no worker's
# mask could keep stale pushes from reviving a weight)
dist() { # NAME SPARSITY SERVERS CONSISTENCY EXTRA...
  local name=$1 s=$2 servers=$3 cons=$4; shift 4
  expect_exit 0 "$PSTRAIN" local "$JOB" "${WIDE[@]}" --epochs 3 --servers "$servers" --workers 2 \
    --cluster.consistency "$cons" --model.init_from "$WORK/p$s.safetensors" "$@" \
    --output "$WORK/$name"
  expect_in err.txt "job finished; validation accuracy [0-9.]+"
}
dist ft_dist_0.5 0.5 2 asp --model.keep_zeros true
$PY "$SRC/tests/cli/check_zeros.py" p0.5.safetensors ft_dist_0.5/model.safetensors 0.45 \
  || fail "distributed (asp, 2 servers) fine-tuning lost pruned zeros"
dist ft_dist_0.9 0.9 1 bsp --model.keep_zeros true
$PY "$SRC/tests/cli/check_zeros.py" p0.9.safetensors ft_dist_0.9/model.safetensors 0.85 \
  || fail "distributed (bsp, 1 server) fine-tuning lost pruned zeros"
# the check itself: without keep_zeros the pruned weights move
dist ft_dist_free 0.5 2 asp
if $PY "$SRC/tests/cli/check_zeros.py" p0.5.safetensors ft_dist_free/model.safetensors 2>/dev/null; then
  fail "without model.keep_zeros the pruned weights stayed 0: the check proves nothing"
fi

# ---- bad input: one line, exit 2 / 3, nothing written
for s in -0.1 1 1.5; do
  expect_exit 2 "$PSTRAIN" prune "$FP32" bad.safetensors --sparsity $s
  one_error prune
  expect_in err.txt "is not in \\[0, 1\\)"
done
expect_exit 2 "$PSTRAIN" prune "$FP32" bad.safetensors
one_error prune
for v in nan inf; do
  $PY "$SRC/tests/cli/poison_weight.py" "$FP32" poisoned.safetensors $v || fail "poison_weight"
  for dt in fp16 int8; do
    expect_exit 3 "$PSTRAIN" export poisoned.safetensors bad.safetensors --dtype $dt
    one_error export
    expect_in err.txt "tensor 'dense_0.weight': element \\[0, 0\\] is (NaN|\\+Inf)"
  done
  expect_exit 3 "$PSTRAIN" prune poisoned.safetensors bad.safetensors --sparsity 0.5
  one_error prune
done
[ ! -e bad.safetensors ] || fail "bad.safetensors written for refused input"
ls -a | grep -q '\.tmp' && fail "a temporary file left behind"
echo "model compression ok"
