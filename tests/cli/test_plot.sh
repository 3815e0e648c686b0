#!/usr/bin/env bash
# pstrain plot: PNGs of a short moons run's metrics.csv (PNG signature checked), the same
# curves as text with --ascii; predictions.png (the model over its training data: moons' 2-D
# decision regions, a 1-D sine regression's curve) and the notes when it cannot be drawn;
# one-line errors naming the file for a missing run folder, a foreign header, a file without
# rows, an unusable --out and a missing gnuplot.
source "$(dirname "$0")/lib.sh"
command -v gnuplot > /dev/null || { echo "gnuplot is not installed (apt-get install gnuplot-nox)"; exit 77; }

one_error() { # PATTERN: stderr is one line naming pstrain plot and matching PATTERN
  [ "$(wc -l < err.txt)" -eq 1 ] || { cat err.txt >&2; fail "expected one error line"; }
  expect_in err.txt "^pstrain plot: .*$1"
}

expect_exit 0 "$PSTRAIN" train "$SRC/examples/binary-moons.yaml" --epochs 3 --output run
expect_exit 0 "$PSTRAIN" plot run --out P
for f in loss accuracy throughput; do
  [ -s "P/$f.png" ] || fail "P/$f.png not written"
  [ "$(head -c 8 "P/$f.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
    || fail "P/$f.png does not start with the PNG signature"
  expect_in out.txt "^wrote P/$f.png$"
done
[ ! -e P/regression.png ] || fail "regression.png written for a classification run"

expect_exit 0 "$PSTRAIN" plot run --ascii
for t in train_loss val_loss train_acc val_acc samples_per_s epoch; do expect_in out.txt "$t"; done
[ ! -e run/loss.png ] || fail "--ascii wrote a file"

# A regression run: no accuracy plot, val_mse / val_r2 instead, with a note.
expect_exit 0 "$PSTRAIN" train "$SRC/examples/regression.yaml" --epochs 2 --output reg
expect_exit 0 "$PSTRAIN" plot reg
[ -s reg/regression.png ] && [ ! -e reg/accuracy.png ] || fail "regression run: wrong plots"
expect_in err.txt "accuracy.png skipped"

# predictions.png: the model against its training data (job.yaml names it).
png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$1 is not a PNG"; }
[ -s P/predictions.png ] || fail "no predictions.png for the 2-feature moons run"
png P/predictions.png
expect_in run/job.yaml "train: \"/.*/examples/data/moons.csv\""
expect_exit 0 "$PSTRAIN" plot run --ascii
expect_in out.txt "binary-moons: decision regions and training data"
expect_in out.txt "predicted 0"
expect_in out.txt "class 1"
# A 1-feature regression: the model's curve through the data, as in the Keras tutorial.
/usr/bin/python3 -c "
import numpy as np
r = np.random.default_rng(1); x = r.uniform(-3, 3, 300); y = np.sin(x) + 0.1 * r.normal(size=300)
open('sine.csv', 'w').write('x,y\n' + ''.join('%.5f,%.5f\n' % v for v in zip(x, y)))"
cat > sine.yaml <<'EOF'
name: sine
data: {format: csv, train: sine.csv, label: y, task: regress, validation_split: 0.2, scale: standardize}
model: {layers: [{units: 16, activation: tanh}, {units: 1}], loss: mse}
optimizer: {name: adam, lr: 0.01}
train: {batch_size: 32, epochs: 5}
EOF
expect_exit 0 "$PSTRAIN" train sine.yaml --output sine
expect_exit 0 "$PSTRAIN" plot sine
png sine/predictions.png
expect_in out.txt "^wrote sine/predictions.png$"
expect_exit 0 "$PSTRAIN" plot sine --ascii
expect_in out.txt "sine: model prediction and training data"
expect_in out.txt "model prediction"
# The run folder moved: job.yaml's absolute data path still finds the data.
mv sine sine-moved
expect_exit 0 "$PSTRAIN" plot sine-moved --out Pm
png Pm/predictions.png
# 4 features (regression.yaml): no prediction plot, and a note saying why.
[ ! -e reg/predictions.png ] || fail "predictions.png for a 4-feature model"
expect_exit 0 "$PSTRAIN" plot reg
expect_in err.txt "predictions.png skipped: the model takes 4 features"
# No job.yaml (a run of an older pstrain): the curves, and a note.
rm run/job.yaml
expect_exit 0 "$PSTRAIN" plot run --out P2
[ -s P2/loss.png ] && [ ! -e P2/predictions.png ] || fail "run without job.yaml: wrong plots"
expect_in err.txt "predictions.png skipped: run has no model.safetensors and job.yaml"
# job.yaml names data that is gone: an error naming the file, exit 4 (IO).
rm sine.csv
expect_exit 4 "$PSTRAIN" plot sine-moved --out P3
expect_in err.txt "pstrain plot: predictions.png: .*sine.csv"

# Errors.
expect_exit 2 "$PSTRAIN" plot;                      one_error "needs a run folder"
expect_exit 4 "$PSTRAIN" plot nosuch;               one_error "nosuch/metrics.csv"
mkdir bad; echo "a,b,c" > bad/metrics.csv
expect_exit 3 "$PSTRAIN" plot bad;                  one_error "bad/metrics.csv line 1"
head -1 run/metrics.csv > bad/metrics.csv
expect_exit 3 "$PSTRAIN" plot bad;                  one_error "bad/metrics.csv: no epochs"
{ head -1 run/metrics.csv; echo "1,x,,,,,,,,,,,"; } > bad/metrics.csv
expect_exit 3 "$PSTRAIN" plot bad;                  one_error "bad/metrics.csv line 2"
expect_exit 2 "$PSTRAIN" plot run --out "it's";     one_error "quote"
[ ! -e "it's" ] || fail "an output folder with a quote was created"
expect_exit 2 "$PSTRAIN" plot run --ascii --out P;  one_error "--ascii"
PATH=/nonexistent expect_exit 4 "$PSTRAIN" plot run --out Q; one_error "gnuplot-nox"
echo "test_plot: ok"
