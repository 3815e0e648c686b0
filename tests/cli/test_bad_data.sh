#!/usr/bin/env bash
# Bad data files stop the run with one line naming file, place and problem, exit code 3.
source "$(dirname "$0")/lib.sh"

job() { # CSV-PATH -> job.yaml for a 2-class CSV job
  cat > job.yaml <<YAML
data: {format: csv, train: $1, label_index: -1, num_classes: 2}
model:
  layers: [{units: 4, activation: relu}, {units: 2, activation: softmax}]
train: {epochs: 1, batch_size: 4}
output: {dir: out}
YAML
}

printf 'a,b,label\n1,2,0\n3,4\n' > ragged.csv; job ragged.csv
expect_exit 3 "$PSTRAIN" train job.yaml; expect_in err.txt "ragged.csv.*3"
# The error is one line, the last one, after the job's info line.
[ "$(grep -c '^pstrain train: ' err.txt)" -eq 1 ] || fail "expected one error line"
tail -1 err.txt | grep -q '^pstrain train: ragged.csv:3: ' || fail "error is not the last line"

printf 'a,b,label\n1,x2,0\n' > nonnum.csv; job nonnum.csv
expect_exit 3 "$PSTRAIN" train job.yaml; expect_in err.txt "nonnum.csv.*x2"

printf 'a,b,label\n1,2,0\n1,2,7\n' > range.csv; job range.csv
expect_exit 3 "$PSTRAIN" train job.yaml; expect_in err.txt "range.csv.*7"

: > empty.csv; job empty.csv
expect_exit 3 "$PSTRAIN" train job.yaml; expect_in err.txt "empty.csv"

job /no/such/file.csv
expect_exit 4 "$PSTRAIN" train job.yaml; expect_in err.txt "/no/such/file.csv"

# A truncated IDX images file.
head -c 1000 /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz > trunc.gz 2>/dev/null \
  || { echo "dataset-fashion-mnist is not installed"; exit 77; }
expect_exit 3 "$PSTRAIN" train --train trunc.gz --data.train_labels \
  /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --epochs 1
expect_in err.txt "trunc.gz"
# Wrong magic: a labels file given as images.
expect_exit 3 "$PSTRAIN" train --train /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz \
  --data.train_labels /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --epochs 1
expect_in err.txt "magic"
echo "ok"
