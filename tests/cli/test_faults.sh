#!/usr/bin/env bash
# Fault injection (PSTRAIN_FAULTS, net/faults.h): every process drops, duplicates and
# delays a share of the messages it sends. Requests are sent again until answered and
# repeats are recognised, so
#  - bsp ends with weights bit-identical to a clean run (the servers take each chunk once,
#    in order, and sum the workers' gradients in rank order);
#  - asp ends within 1 accuracy point of a clean run;
#  - a bad specification is one line and exit 2.
source "$(dirname "$0")/lib.sh"
COMPARE="/usr/bin/python3 $SRC/tests/cli/compare_safetensors.py"
FAULTS="drop=0.1,dup=0.05,delay=0.02,delay_ms=5"

# The end of a lossy job: every process finishes without waiting out a timeout for an
# answer that was lost (the last ACK of DONE or BYE), and nobody is left behind.
clean_end() { # WHAT
  if grep -Eq "job finished without|did not acknowledge BYE|no ACK within|exited with code" \
       err.txt; then
    grep -E "job finished without|did not acknowledge BYE|no ACK within|exited with code" \
      err.txt >&2
    fail "$1: a process did not finish cleanly under faults"
  fi
}

# Moons: 3 workers (uneven partitions), 2 servers, Adam.
M=("$SRC/examples/binary-moons.yaml" --consistency bsp --servers 2 --workers 3 --epochs 3
   --optimizer adam --batch-size 71)
expect_exit 0 "$PSTRAIN" local "${M[@]}" --output clean
for seed in 1 2; do
  PSTRAIN_FAULTS="$FAULTS,seed=$seed" expect_exit 0 "$PSTRAIN" local "${M[@]}" --output faulty$seed
  expect_in err.txt "worker\[1\] warn: fault injection \(test only\): drop 10.0%, dup 5.0%, delay 2.0% x 5 ms, seed $seed"
  clean_end "moons seed $seed"
  # Faults happened, and were survived by sending again.
  dropped=$(grep -o 'fault injection: [0-9]* messages sent, [0-9]* dropped' err.txt |
            awk '{s += $(NF-1)} END {print s + 0}')
  [ "$dropped" -gt 0 ] || fail "seed $seed: no message was dropped"
  expect_in err.txt "requests sent again"
  $COMPARE clean/model.safetensors faulty$seed/model.safetensors 0 \
    || fail "bsp under faults (seed $seed) differs from the clean run"
done

# A bad specification: one line naming the key, exit 2, before anything runs.
PSTRAIN_FAULTS="drop=0.1,loss=3" expect_exit 2 "$PSTRAIN" local "${M[@]}" --output bad
expect_in err.txt "faults: unknown key 'loss'"
PSTRAIN_FAULTS="drop=1.5" expect_exit 2 "$PSTRAIN" local "${M[@]}" --output bad
expect_in err.txt "faults: drop=1.5 must be a fraction in \[0, 1\)"

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "dataset-fashion-mnist not installed: skipping the Fashion-MNIST part"
  exit 0
fi
# Fashion-MNIST, 1 epoch: bsp bit-identical, asp within 1 point.
F=(--epochs 1 --servers 2 --workers 3 "${FM_SUBSET[@]}")
expect_exit 0 "$PSTRAIN" local "${F[@]}" --consistency bsp --output fbsp
PSTRAIN_FAULTS="$FAULTS,seed=7" expect_exit 0 "$PSTRAIN" local "${F[@]}" --consistency bsp \
  --output fbsp_faulty
clean_end "Fashion-MNIST bsp"
$COMPARE fbsp/model.safetensors fbsp_faulty/model.safetensors 0 \
  || fail "Fashion-MNIST bsp under faults differs from the clean run"
F=(--epochs 1 --servers 2 --workers 2 "${FM_SUBSET[@]}")
expect_exit 0 "$PSTRAIN" local "${F[@]}" --consistency asp --output fasp
PSTRAIN_FAULTS="$FAULTS,seed=8" expect_exit 0 "$PSTRAIN" local "${F[@]}" --consistency asp \
  --output fasp_faulty
clean_end "Fashion-MNIST asp"
a=$(json_field fasp/metrics.jsonl test accuracy)
b=$(json_field fasp_faulty/metrics.jsonl test accuracy)
/usr/bin/python3 -c "import sys; sys.exit(0 if abs($a - $b) <= $ACC_TOL else 1)" \
  || fail "asp test accuracy $b under faults, $a clean: more than $ACC_TOL apart"
echo "asp test accuracy: clean $a, under faults $b"
